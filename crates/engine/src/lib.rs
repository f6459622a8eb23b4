//! CortexStream's inference engine on MLX: model architectures, weight loading (Hugging Face
//! safetensors, MLX format with affine quantization, GGUF import), the per-sequence KV cache,
//! sampling and the generation loop, and the serving core (paged KV cache with prefix caching,
//! continuous-batching scheduler, streaming request API).
//!
//! The engine knows nothing of HTTP, SQLite or Hugging Face: callers hand it folders and files.
//! Models never own KV state; they are handed a [`cache::KvCache`] on every forward pass.

pub mod cache;
pub mod compute;
pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod gguf_import;
pub mod gguf_tensors;
pub mod kv;
pub mod loader;
pub mod memory;
pub mod models;
pub mod nn;
pub mod provenance;
pub mod safetensors;
pub mod sampler;
pub mod serving;
pub mod staging;
pub mod weights;

pub use compute::{ComputeDtype, ComputeOptions, ComputePath};
pub use error::{EngineError, Result};
pub use generate::{GenerateParams, GenerationStats, Generator};
pub use loader::{load, load_with, LoadedModel};
pub use sampler::SamplerParams;
