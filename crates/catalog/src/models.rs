//! The local model library: one row per model folder on disk (in the models folder or a snapshot of
//! the shared Hugging Face cache), its on-disk metadata, and the user's name and default settings
//! for it. Never touches the files themselves: `scan` reads them, the service deletes them.
//!
//! A row is keyed by its path. Re-registering a path (`upsert_model`, `sync`) refreshes what was
//! read from disk and keeps what the user or the app decided: id, name, source, added_at,
//! last_used_at, settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::db::{new_id, Catalog};
use crate::error::{map_constraint, CatalogError, Result};
use crate::types::{path_text, text_enum, text_path, ModelSettings};

text_enum! {
    /// What is on disk: MLX's layout (possibly quantized) or plain Hugging Face safetensors.
    pub enum ModelFormat ("model format") {
        Mlx = "mlx",
        Safetensors = "safetensors",
    }
}

/// Affine quantization of a model's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    pub bits: i64,
    pub group_size: i64,
}

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A snapshot in the shared HF cache; `revision` is the ref name (e.g. "main") when a ref points
    /// at the snapshot, else the commit.
    Hub {
        repo: String,
        revision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    Gguf {
        file: String,
    },
    Folder {
        path: String,
    },
    Converted {
        from_model_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
    },
    Default,
}

/// What reading a model folder tells about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub format: ModelFormat,
    pub architecture: Option<String>,
    pub parameters: Option<i64>,
    pub quantization: Option<Quantization>,
    pub dtype: Option<String>,
    pub size_bytes: i64,
}

/// A model to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    /// Wanted display name; ` (2)`, ` (3)`, ... is appended when another model has it.
    pub name: String,
    pub path: PathBuf,
    pub source: ModelSource,
    pub info: ModelInfo,
}

/// A model of the library (the app API's `LocalModel`, less the runtime `loaded` flag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalModel {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    pub source: ModelSource,
    #[serde(flatten)]
    pub info: ModelInfo,
    pub added_at: i64,
    pub last_used_at: Option<i64>,
    pub settings: ModelSettings,
}

/// What `upsert_model` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Upserted {
    pub model: LocalModel,
    pub inserted: bool,
}

struct ModelRow {
    id: String,
    name: String,
    path: String,
    source_kind: String,
    source_repo: Option<String>,
    source_revision: Option<String>,
    source_commit: Option<String>,
    source_file: Option<String>,
    source_path: Option<String>,
    source_from_model_id: Option<String>,
    format: String,
    architecture: Option<String>,
    parameters: Option<i64>,
    quant_bits: Option<i64>,
    quant_group_size: Option<i64>,
    dtype: Option<String>,
    size_bytes: i64,
    added_at: i64,
    last_used_at: Option<i64>,
    system_prompt: Option<String>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    max_tokens: Option<i64>,
    context_length: Option<i64>,
}

/// `query_as!` over every column of `models`, followed by `$tail` (WHERE/ORDER BY).
macro_rules! select_models {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ModelRow,
            "SELECT id, name, path, source_kind, source_repo, source_revision, source_commit, \
             source_file, source_path, source_from_model_id, format, architecture, parameters, \
             quant_bits, quant_group_size, dtype, size_bytes, added_at, last_used_at, \
             system_prompt, temperature, top_p, top_k, max_tokens, context_length FROM models "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<ModelRow> for LocalModel {
    type Error = CatalogError;

    fn try_from(r: ModelRow) -> Result<LocalModel> {
        let missing = |col: &str| CatalogError::corrupt("model source", format!("{col} is NULL"));
        let source = match r.source_kind.as_str() {
            "hub" => ModelSource::Hub {
                repo: r.source_repo.ok_or_else(|| missing("source_repo"))?,
                revision: r
                    .source_revision
                    .ok_or_else(|| missing("source_revision"))?,
                commit: r.source_commit,
            },
            "gguf" => ModelSource::Gguf {
                file: r.source_file.ok_or_else(|| missing("source_file"))?,
            },
            "folder" => ModelSource::Folder {
                path: r.source_path.ok_or_else(|| missing("source_path"))?,
            },
            "converted" => ModelSource::Converted {
                from_model_id: r
                    .source_from_model_id
                    .ok_or_else(|| missing("source_from_model_id"))?,
                repo: r.source_repo,
            },
            "default" => ModelSource::Default,
            other => {
                return Err(CatalogError::corrupt(
                    "model source",
                    format!("kind {other:?}"),
                ))
            }
        };
        let quantization = match (r.quant_bits, r.quant_group_size) {
            (Some(bits), Some(group_size)) => Some(Quantization { bits, group_size }),
            _ => None,
        };
        Ok(LocalModel {
            id: r.id,
            name: r.name,
            path: text_path(r.path),
            source,
            info: ModelInfo {
                format: ModelFormat::parse(&r.format)?,
                architecture: r.architecture,
                parameters: r.parameters,
                quantization,
                dtype: r.dtype,
                size_bytes: r.size_bytes,
            },
            added_at: r.added_at,
            last_used_at: r.last_used_at,
            settings: ModelSettings {
                system_prompt: r.system_prompt,
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: r.top_k,
                max_tokens: r.max_tokens,
                context_length: r.context_length,
            },
        })
    }
}

/// The source as its nullable columns.
#[derive(Default)]
struct SourceColumns<'a> {
    kind: &'static str,
    repo: Option<&'a str>,
    revision: Option<&'a str>,
    commit: Option<&'a str>,
    file: Option<&'a str>,
    path: Option<&'a str>,
    from_model_id: Option<&'a str>,
}

impl<'a> SourceColumns<'a> {
    fn of(source: &'a ModelSource) -> Self {
        match source {
            ModelSource::Hub {
                repo,
                revision,
                commit,
            } => SourceColumns {
                kind: "hub",
                repo: Some(repo),
                revision: Some(revision),
                commit: commit.as_deref(),
                ..Default::default()
            },
            ModelSource::Gguf { file } => SourceColumns {
                kind: "gguf",
                file: Some(file),
                ..Default::default()
            },
            ModelSource::Folder { path } => SourceColumns {
                kind: "folder",
                path: Some(path),
                ..Default::default()
            },
            ModelSource::Converted {
                from_model_id,
                repo,
            } => SourceColumns {
                kind: "converted",
                from_model_id: Some(from_model_id),
                repo: repo.as_deref(),
                ..Default::default()
            },
            ModelSource::Default => SourceColumns {
                kind: "default",
                ..Default::default()
            },
        }
    }
}

/// Longest display name accepted.
const MAX_NAME_CHARS: usize = 200;

fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(CatalogError::invalid(
            "model name",
            format!("{name:?}: 1 to {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    Ok(name)
}

impl Catalog {
    /// Registers the model at `new.path`, or refreshes its on-disk metadata if that path is known
    /// (keeping id, name, source, added_at, last_used_at and settings).
    pub async fn upsert_model(&self, new: &NewModel) -> Result<Upserted> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let (id, inserted) = upsert_in(&mut tx, new, now).await?;
        let model = get_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(Upserted { model, inserted })
    }

    pub async fn get_model(&self, id: &str) -> Result<LocalModel> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, id).await
    }

    pub async fn get_model_by_name(&self, name: &str) -> Result<LocalModel> {
        let row = select_models!("WHERE name = ?1", name)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or_else(|| CatalogError::not_found("model", name))?
            .try_into()
    }

    pub async fn get_model_by_path(&self, path: &Path) -> Result<LocalModel> {
        let text = path_text(path)?;
        let row = select_models!("WHERE path = ?1", text)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or_else(|| CatalogError::not_found("model", text))?
            .try_into()
    }

    /// Every model, most recently used first, never-used ones after them by name.
    pub async fn list_models(&self) -> Result<Vec<LocalModel>> {
        let rows = select_models!("ORDER BY last_used_at DESC, name")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(LocalModel::try_from).collect()
    }

    /// Renames a model; `Conflict` if another model has that name.
    pub async fn rename_model(&self, id: &str, name: &str) -> Result<LocalModel> {
        let name = checked_name(name)?;
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("UPDATE models SET name = ?1 WHERE id = ?2", name, id)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_constraint("model name", e))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("model", id));
        }
        let model = get_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(model)
    }

    /// Replaces a model's default settings.
    pub async fn update_model_settings(&self, id: &str, s: &ModelSettings) -> Result<LocalModel> {
        s.validate()?;
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!(
            "UPDATE models SET system_prompt = ?1, temperature = ?2, top_p = ?3, top_k = ?4, \
             max_tokens = ?5, context_length = ?6 WHERE id = ?7",
            s.system_prompt,
            s.temperature,
            s.top_p,
            s.top_k,
            s.max_tokens,
            s.context_length,
            id
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("model", id));
        }
        let model = get_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(model)
    }

    /// Marks a model as used now.
    pub async fn touch_model(&self, id: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("UPDATE models SET last_used_at = ?1 WHERE id = ?2", now, id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("model", id));
        }
        tx.commit().await
    }

    /// Forgets a model (its files stay); returns the row so the caller knows what to delete.
    /// Conversations, downloads and conversions that pointed at it keep their rows with the
    /// reference cleared; messages keep the id they were written by.
    pub async fn delete_model(&self, id: &str) -> Result<LocalModel> {
        let mut tx = self.write_tx().await?;
        let model = get_in(&mut tx, id).await?;
        sqlx::query!("DELETE FROM models WHERE id = ?1", id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(model)
    }
}

pub(crate) async fn get_in(conn: &mut SqliteConnection, id: &str) -> Result<LocalModel> {
    let row = select_models!("WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| CatalogError::not_found("model", id))?
        .try_into()
}

/// Inserts or refreshes one model inside the caller's transaction; returns its id and whether it
/// was inserted.
pub(crate) async fn upsert_in(
    conn: &mut SqliteConnection,
    new: &NewModel,
    now: i64,
) -> Result<(String, bool)> {
    let path = path_text(&new.path)?;
    let info = &new.info;
    let format = info.format.as_str();
    let bits = info.quantization.map(|q| q.bits);
    let group_size = info.quantization.map(|q| q.group_size);
    let existing = sqlx::query_scalar!("SELECT id FROM models WHERE path = ?1", path)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = existing {
        sqlx::query!(
            "UPDATE models SET format = ?1, architecture = ?2, parameters = ?3, quant_bits = ?4, \
             quant_group_size = ?5, dtype = ?6, size_bytes = ?7 WHERE id = ?8",
            format,
            info.architecture,
            info.parameters,
            bits,
            group_size,
            info.dtype,
            info.size_bytes,
            id
        )
        .execute(&mut *conn)
        .await?;
        return Ok((id, false));
    }
    let name = unique_name(conn, checked_name(&new.name)?).await?;
    let id = new_id("mdl_")?;
    let src = SourceColumns::of(&new.source);
    sqlx::query!(
        "INSERT INTO models (id, name, path, source_kind, source_repo, source_revision, \
         source_commit, source_file, source_path, source_from_model_id, format, architecture, \
         parameters, quant_bits, quant_group_size, dtype, size_bytes, added_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        id,
        name,
        path,
        src.kind,
        src.repo,
        src.revision,
        src.commit,
        src.file,
        src.path,
        src.from_model_id,
        format,
        info.architecture,
        info.parameters,
        bits,
        group_size,
        info.dtype,
        info.size_bytes,
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| map_constraint("model", e))?;
    Ok((id, true))
}

/// `base`, or `base (n)` with the smallest n >= 2 that no model has.
async fn unique_name(conn: &mut SqliteConnection, base: &str) -> Result<String> {
    let mut candidate = base.to_string();
    for n in 2..10_000 {
        let taken = sqlx::query_scalar!("SELECT id FROM models WHERE name = ?1", candidate)
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_none() {
            return Ok(candidate);
        }
        candidate = format!("{base} ({n})");
    }
    Err(CatalogError::Conflict {
        what: "model name",
        detail: format!("{base:?} is taken"),
    })
}
