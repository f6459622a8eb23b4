//! A command's failure as the UI receives it: `{code, message, details}`, the same body the
//! HTTP app API sends inside `{"error": ...}` (ui/src/services/errors.ts reads both).
use cortex_service::{ErrorBody, ServiceError};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct CommandError(ErrorBody);

impl CommandError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CommandError(ErrorBody {
            code,
            message: message.into(),
            details: Value::Null,
        })
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl From<ServiceError> for CommandError {
    fn from(e: ServiceError) -> Self {
        let body = e.body();
        if body.code == "internal" {
            tracing::error!("{}", body.message);
        }
        CommandError(body)
    }
}

impl From<cortex_catalog::CatalogError> for CommandError {
    fn from(e: cortex_catalog::CatalogError) -> Self {
        ServiceError::from(e).into()
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

/// A command argument whose shape errors are the app's `invalid_input` (what the HTTP API
/// answers for a bad body), not Tauri's untyped "invalid args" string.
pub struct Arg<T>(Result<T, String>);

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Arg<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(Arg(serde_json::from_value(value).map_err(|e| e.to_string())))
    }
}

impl<T> Arg<T> {
    pub fn get(self, name: &str) -> CommandResult<T> {
        self.0
            .map_err(|e| CommandError::new("invalid_input", format!("invalid {name}: {e}")))
    }
}
