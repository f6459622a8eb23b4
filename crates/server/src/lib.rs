//! CortexStream's service layer and its OpenAI-compatible HTTP API.
//!
//! - [`service`]: what every front end shares: MODEL strings to model folders (the default
//!   model, the models folder, GGUF files, Hugging Face ids) and the registry of running
//!   engines (load on first use, unload when idle).
//! - [`http`]: `cortex serve`'s axum application over the service layer.
//!
//! Nothing here links Tauri; the desktop shell calls the service layer directly.
pub mod http;
pub mod service;

pub use http::{serve, Server, ServerConfig, ServerError};
pub use service::{ModelRegistry, RegistryConfig, ServiceError};
