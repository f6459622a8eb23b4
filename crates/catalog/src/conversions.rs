//! Conversion records (HF safetensors -> MLX, optionally quantized): the request, its progress and
//! the model it produced. Owns the `conversions` table only; the converter itself is in hub.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::db::{new_id, Catalog};
use crate::error::{map_constraint, CatalogError, Result};
use crate::types::{text_enum, ErrorInfo};

text_enum! {
    pub enum ConversionState ("conversion state") {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl ConversionState {
    pub fn is_finished(self) -> bool {
        !matches!(self, ConversionState::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewConversion {
    /// The source model.
    pub model_id: String,
    /// Name of the model to produce.
    pub name: String,
    /// `None`: no quantization, only a dtype change.
    pub bits: Option<i64>,
    pub group_size: i64,
    pub dtype: Option<String>,
    pub total_tensors: i64,
    pub total_bytes: i64,
    pub estimated_output_bytes: i64,
}

/// A conversion (the app API's `Conversion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    pub id: String,
    pub model_id: String,
    pub name: String,
    pub bits: Option<i64>,
    pub group_size: i64,
    pub dtype: Option<String>,
    pub state: ConversionState,
    pub done_tensors: i64,
    pub total_tensors: i64,
    pub done_bytes: i64,
    pub total_bytes: i64,
    pub estimated_output_bytes: i64,
    pub result_model_id: Option<String>,
    pub error: Option<ErrorInfo>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Fields to change; `None` leaves a field as it is (`Some(None)` clears a nullable one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversionUpdate {
    pub state: Option<ConversionState>,
    pub done_tensors: Option<i64>,
    pub total_tensors: Option<i64>,
    pub done_bytes: Option<i64>,
    pub total_bytes: Option<i64>,
    pub result_model_id: Option<Option<String>>,
    pub error: Option<Option<ErrorInfo>>,
}

struct ConversionRow {
    id: String,
    model_id: String,
    name: String,
    bits: Option<i64>,
    group_size: i64,
    dtype: Option<String>,
    state: String,
    done_tensors: i64,
    total_tensors: i64,
    done_bytes: i64,
    total_bytes: i64,
    estimated_output_bytes: i64,
    result_model_id: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    error_details: Option<String>,
    created_at: i64,
    updated_at: i64,
}

macro_rules! select_conversions {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ConversionRow,
            "SELECT id, model_id, name, bits, group_size, dtype, state, done_tensors, \
             total_tensors, done_bytes, total_bytes, estimated_output_bytes, result_model_id, \
             error_code, error_message, error_details, created_at, updated_at FROM conversions "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<ConversionRow> for Conversion {
    type Error = CatalogError;

    fn try_from(r: ConversionRow) -> Result<Conversion> {
        Ok(Conversion {
            state: ConversionState::parse(&r.state)?,
            error: ErrorInfo::from_columns(r.error_code, r.error_message, r.error_details)?,
            id: r.id,
            model_id: r.model_id,
            name: r.name,
            bits: r.bits,
            group_size: r.group_size,
            dtype: r.dtype,
            done_tensors: r.done_tensors,
            total_tensors: r.total_tensors,
            done_bytes: r.done_bytes,
            total_bytes: r.total_bytes,
            estimated_output_bytes: r.estimated_output_bytes,
            result_model_id: r.result_model_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn check_counts(values: &[(&'static str, Option<i64>)]) -> Result<()> {
    for (what, value) in values {
        if let Some(v) = value.filter(|v| *v < 0) {
            return Err(CatalogError::invalid(what, format!("{v} is negative")));
        }
    }
    Ok(())
}

impl Catalog {
    /// Records a conversion that is starting (`running`).
    pub async fn create_conversion(&self, new: &NewConversion) -> Result<Conversion> {
        if new.name.trim().is_empty() {
            return Err(CatalogError::invalid(
                "conversion",
                "name must not be empty",
            ));
        }
        if new.group_size <= 0 || new.bits.is_some_and(|b| b <= 0) {
            return Err(CatalogError::invalid(
                "conversion",
                "bits and group_size must be > 0",
            ));
        }
        check_counts(&[
            ("total_tensors", Some(new.total_tensors)),
            ("total_bytes", Some(new.total_bytes)),
            ("estimated_output_bytes", Some(new.estimated_output_bytes)),
        ])?;
        let id = new_id("cv_")?;
        let now = self.now();
        let state = ConversionState::Running.as_str();
        let mut tx = self.write_tx().await?;
        sqlx::query!(
            "INSERT INTO conversions (id, model_id, name, bits, group_size, dtype, state, \
             total_tensors, total_bytes, estimated_output_bytes, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            id,
            new.model_id,
            new.name,
            new.bits,
            new.group_size,
            new.dtype,
            state,
            new.total_tensors,
            new.total_bytes,
            new.estimated_output_bytes,
            now
        )
        .execute(&mut *tx)
        .await?;
        let conversion = get_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(conversion)
    }

    /// Applies `update` and bumps `updated_at`.
    pub async fn update_conversion(&self, id: &str, u: &ConversionUpdate) -> Result<Conversion> {
        check_counts(&[
            ("done_tensors", u.done_tensors),
            ("total_tensors", u.total_tensors),
            ("done_bytes", u.done_bytes),
            ("total_bytes", u.total_bytes),
        ])?;
        let state = u.state.map(ConversionState::as_str);
        let set_result = u.result_model_id.is_some();
        let result_model_id = u.result_model_id.as_ref().and_then(Option::as_deref);
        let set_error = u.error.is_some();
        let (code, message, details) =
            ErrorInfo::to_columns(u.error.as_ref().and_then(Option::as_ref))?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!(
            "UPDATE conversions SET state = COALESCE(?1, state), \
             done_tensors = COALESCE(?2, done_tensors), total_tensors = COALESCE(?3, total_tensors), \
             done_bytes = COALESCE(?4, done_bytes), total_bytes = COALESCE(?5, total_bytes), \
             result_model_id = CASE WHEN ?6 THEN ?7 ELSE result_model_id END, \
             error_code = CASE WHEN ?8 THEN ?9 ELSE error_code END, \
             error_message = CASE WHEN ?8 THEN ?10 ELSE error_message END, \
             error_details = CASE WHEN ?8 THEN ?11 ELSE error_details END, \
             updated_at = ?12 WHERE id = ?13",
            state,
            u.done_tensors,
            u.total_tensors,
            u.done_bytes,
            u.total_bytes,
            set_result,
            result_model_id,
            set_error,
            code,
            message,
            details,
            now,
            id
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_constraint("conversion result_model_id", e))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("conversion", id));
        }
        let conversion = get_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(conversion)
    }

    pub async fn get_conversion(&self, id: &str) -> Result<Conversion> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, id).await
    }

    /// Every conversion, newest first.
    pub async fn list_conversions(&self) -> Result<Vec<Conversion>> {
        let rows = select_conversions!("ORDER BY created_at DESC, seq DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Conversion::try_from).collect()
    }

    /// Conversions that were running when the app stopped, oldest first.
    pub async fn unfinished_conversions(&self) -> Result<Vec<Conversion>> {
        let rows = select_conversions!("WHERE state = 'running' ORDER BY created_at, seq")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Conversion::try_from).collect()
    }

    pub async fn delete_conversion(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("DELETE FROM conversions WHERE id = ?1", id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("conversion", id));
        }
        tx.commit().await
    }
}

async fn get_in(conn: &mut SqliteConnection, id: &str) -> Result<Conversion> {
    let row = select_conversions!("WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| CatalogError::not_found("conversion", id))?
        .try_into()
}
