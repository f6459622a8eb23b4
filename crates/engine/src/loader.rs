//! From a MODEL argument to a ready model: resolve it (folder, .gguf file, or a name in the
//! models folder), import GGUF into MLX format on first use, load weights and tokenizer.
use crate::cache::KvCache;
use crate::compute::{Compute, ComputeOptions};
use crate::config::RawConfig;
use crate::error::{EngineError, Result};
use crate::gguf_import;
use crate::models::{self, Model, ModelInfo};
use crate::weights::Weights;
use cortex_mlx::{Array, Dtype};
use cortex_tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct LoadedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub dir: PathBuf,
    pub model_type: String,
    pub dtype: Dtype,
    /// The code path every forward pass of `model` takes ([`crate::compute`]).
    pub compute: Compute,
    pub load_time: Duration,
    /// config.json's max_position_embeddings (the context the model was trained for).
    pub context_length: Option<usize>,
}

/// Where imported and converted models live: $CORTEX_HOME/models, else ~/.cortexstream/models.
pub fn models_dir() -> PathBuf {
    let home = std::env::var_os("CORTEX_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let h = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            h.join(".cortexstream")
        });
    home.join("models")
}

/// Turns what a user typed into a model folder, importing a .gguf file if needed (or reusing
/// the folder an earlier import of the same file made: see [`gguf_import::import_or_reuse`]).
pub fn resolve(spec: &str, models: &Path) -> Result<PathBuf> {
    let p = PathBuf::from(spec);
    if p.is_dir() {
        return Ok(p);
    }
    if p.is_file()
        && p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return gguf_import::import_or_reuse(&p, models);
    }
    let named = models.join(spec);
    let plain_name = !spec.contains(['/', '\\']) && spec != "." && spec != "..";
    if plain_name && named.is_dir() {
        return Ok(named);
    }
    Err(EngineError::NotAModel { path: p })
}

/// The cheap part of [`load`]: a readable config.json naming a supported architecture (with a
/// valid quantization block) and a tokenizer.json. Reads no weights; a caller that must free
/// memory before a load (unload another model) checks this first, so a folder that is no model
/// at all cannot cost a working one its place.
pub fn precheck(dir: &Path) -> Result<()> {
    supported_config(dir)?.quantization()?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(EngineError::MissingFile { path: tokenizer });
    }
    Ok(())
}

/// The folder's config.json, when it names an architecture the engine has.
fn supported_config(dir: &Path) -> Result<RawConfig> {
    let config = RawConfig::read(dir)?;
    let model_type = config.model_type()?;
    if !models::supported_model_types().contains(&model_type) {
        return Err(EngineError::UnsupportedModelType {
            model_type,
            supported: models::supported_model_types(),
        });
    }
    Ok(config)
}

/// Loads a model folder (Hugging Face safetensors or MLX format) with its tokenizer, to run
/// the way this device runs best.
pub fn load(dir: &Path) -> Result<LoadedModel> {
    load_with(dir, &ComputeOptions::default())
}

/// A model whose every forward pass builds its graph under one [`Compute`] setting.
struct Scoped {
    inner: Box<dyn Model>,
    compute: Compute,
}

impl Model for Scoped {
    fn forward(&self, tokens: &Array, cache: &mut dyn KvCache) -> Result<Array> {
        crate::compute::scoped(self.compute, || self.inner.forward(tokens, cache))
    }

    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
}

/// [`load`] on the code path and in the dtype `options` name (the tests force the GPU path on
/// the CPU this way).
pub fn load_with(dir: &Path, options: &ComputeOptions) -> Result<LoadedModel> {
    let start = Instant::now();
    let config = supported_config(dir)?;
    let tokenizer = Tokenizer::from_dir(dir)?;
    let dtype = options.dtype(config.checkpoint_dtype());
    let compute = Compute {
        path: options.path(),
        scalar_kernels: options.scalar_kernels,
        int8_activations: options.int8_activations(),
        half_kv: options.half_kv(),
    };
    let weights = Weights::load_dir(dir, config.quantization()?, dtype)?;
    // Built under the model's compute setting: how its layers keep their weights depends on
    // the path that will run them.
    let inner = crate::compute::scoped(compute, || models::build(&config, weights))?;
    let model: Box<dyn Model> = Box::new(Scoped { inner, compute });
    let context_length = ["max_position_embeddings", "n_ctx", "max_sequence_length"]
        .iter()
        .find_map(|k| config.value.get(*k).and_then(|v| v.as_u64()))
        .map(|n| n as usize);
    Ok(LoadedModel {
        model,
        tokenizer,
        dir: dir.to_path_buf(),
        model_type: config.model_type()?,
        dtype,
        compute,
        load_time: start.elapsed(),
        context_length,
    })
}
