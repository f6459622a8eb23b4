//! CortexStream's Hugging Face side. The Hugging Face safetensors -> MLX format converter
//! ([`convert`]), model ids ([`model_id`]), the downloader into the shared HF cache ([`download`])
//! and hub search with model details and memory estimates ([`search`]). The hub knows MLX only to cast and quantize tensors; it never runs
//! a model (the engine does) and never talks to a database.
mod api;
pub mod convert;
pub mod download;
mod error;
pub mod model_id;
pub mod search;

pub use convert::{
    convert, estimate, ConvertEstimate, ConvertOptions, ConvertProgress, ConvertReport,
    QuantizeOptions,
};
pub use error::ConvertError;
pub use model_id::{is_hugging_face_model_id, parse_model_ref, HubModel, ModelIdError, ModelRef};
