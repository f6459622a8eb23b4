//! Download records: what the downloader was asked to fetch and how far it got, so that
//! unfinished downloads resume after a restart or a crash. Owns the `downloads` table only; the
//! bytes themselves live in the HF cache and belong to the downloader.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::db::{new_id, Catalog};
use crate::error::{map_constraint, CatalogError, Result};
use crate::types::{from_json, text_enum, to_json, ErrorInfo};

text_enum! {
    pub enum DownloadState ("download state") {
        Queued = "queued",
        Running = "running",
        Paused = "paused",
        Retrying = "retrying",
        Verifying = "verifying",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl DownloadState {
    /// Whether the download is over (nothing to resume).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            DownloadState::Completed | DownloadState::Failed | DownloadState::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewDownload {
    pub repo: String,
    pub revision: String,
    /// Globs of the files to fetch; `None` fetches the whole repository.
    pub include: Option<Vec<String>>,
}

/// A download (the app API's `Download`, less the live `speed_bps`, `eta_s` and `files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Download {
    pub id: String,
    pub repo: String,
    pub revision: String,
    pub include: Option<Vec<String>>,
    pub state: DownloadState,
    pub total_bytes: i64,
    pub done_bytes: i64,
    pub error: Option<ErrorInfo>,
    pub model_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Fields to change; `None` leaves a field as it is (`Some(None)` clears a nullable one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DownloadUpdate {
    pub state: Option<DownloadState>,
    pub total_bytes: Option<i64>,
    pub done_bytes: Option<i64>,
    pub error: Option<Option<ErrorInfo>>,
    pub model_id: Option<Option<String>>,
}

struct DownloadRow {
    id: String,
    repo: String,
    revision: String,
    include: Option<String>,
    state: String,
    total_bytes: i64,
    done_bytes: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    error_details: Option<String>,
    model_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

macro_rules! select_downloads {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            DownloadRow,
            "SELECT id, repo, revision, include, state, total_bytes, done_bytes, error_code, \
             error_message, error_details, model_id, created_at, updated_at FROM downloads "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<DownloadRow> for Download {
    type Error = CatalogError;

    fn try_from(r: DownloadRow) -> Result<Download> {
        Ok(Download {
            include: r
                .include
                .as_deref()
                .map(|t| from_json("download include", t))
                .transpose()?,
            state: DownloadState::parse(&r.state)?,
            error: ErrorInfo::from_columns(r.error_code, r.error_message, r.error_details)?,
            id: r.id,
            repo: r.repo,
            revision: r.revision,
            total_bytes: r.total_bytes,
            done_bytes: r.done_bytes,
            model_id: r.model_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn check_bytes(what: &'static str, value: Option<i64>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(CatalogError::invalid(what, format!("{v} is negative"))),
        _ => Ok(()),
    }
}

impl Catalog {
    /// Records a new download, `queued`.
    pub async fn create_download(&self, new: &NewDownload) -> Result<Download> {
        if new.repo.trim().is_empty() || new.revision.trim().is_empty() {
            return Err(CatalogError::invalid(
                "download",
                "repo and revision must not be empty",
            ));
        }
        let include = new.include.as_ref().map(to_json).transpose()?;
        let id = new_id("dl_")?;
        let now = self.now();
        let state = DownloadState::Queued.as_str();
        let mut tx = self.write_tx().await?;
        sqlx::query!(
            "INSERT INTO downloads (id, repo, revision, include, state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            id,
            new.repo,
            new.revision,
            include,
            state,
            now
        )
        .execute(&mut *tx)
        .await?;
        let download = get_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(download)
    }

    /// Applies `update` and bumps `updated_at`.
    pub async fn update_download(&self, id: &str, update: &DownloadUpdate) -> Result<Download> {
        check_bytes("total_bytes", update.total_bytes)?;
        check_bytes("done_bytes", update.done_bytes)?;
        let state = update.state.map(DownloadState::as_str);
        let set_error = update.error.is_some();
        let (code, message, details) =
            ErrorInfo::to_columns(update.error.as_ref().and_then(Option::as_ref))?;
        let set_model = update.model_id.is_some();
        let model_id = update.model_id.as_ref().and_then(Option::as_deref);
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!(
            "UPDATE downloads SET state = COALESCE(?1, state), \
             total_bytes = COALESCE(?2, total_bytes), done_bytes = COALESCE(?3, done_bytes), \
             error_code = CASE WHEN ?4 THEN ?5 ELSE error_code END, \
             error_message = CASE WHEN ?4 THEN ?6 ELSE error_message END, \
             error_details = CASE WHEN ?4 THEN ?7 ELSE error_details END, \
             model_id = CASE WHEN ?8 THEN ?9 ELSE model_id END, \
             updated_at = ?10 WHERE id = ?11",
            state,
            update.total_bytes,
            update.done_bytes,
            set_error,
            code,
            message,
            details,
            set_model,
            model_id,
            now,
            id
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_constraint("download model_id", e))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("download", id));
        }
        let download = get_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(download)
    }

    pub async fn get_download(&self, id: &str) -> Result<Download> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, id).await
    }

    /// Every download, newest first.
    pub async fn list_downloads(&self) -> Result<Vec<Download>> {
        let rows = select_downloads!("ORDER BY created_at DESC, seq DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Download::try_from).collect()
    }

    /// Downloads to resume after a restart (queued, running, paused, retrying, verifying), oldest
    /// first so they resume in the order they were asked for.
    pub async fn unfinished_downloads(&self) -> Result<Vec<Download>> {
        let rows = select_downloads!(
            "WHERE state IN ('queued', 'running', 'paused', 'retrying', 'verifying') \
             ORDER BY created_at, seq"
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Download::try_from).collect()
    }

    pub async fn delete_download(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("DELETE FROM downloads WHERE id = ?1", id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("download", id));
        }
        tx.commit().await
    }
}

async fn get_in(conn: &mut SqliteConnection, id: &str) -> Result<Download> {
    let row = select_downloads!("WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| CatalogError::not_found("download", id))?
        .try_into()
}
