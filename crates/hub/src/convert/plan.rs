//! The conversion plan, made from safetensors headers only (MLX loads lazily, so no tensor
//! data is read here): which source tensors are kept, what each becomes (cast, quantized),
//! the output names, shapes, sizes, and the shard each output lands in.
use super::{ConvertOptions, QuantizeOptions};
use crate::error::Result;
use cortex_mlx::Dtype;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One output tensor.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub nbytes: u64,
    pub shard: usize,
}

/// One source tensor and what it becomes.
#[derive(Clone, Debug)]
pub struct Step {
    pub file: usize,
    pub source: String,
    pub cast_to: Option<Dtype>,
    pub quantize: Option<QuantizeOptions>,
    /// One output, or weight/scales/biases for a quantized layer.
    pub outputs: Vec<Output>,
}

pub struct Plan {
    pub files: Vec<PathBuf>,
    /// Grouped by source file (in `files` order), then by name.
    pub steps: Vec<Step>,
    /// Parameter count of the unquantized model (mlx_lm's `total_parameters`).
    pub parameters: u64,
    shards: usize,
}

/// The dtype mlx_lm casts to when none is asked for: the checkpoint's declared dtype, if it is
/// one a model may be converted to.
pub fn config_dtype(config: &Value) -> Option<Dtype> {
    let declared = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .or_else(|| config.get("text_config").and_then(|t| t.get("dtype")))
        .and_then(Value::as_str)?;
    super::parse_dtype(declared).ok()
}

/// Checkpoint keys mlx_lm's `sanitize` drops for the decoder architectures we support.
fn dropped(name: &str, tied: bool) -> bool {
    name.contains("self_attn.rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
}

/// mlx_lm quantizes every module with `to_quantized` (Linear, Embedding) whose input size is
/// a multiple of the group size. In the architectures we support those are exactly the 2-D
/// floating `.weight` tensors; norms are 1-D and biases are not weights.
fn quantizable(name: &str, shape: &[i32], dtype: Dtype, q: QuantizeOptions) -> bool {
    name.ends_with(".weight")
        && shape.len() == 2
        && dtype.is_float()
        && shape[1] % q.group_size == 0
        && (shape[1] * q.bits) % 32 == 0
}

fn numel(shape: &[i32]) -> u64 {
    shape.iter().map(|&d| d.max(0) as u64).product()
}

impl Plan {
    pub fn build(
        src: &Path,
        config: &Value,
        dtype: Option<Dtype>,
        opts: &ConvertOptions,
    ) -> Result<Plan> {
        let files = cortex_engine::weights::safetensors_files(src)?;
        let tied = config
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut steps = Vec::new();
        let mut parameters = 0u64;
        for (file_index, file) in files.iter().enumerate() {
            cortex_engine::weights::check_safetensors(file)?;
            // Lazy: only the header is parsed; the arrays are dropped unevaluated.
            let header: BTreeMap<String, (Vec<i32>, Dtype)> = cortex_mlx::load_safetensors(file)?
                .tensors
                .into_iter()
                .map(|(k, a)| (k, (a.shape(), a.dtype())))
                .collect();
            for (name, (shape, src_dtype)) in header {
                if dropped(&name, tied) {
                    continue;
                }
                parameters += numel(&shape);
                let cast_to = dtype.filter(|_| src_dtype.is_float());
                let out_dtype = cast_to.unwrap_or(src_dtype);
                let quantize = opts
                    .quantize
                    .filter(|q| quantizable(&name, &shape, out_dtype, *q));
                let outputs = outputs_of(&name, &shape, out_dtype, quantize);
                steps.push(Step {
                    file: file_index,
                    source: name,
                    cast_to,
                    quantize,
                    outputs,
                });
            }
        }
        let shards = assign_shards(&mut steps, opts.max_shard_bytes);
        Ok(Plan {
            files,
            steps,
            parameters,
            shards,
        })
    }

    pub fn outputs(&self) -> impl Iterator<Item = &Output> {
        self.steps.iter().flat_map(|s| s.outputs.iter())
    }

    pub fn total_bytes(&self) -> u64 {
        self.outputs().map(|o| o.nbytes).sum()
    }

    pub fn quantized_layers(&self) -> usize {
        self.steps.iter().filter(|s| s.quantize.is_some()).count()
    }

    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// mlx_lm's names: model.safetensors alone, else model-0000i-of-0000n.safetensors.
    pub fn shard_file_name(&self, index: usize) -> String {
        if self.shards <= 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", index + 1, self.shards)
        }
    }

    /// Steps grouped by source file, in order.
    pub fn steps_by_file(&self) -> Vec<(&Path, Vec<&Step>)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let steps = self.steps.iter().filter(|s| s.file == i).collect();
                (f.as_path(), steps)
            })
            .collect()
    }
}

fn outputs_of(
    name: &str,
    shape: &[i32],
    dtype: Dtype,
    quantize: Option<QuantizeOptions>,
) -> Vec<Output> {
    let out = |name: String, nbytes: u64| Output {
        name,
        nbytes,
        shard: 0,
    };
    match quantize {
        None => vec![out(
            name.to_string(),
            numel(shape) * dtype.size_bytes() as u64,
        )],
        Some(q) => {
            let (rows, cols) = (shape[0] as u64, shape[1] as u64);
            let module = name.trim_end_matches(".weight");
            let packed = rows * cols * q.bits as u64 / 32 * 4;
            let side = rows * (cols / q.group_size as u64) * dtype.size_bytes() as u64;
            vec![
                out(name.to_string(), packed),
                out(format!("{module}.scales"), side),
                out(format!("{module}.biases"), side),
            ]
        }
    }
}

/// mlx_lm's `make_shards`: fill a shard until the next tensor would pass the limit; a tensor
/// larger than the limit gets a shard of its own. Returns the number of shards.
fn assign_shards(steps: &mut [Step], max_bytes: u64) -> usize {
    let mut shards = 0usize;
    let mut size = 0u64;
    for o in steps.iter_mut().flat_map(|s| s.outputs.iter_mut()) {
        if shards == 0 || size + o.nbytes > max_bytes {
            shards += 1;
            size = 0;
        }
        o.shard = shards - 1;
        size += o.nbytes;
    }
    shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(sizes: &[u64]) -> Step {
        Step {
            file: 0,
            source: "x".into(),
            cast_to: None,
            quantize: None,
            outputs: sizes
                .iter()
                .map(|&nbytes| Output {
                    name: "x".into(),
                    nbytes,
                    shard: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn shards_fill_up_to_the_limit_and_oversized_tensors_stand_alone() {
        let mut steps = vec![step(&[40, 60]), step(&[1]), step(&[500]), step(&[10])];
        assert_eq!(assign_shards(&mut steps, 100), 4);
        let shards: Vec<usize> = steps
            .iter()
            .flat_map(|s| s.outputs.iter().map(|o| o.shard))
            .collect();
        assert_eq!(shards, vec![0, 0, 1, 2, 3]);
    }

    #[test]
    fn quantized_sizes_match_mlx_packing() {
        let q = QuantizeOptions {
            bits: 4,
            group_size: 64,
        };
        let o = outputs_of("a.weight", &[8, 128], Dtype::Float32, Some(q));
        let sizes: Vec<u64> = o.iter().map(|o| o.nbytes).collect();
        // 8 rows x 16 uint32 words; 8 rows x 2 groups of f32 scales and biases
        assert_eq!(sizes, vec![8 * 16 * 4, 8 * 2 * 4, 8 * 2 * 4]);
        assert_eq!(o[1].name, "a.scales");
    }

    #[test]
    fn only_divisible_matrices_are_quantized() {
        let q = QuantizeOptions {
            bits: 4,
            group_size: 64,
        };
        assert!(quantizable("l.weight", &[10, 128], Dtype::Float32, q));
        assert!(!quantizable("l.weight", &[10, 96], Dtype::Float32, q));
        assert!(!quantizable("norm.weight", &[128], Dtype::Float32, q));
        assert!(!quantizable("l.bias", &[10, 128], Dtype::Float32, q));
    }
}
