//! Reconciling the model library with the disk: register what a scan found, forget rows whose
//! folder is gone. Deletes rows only, never files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::db::Catalog;
use crate::error::{CatalogError, Result};
use crate::models::{self, LocalModel, NewModel};

/// What [`Catalog::sync`] changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncReport {
    /// Models seen for the first time.
    pub added: Vec<LocalModel>,
    /// Known models whose on-disk metadata was refreshed.
    pub updated: usize,
    /// Rows forgotten because their path no longer exists.
    pub removed: Vec<LocalModel>,
}

impl Catalog {
    /// Upserts every model in `found` (the result of the scans) and forgets every other row whose
    /// path no longer exists. A path that cannot be checked (permissions, a stalled mount) is kept.
    pub async fn sync(&self, found: &[NewModel]) -> Result<SyncReport> {
        let found_paths: HashSet<&Path> = found.iter().map(|m| m.path.as_path()).collect();
        let known = sqlx::query!("SELECT id, path FROM models")
            .fetch_all(&self.pool)
            .await?;
        // A few thousand stat calls: cheap enough to make here rather than on a blocking thread.
        let gone: Vec<String> = known
            .into_iter()
            .filter(|row| {
                let path = PathBuf::from(&row.path);
                !found_paths.contains(path.as_path()) && matches!(path.try_exists(), Ok(false))
            })
            .map(|row| row.id)
            .collect();

        let now = self.now();
        let mut report = SyncReport::default();
        let mut tx = self.write_tx().await?;
        for new in found {
            let (id, inserted) = models::upsert_in(&mut tx, new, now).await?;
            if inserted {
                report.added.push(models::get_in(&mut tx, &id).await?);
            } else {
                report.updated += 1;
            }
        }
        for id in gone {
            // Another writer may have removed it since the listing above.
            let model = match models::get_in(&mut tx, &id).await {
                Ok(model) => model,
                Err(CatalogError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            sqlx::query!("DELETE FROM models WHERE id = ?1", id)
                .execute(&mut *tx)
                .await?;
            report.removed.push(model);
        }
        tx.commit().await?;
        Ok(report)
    }
}
