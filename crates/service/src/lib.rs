//! The service layer every front end shares (the `cortex` CLI, the HTTP API, the desktop app).
//! [`App`] holds the catalog, the running engines and the background work, and exposes every
//! operation of docs/APP_API.md with typed errors ([`ServiceError`], shown as
//! `{code, message, details}`) and events ([`AppEvent`], [`ChatEvent`]). It drives catalog, hub
//! and engine and knows nothing of HTTP or Tauri.
//!
//! Lower-level pieces the CLI also uses directly: MODEL strings to folders ([`resolve`]), the
//! embedded default model ([`default_model`]) and the running engines ([`registry`]).
pub mod app;
pub mod chat;
pub mod convert;
pub mod default_model;
pub mod downloads;
mod error;
pub mod events;
pub mod hub;
pub mod library;
pub mod registry;
pub mod resolve;
pub mod settings;

pub use app::{App, AppConfig, SystemInfo};
pub use chat::{ChatEvent, ReplyStream};
pub use error::{present, ErrorBody, Result, ServiceError};
pub use events::AppEvent;
pub use registry::{
    LoadedModelInfo, ModelEntry, ModelLease, ModelRegistry, ModelSources, RegistryConfig,
    DEFAULT_BUSY_WAIT, DEFAULT_MAX_LOADED,
};
pub use resolve::{is_plain_name, pull_logged, resolve_library_model, resolve_model, PullFn};
