//! The CortexStream catalog: one SQLite file (through sqlx) that remembers the local model library,
//! downloads, conversions, conversations (as message trees) and app settings, plus the filesystem
//! helpers that discover models on disk and delete them ([`scan`]).
//!
//! It knows nothing of MLX, the engine, HTTP or Tauri, and must stay quick to build. The service
//! layer is its only user; the types here serialize to the shapes of docs/APP_API.md.
//!
//! Queries are checked at compile time against the offline query data in `.sqlx/`; after changing
//! a query or a migration, regenerate it with `crates/catalog/prepare-sqlx.sh` (see README.md).

mod conversations;
mod conversions;
mod db;
mod downloads;
mod error;
mod messages;
mod models;
pub mod scan;
mod settings;
mod sync;
mod types;

pub use conversations::{Conversation, ConversationPatch, NewConversation};
pub use conversions::{Conversion, ConversionState, ConversionUpdate, NewConversion};
pub use db::{Catalog, Clock, ManualClock, SystemClock, BUSY_TIMEOUT, MIGRATOR};
pub use downloads::{Download, DownloadState, DownloadUpdate, NewDownload};
pub use error::{CatalogError, Result};
pub use messages::{FinishReason, Message, MessageStats, MessageUpdate, NewMessage, Role};
pub use models::{
    LocalModel, ModelFormat, ModelInfo, ModelSource, NewModel, Quantization, Upserted,
};
pub use sync::SyncReport;
pub use types::{ErrorInfo, ModelSettings};
