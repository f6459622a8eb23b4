//! Hugging Face safetensors -> MLX format, written the way `mlx_lm.convert` writes it:
//! floating tensors cast to one dtype, every Linear/Embedding weight whose input size divides
//! by the group size affine-quantized into `.weight` (uint32), `.scales`, `.biases`; config.json
//! with sorted keys and the `quantization` + `quantization_config` blocks; shards of at most
//! 5 GiB with metadata {"format": "mlx"}; model.safetensors.index.json even for one shard;
//! tokenizer, template and generation files copied; a README model card.
//!
//! Memory: the output plan is computed from safetensors headers (shapes and dtypes) alone, so
//! shard boundaries are known before any data is read. Then source files are opened one at a
//! time (lazily: MLX reads a tensor's bytes when it is evaluated) and tensors are converted one
//! by one, evaluated, and held only until their output shard is written. Peak memory is about
//! one output shard plus one tensor, not the model.
//!
//! Atomicity: everything is written into a hidden sibling folder that is renamed onto the
//! destination only when complete; on any error or cancellation the folder is removed.
mod output;
mod plan;

use crate::error::{ConvertError, Result};
use cortex_engine::config::RawConfig;
use cortex_engine::staging::StagingDir;
use cortex_mlx::{Array, Dtype};
use plan::{Plan, Step};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// mlx_lm's MAX_FILE_SIZE_GB (5) in bytes.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5 << 30;

/// Affine quantization parameters (MLX's "affine" mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantizeOptions {
    pub bits: i32,
    pub group_size: i32,
}

impl Default for QuantizeOptions {
    /// mlx_lm's defaults: 4 bits, group size 64.
    fn default() -> Self {
        QuantizeOptions {
            bits: 4,
            group_size: 64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub quantize: Option<QuantizeOptions>,
    /// Target dtype of floating tensors; None: the config's torch_dtype (as mlx_lm does).
    pub dtype: Option<Dtype>,
    /// Largest output shard; a tensor bigger than this gets a shard of its own.
    pub max_shard_bytes: u64,
    /// Hugging Face id of the source, recorded as `base_model` in the model card.
    pub base_model: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            quantize: None,
            dtype: None,
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            base_model: None,
        }
    }
}

/// Reported after every tensor. Returning `ControlFlow::Break` from the callback cancels.
#[derive(Clone, Debug)]
pub struct ConvertProgress {
    pub tensors_done: usize,
    pub tensors_total: usize,
    /// Output bytes produced so far (converted tensors, written or about to be).
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub shards_written: usize,
    pub shards_total: usize,
    /// The source tensor just converted.
    pub tensor: String,
}

#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub dest: PathBuf,
    /// Output tensors (a quantized weight counts three: weight, scales, biases).
    pub tensors: usize,
    pub quantized_layers: usize,
    pub shards: usize,
    pub bytes: u64,
    pub parameters: u64,
    pub dtype: Option<Dtype>,
}

/// The dtypes a conversion may target (mlx_lm's MODEL_CONVERSION_DTYPES).
pub fn parse_dtype(name: &str) -> Result<Dtype> {
    match Dtype::parse(name) {
        Some(d @ (Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32)) => Ok(d),
        _ => Err(ConvertError::UnsupportedDtype {
            dtype: name.to_string(),
        }),
    }
}

/// `<source folder name>-mlx[-<bits>bit]`, the default destination folder name.
pub fn default_dest_name(src: &Path, opts: &ConvertOptions) -> String {
    let base = src
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    match opts.quantize {
        Some(q) => format!("{base}-mlx-{}bit", q.bits),
        None => format!("{base}-mlx"),
    }
}

/// What a conversion would write, known from the safetensors headers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertEstimate {
    /// Output tensors (a quantized weight counts three).
    pub tensors: usize,
    pub output_bytes: u64,
    /// The source's safetensors bytes.
    pub source_bytes: u64,
}

/// Plans the conversion of `src` without reading any tensor data: the output's size before
/// anything starts. Fails as [`convert`] would on a bad source or options.
pub fn estimate(src: &Path, opts: &ConvertOptions) -> Result<ConvertEstimate> {
    let config = preflight_source(src, opts)?;
    let dtype = opts.dtype.or_else(|| plan::config_dtype(&config.value));
    let plan = Plan::build(src, &config.value, dtype, opts)?;
    let source_bytes = plan
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    Ok(ConvertEstimate {
        tensors: plan.outputs().count(),
        output_bytes: plan.total_bytes(),
        source_bytes,
    })
}

/// Checks everything that can be checked before writing: the source, its architecture, the
/// options and the destination. Returns the source config.
fn preflight(src: &Path, dest: &Path, opts: &ConvertOptions) -> Result<RawConfig> {
    let config = preflight_source(src, opts)?;
    if dest.exists() {
        return Err(ConvertError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    Ok(config)
}

fn preflight_source(src: &Path, opts: &ConvertOptions) -> Result<RawConfig> {
    if !src.join("config.json").is_file() {
        return Err(ConvertError::SourceMissing {
            path: src.to_path_buf(),
        });
    }
    let config = RawConfig::read(src)?;
    let model_type = config.model_type()?;
    let supported = cortex_engine::models::supported_model_types();
    if !supported.contains(&model_type) {
        return Err(ConvertError::UnsupportedModelType {
            model_type,
            supported,
        });
    }
    let v = &config.value;
    let quantized = |k: &str| v.get(k).is_some_and(|q| !q.is_null());
    if quantized("quantization") || quantized("quantization_config") {
        return Err(ConvertError::AlreadyQuantized {
            path: src.to_path_buf(),
        });
    }
    if let Some(q) = opts.quantize {
        check_quantize(q)?;
    }
    if let Some(d) = opts.dtype {
        parse_dtype(&d.to_string())?;
    }
    Ok(config)
}

/// MLX's affine quantization takes 2, 3, 4, 5, 6 or 8 bits and groups of 32, 64 or 128.
pub fn check_quantize(q: QuantizeOptions) -> Result<()> {
    cortex_engine::config::check_params(q.group_size, q.bits).map_err(|detail| {
        ConvertError::InvalidQuantization {
            bits: q.bits,
            group_size: q.group_size,
            detail,
        }
    })
}

/// Converts the Hugging Face model folder `src` into an MLX model folder at `dest`, which
/// must not exist. `progress` is called after every tensor; `Break` cancels the conversion.
pub fn convert(
    src: &Path,
    dest: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&ConvertProgress) -> ControlFlow<()>,
) -> Result<ConvertReport> {
    let config = preflight(src, dest, opts)?;
    let dtype = opts.dtype.or_else(|| plan::config_dtype(&config.value));
    let plan = Plan::build(src, &config.value, dtype, opts)?;
    let staging =
        StagingDir::create(dest, "converting").map_err(|(p, e)| ConvertError::io(p)(e))?;
    let out = staging.path();
    let written = write_tensors(&plan, out, progress)?;
    output::write_index(out, &plan, &written)?;
    output::write_config(src, out, &config.value, opts.quantize)?;
    output::copy_side_files(src, out)?;
    output::write_model_card(out, src, opts, dtype)?;
    let dest = staging.commit().map_err(|(p, e)| ConvertError::io(p)(e))?;
    Ok(ConvertReport {
        dest,
        tensors: plan.outputs().count(),
        quantized_layers: plan.quantized_layers(),
        shards: plan.shard_count(),
        bytes: plan.total_bytes(),
        parameters: plan.parameters,
        dtype,
    })
}

/// Output tensor name -> shard file name, for the index.
type WeightMap = BTreeMap<String, String>;

/// Streams the plan: one source file open at a time, one tensor converted at a time, each
/// output shard written as soon as its last tensor is ready.
fn write_tensors(
    plan: &Plan,
    out: &Path,
    progress: &mut dyn FnMut(&ConvertProgress) -> ControlFlow<()>,
) -> Result<WeightMap> {
    let shards_total = plan.shard_count();
    let mut report = ConvertProgress {
        tensors_done: 0,
        tensors_total: plan.steps.len(),
        bytes_done: 0,
        bytes_total: plan.total_bytes(),
        shards_written: 0,
        shards_total,
        tensor: String::new(),
    };
    let mut shard: BTreeMap<String, Array> = BTreeMap::new();
    let mut shard_index = 0usize;
    let mut weight_map = WeightMap::new();
    for (file, steps) in plan.steps_by_file() {
        cortex_engine::weights::check_safetensors(file)?;
        let mut source = cortex_mlx::load_safetensors(file)?.tensors;
        for step in steps {
            let a = source.remove(&step.source).ok_or_else(|| {
                cortex_engine::EngineError::MissingTensor {
                    name: step.source.clone(),
                }
            })?;
            let outputs = convert_tensor(step, a)?;
            cortex_mlx::eval(outputs.iter().map(|(_, a)| a))?;
            for ((name, a), planned) in outputs.into_iter().zip(&step.outputs) {
                if planned.shard != shard_index {
                    flush_shard(out, plan, shard_index, &mut shard, &mut weight_map)?;
                    report.shards_written += 1;
                    shard_index = planned.shard;
                }
                report.bytes_done += planned.nbytes;
                shard.insert(name, a);
            }
            report.tensors_done += 1;
            report.tensor.clone_from(&step.source);
            if progress(&report).is_break() {
                return Err(ConvertError::Cancelled);
            }
        }
    }
    flush_shard(out, plan, shard_index, &mut shard, &mut weight_map)?;
    report.shards_written += 1;
    Ok(weight_map)
}

/// Casts, then quantizes (mlx_lm's order), the one source tensor of a step.
fn convert_tensor(step: &Step, a: Array) -> Result<Vec<(String, Array)>> {
    let a = match step.cast_to {
        Some(d) if a.dtype() != d => a.astype(d)?,
        _ => a,
    };
    match step.quantize {
        None => Ok(vec![(step.outputs[0].name.clone(), a)]),
        Some(q) => {
            let (wq, scales, biases) = cortex_mlx::ops::quantize(&a, q.group_size, q.bits)?;
            let names: Vec<String> = step.outputs.iter().map(|o| o.name.clone()).collect();
            Ok(names.into_iter().zip([wq, scales, biases]).collect())
        }
    }
}

fn flush_shard(
    out: &Path,
    plan: &Plan,
    index: usize,
    shard: &mut BTreeMap<String, Array>,
    weight_map: &mut WeightMap,
) -> Result<()> {
    let file_name = plan.shard_file_name(index);
    let meta = BTreeMap::from([("format".to_string(), "mlx".to_string())]);
    cortex_mlx::save_safetensors(&out.join(&file_name), shard, &meta)?;
    for name in shard.keys() {
        weight_map.insert(name.clone(), file_name.clone());
    }
    shard.clear();
    cortex_mlx::clear_cache();
    Ok(())
}
