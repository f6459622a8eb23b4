//! CortexStream's Hugging Face side. The Hugging Face safetensors -> MLX format converter
//! ([`convert`]), model ids ([`model_id`]) and the downloader into the shared HF cache ([`download`]). The hub knows MLX only to cast and quantize tensors; it never runs
//! a model (the engine does) and never talks to a database.
pub mod convert;
pub mod download;
mod error;
pub mod model_id;

pub use convert::{convert, ConvertOptions, ConvertProgress, ConvertReport, QuantizeOptions};
pub use error::ConvertError;
pub use model_id::{is_hugging_face_model_id, parse_model_ref, HubModel, ModelIdError, ModelRef};
