//! The architecture registry: model_type -> builder. Aliases (mistral and smollm are llama)
//! point at the same builder instead of copying code.
use crate::cache::KvCache;
use crate::config::RawConfig;
use crate::error::{EngineError, Result};
use crate::weights::Weights;
use cortex_mlx::Array;

pub mod decoder;
pub mod gemma2;
pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

/// A loaded transformer. It owns weights only; KV state comes in through `cache`.
pub trait Model: Send {
    /// tokens: int32 [B, L] -> logits [B, L, vocab] (in the compute dtype).
    fn forward(&self, tokens: &Array, cache: &mut dyn KvCache) -> Result<Array>;
    fn info(&self) -> ModelInfo;

    fn num_layers(&self) -> usize {
        self.info().num_layers
    }

    fn vocab_size(&self) -> i32 {
        self.info().vocab_size
    }
}

/// Sizes callers need without knowing the architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub num_layers: usize,
    pub vocab_size: i32,
    /// Bytes of K plus V per cached token across all layers (for memory estimates).
    pub kv_bytes_per_token: usize,
}

type Builder = fn(&RawConfig, Weights) -> Result<Box<dyn Model>>;

/// model_type, builder. The first name of each builder is the canonical architecture.
const ARCHITECTURES: &[(&str, Builder)] = &[
    ("llama", llama::build),
    ("mistral", llama::build),
    ("smollm", llama::build),
    ("smollm2", llama::build),
    ("qwen2", qwen2::build),
    ("qwen3", qwen3::build),
    ("phi3", phi3::build),
    ("gemma2", gemma2::build),
    ("gemma", gemma2::build),
    ("gemma3_text", gemma3::build),
    ("gemma3", gemma3::build),
];

pub fn supported_model_types() -> Vec<String> {
    ARCHITECTURES.iter().map(|(n, _)| n.to_string()).collect()
}

pub fn build(config: &RawConfig, weights: Weights) -> Result<Box<dyn Model>> {
    let model_type = config.model_type()?;
    let builder = ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == model_type)
        .map(|(_, b)| *b)
        .ok_or_else(|| EngineError::UnsupportedModelType {
            model_type,
            supported: supported_model_types(),
        })?;
    builder(config, weights)
}
