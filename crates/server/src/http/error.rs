//! Errors as OpenAI's API shapes them: `{"error": {"message", "type", "param", "code"}}`, with
//! the HTTP status that goes with them. Every failure of a request ends here, so clients (the
//! official `openai` packages included) can tell bad input (4xx) from server trouble (5xx).
use crate::service::ServiceError;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_engine::EngineError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`: invalid_request_error, authentication_error, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
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
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        if e.is_not_found() {
            return Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
                .with_param("model")
                .with_code("model_not_found");
        }
        match e {
            ServiceError::ShuttingDown => Self::unavailable(message),
            // the named thing exists but is no model this build can load
            ServiceError::Load {
                error:
                    EngineError::UnsupportedModelType { .. }
                    | EngineError::MissingFile { .. }
                    | EngineError::NotAModel { .. }
                    | EngineError::Config { .. },
                ..
            } => Self::bad_request(message)
                .with_param("model")
                .with_code("model_not_supported"),
            _ => Self::internal(message),
        }
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
