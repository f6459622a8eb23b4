//! Errors as OpenAI's API shapes them: `{"error": {"message", "type", "param", "code"}}`, with
//! the HTTP status that goes with them. Every failure of a request ends here, so clients (the
//! official `openai` packages included) can tell bad input (4xx) from server trouble (5xx).
//!
//! A client may name any path as its model, so what it is told about a model it cannot have
//! ([`model_error`]) never contains a filesystem path and never tells an existing path from a
//! missing one; the whole error goes to the server log instead.
use crate::service::ServiceError;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_engine::EngineError;
use cortex_hub::download::DownloadError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`: invalid_request_error, authentication_error, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (overload answers).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// A parameter out of range or of the wrong kind.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message)
            .with_param(param)
            .with_code("invalid_value")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The JSON body; also sent as an SSE event when a stream fails midway.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    fn body(&self) -> Body<'_> {
        Body {
            error: Detail {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// What a client that asked for `model` is told when it cannot have it: typed, naming the
/// model as the client sent it, without a filesystem path. "Nothing loadable there" (no such
/// name or path, a folder without a model config, an unreadable file) is one answer whatever
/// exists on disk, so a client cannot probe the file system with model names.
pub fn model_error(model: &str, e: ServiceError) -> ApiError {
    tracing::warn!(model, error = %e, "cannot serve the requested model");
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model {model:?} does not exist or is not a model this server can load \
                 (GET /v1/models lists the local models)"
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    };
    let invalid = |why: &str| {
        ApiError::bad_request(format!("the model {model:?} cannot be loaded: {why}"))
            .with_param("model")
            .with_code("invalid_model")
    };
    let failed = || {
        ApiError::internal(format!(
            "loading the model {model:?} failed (the server log says why)"
        ))
    };
    match &e {
        ServiceError::ModelNotFound { .. } => not_found(),
        // no path in it, and what a user of the default model must do
        ServiceError::DefaultModelMissing => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            e.to_string(),
        )
        .with_param("model")
        .with_code("model_not_found"),
        ServiceError::Download { error, .. } => download_error(model, error, e.to_string()),
        ServiceError::Forbidden { .. } => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            e.to_string(),
        )
        .with_param("model")
        .with_code("model_source_forbidden"),
        ServiceError::Load { error, .. } | ServiceError::Engine(error) => match error {
            EngineError::NotAModel { .. } | EngineError::Io { .. } | EngineError::Config { .. } => {
                not_found()
            }
            EngineError::MissingFile { path }
                if path.file_name().is_some_and(|n| n == "config.json") =>
            {
                not_found()
            }
            EngineError::UnsupportedModelType {
                model_type,
                supported,
            } => invalid(&format!(
                "unsupported model_type {model_type:?}; supported: {}",
                supported.join(", ")
            )),
            EngineError::UnsupportedGgufType { type_name, .. } => invalid(&format!(
                "GGUF quantization type {type_name} is not supported ({} are)",
                cortex_engine::gguf_tensors::supported_type_names()
            )),
            EngineError::MissingFile { .. }
            | EngineError::CorruptSafetensors { .. }
            | EngineError::MissingTensor { .. }
            | EngineError::ShapeMismatch { .. }
            | EngineError::Gguf(_)
            | EngineError::UnsafeWeightFile { .. }
            | EngineError::BadGguf { .. }
            | EngineError::GgufHyperparameter { .. }
            | EngineError::Tokenizer(_) => {
                invalid("its files are incomplete or invalid (the server log says why)")
            }
            _ => failed(),
        },
        ServiceError::ShuttingDown | ServiceError::Busy(_) | ServiceError::Cancelled => {
            ApiError::unavailable("the server is shutting down or busy; try again")
        }
        _ => failed(),
    }
}

/// A hub model that could not be fetched. The hub's own words carry URLs and repo paths, never
/// local ones, except for errors of the local cache, which get a generic message.
fn download_error(model: &str, error: &DownloadError, message: String) -> ApiError {
    let hub = |status, code| {
        ApiError::new(status, "server_error", message.clone())
            .with_param("model")
            .with_code(code)
    };
    match error {
        DownloadError::RepoNotFound { .. } | DownloadError::Unauthorized { .. } => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            message.clone(),
        )
        .with_param("model")
        .with_code("model_not_found"),
        DownloadError::Unreachable { .. } | DownloadError::Network { .. } => {
            hub(StatusCode::BAD_GATEWAY, "hub_unreachable")
        }
        DownloadError::Http { status: 429, .. } => hub(StatusCode::BAD_GATEWAY, "rate_limited"),
        DownloadError::Cancelled => ApiError::unavailable("the server is shutting down"),
        DownloadError::InsufficientSpace { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "server_error",
            format!("not enough free disk space to download {model:?}"),
        )
        .with_code("disk_full"),
        DownloadError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            message.clone(),
        )
        .with_param("model")
        .with_code("download_too_large"),
        DownloadError::Io { .. } => ApiError::internal(format!(
            "downloading {model:?} failed (the server log says why)"
        )),
        _ => hub(StatusCode::BAD_GATEWAY, "hub_error"),
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::ContextLength { .. } => {
                Self::bad_request(message).with_code("context_length_exceeded")
            }
            EngineError::InvalidRequest(_) | EngineError::Tokenizer(_) => {
                Self::bad_request(message)
            }
            EngineError::EngineStopped => Self::unavailable(message),
            _ => Self::internal(message),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let e = Self::new(status, "invalid_request_error", r.body_text());
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.with_code("request_too_large")
        } else {
            e
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("internal error: {e}"))
    }
}
