//! CortexStream's Hugging Face side. Today: the Hugging Face safetensors -> MLX format
//! converter ([`convert`]). The hub knows MLX only to cast and quantize tensors; it never runs
//! a model (the engine does) and never talks to a database.
pub mod convert;
mod error;

pub use convert::{convert, ConvertOptions, ConvertProgress, ConvertReport, QuantizeOptions};
pub use error::ConvertError;
