//! CortexStream's HTTP adapter over the service layer (crates/service): the OpenAI-compatible
//! API under /v1 and `cortex serve`'s axum application.
//!
//! Nothing here links Tauri; the desktop shell calls the service layer directly.
pub mod http;

pub use cortex_service as service;
pub use cortex_service::{ModelRegistry, RegistryConfig, ServiceError};
pub use http::{serve, Server, ServerConfig, ServerError};
