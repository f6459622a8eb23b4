//! The catalog's one error type. Variants are structured so the service layer can map them to the
//! app API's stable codes (`not_found`, `conflict`, `invalid_input`, `internal`) without parsing text.

use std::path::PathBuf;

/// Everything a catalog operation or a filesystem helper can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No row (or no file) with this id: `what` is "model", "conversation", "message", ...
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The operation would break a uniqueness rule (a taken model name, a duplicate path).
    #[error("{what} conflict: {detail}")]
    Conflict { what: &'static str, detail: String },
    /// The caller's input is not acceptable (a leaf from another conversation, a path outside its root).
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// A stored value could not be read back (an unknown enum name, malformed JSON): the database
    /// was written by something else or by a newer version.
    #[error("corrupt {what} in the catalog: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl CatalogError {
    /// The app API's error code for this error (docs/APP_API.md).
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::NotFound { .. } => "not_found",
            CatalogError::Conflict { .. } => "conflict",
            CatalogError::Invalid { .. } => "invalid_input",
            CatalogError::Db(e) if is_busy(e) => "busy",
            CatalogError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "disk_full"
            }
            _ => "internal",
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        CatalogError::NotFound {
            what,
            id: id.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        CatalogError::Invalid {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        CatalogError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::Io {
            path: path.into(),
            source,
        }
    }
}

pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code in the high bits.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// Maps a unique-constraint failure to `Conflict` and a foreign-key failure to `Invalid`; other
/// errors pass through as `Db`.
pub(crate) fn map_constraint(what: &'static str, e: sqlx::Error) -> CatalogError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                return CatalogError::Conflict {
                    what,
                    detail: db.message().to_string(),
                };
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                return CatalogError::invalid(what, "refers to a row that does not exist");
            }
            _ => {}
        }
    }
    CatalogError::Db(e)
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
