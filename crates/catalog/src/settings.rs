//! App settings as key -> JSON value. The catalog stores them and knows none of their meanings
//! (the service owns the keys and their defaults). Secrets such as the HF token never go here.

use std::collections::BTreeMap;

use crate::db::Catalog;
use crate::error::{CatalogError, Result};
use crate::types::{from_json, to_json};

impl Catalog {
    /// The value of `key`, or `None` if it was never set.
    pub async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let value = sqlx::query_scalar!("SELECT value FROM settings WHERE key = ?1", key)
            .fetch_optional(&self.pool)
            .await?;
        value.map(|v| from_json("setting", &v)).transpose()
    }

    pub async fn set_setting(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        if key.is_empty() {
            return Err(CatalogError::invalid("setting key", "must not be empty"));
        }
        let text = to_json(value)?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query!(
            "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            key,
            text,
            now
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Removes `key`; returns whether it was set.
    pub async fn delete_setting(&self, key: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("DELETE FROM settings WHERE key = ?1", key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every setting, by key.
    pub async fn all_settings(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let rows = sqlx::query!("SELECT key, value FROM settings ORDER BY key")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.key, from_json("setting", &r.value)?)))
            .collect()
    }
}
