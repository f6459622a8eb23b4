//! The library: local models as catalog rows plus whether each is loaded. Registering reads a
//! model folder's metadata (format, architecture, quantization, size); the library is kept in
//! step with disk (models found in the models folder and the Hugging Face cache are added,
//! rows whose folders are gone are forgotten). Deleting removes the files the app owns: a
//! folder in the models folder, or a snapshot of the shared HF cache the way huggingface_hub
//! deletes one (blobs no other snapshot uses). A folder imported from elsewhere is only
//! forgotten: the app never deletes what it did not make.
use crate::app::App;
use crate::events::AppEvent;
use crate::{default_model, Result, ServiceError};
use cortex_catalog::{LocalModel, ModelSettings, ModelSource, NewModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A library model as front ends see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: LocalModel,
    pub loaded: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Library {
    pub models: Vec<ModelView>,
    pub total_size_bytes: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<ModelSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub path: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deleted {
    pub freed_bytes: u64,
    /// True when only the library entry was removed (a folder the app did not make).
    pub files_kept: bool,
}

/// A folder to add to the library.
pub(crate) struct Registration {
    pub path: PathBuf,
    pub name: String,
    pub source: ModelSource,
}

/// Disk is scanned again at most this often when the library is listed.
const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// Bytes of the files in `dir` (recursively; links followed: a snapshot's size is its blobs').
fn folder_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match std::fs::metadata(e.path()) {
            Ok(m) if m.is_dir() => folder_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl App {
    pub(crate) async fn register(&self, r: Registration) -> Result<LocalModel> {
        let path = r.path.clone();
        let info = tokio::task::spawn_blocking(move || {
            cortex_catalog::scan::read_model_info(&path, folder_size(&path))
        })
        .await??;
        let up = self
            .catalog()
            .upsert_model(&NewModel {
                name: r.name,
                path: r.path,
                source: r.source,
                info,
            })
            .await?;
        self.emit(AppEvent::ModelsChanged);
        Ok(up.model)
    }

    fn view(&self, model: LocalModel) -> ModelView {
        ModelView {
            loaded: self.registry().is_loaded(&model.path),
            model,
        }
    }

    /// Adds what is on disk and forgets what is gone; at most every [`RESCAN_EVERY`] unless
    /// `force`.
    pub async fn sync_library(&self, force: bool) -> Result<()> {
        {
            let mut last = crate::registry::lock(&self.inner.last_scan);
            if !force && last.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let (models, cache) = (self.models_dir(), self.hub_config().cache_dir);
        let found = tokio::task::spawn_blocking(move || {
            let mut found = cortex_catalog::scan::scan_models_dir(&models)?.models;
            found.extend(cortex_catalog::scan::scan_hf_cache(&cache)?.models);
            Ok::<_, cortex_catalog::CatalogError>(found)
        })
        .await??;
        let changed = self.catalog().sync(&found).await?;
        if !changed.added.is_empty() || !changed.removed.is_empty() {
            self.emit(AppEvent::ModelsChanged);
        }
        Ok(())
    }

    pub async fn list_models(&self) -> Result<Library> {
        self.sync_library(false).await?;
        let models: Vec<ModelView> = self
            .catalog()
            .list_models()
            .await?
            .into_iter()
            .map(|m| self.view(m))
            .collect();
        let total_size_bytes = models
            .iter()
            .map(|m| m.model.info.size_bytes.max(0) as u64)
            .sum();
        Ok(Library {
            models,
            total_size_bytes,
        })
    }

    pub async fn get_model(&self, id: &str) -> Result<ModelView> {
        Ok(self.view(self.catalog().get_model(id).await?))
    }

    pub async fn update_model(&self, id: &str, u: ModelUpdate) -> Result<ModelView> {
        let mut model = self.catalog().get_model(id).await?;
        if let Some(name) = &u.name {
            model = self.catalog().rename_model(id, name).await?;
        }
        if let Some(s) = &u.settings {
            model = self.catalog().update_model_settings(id, s).await?;
        }
        self.emit(AppEvent::ModelsChanged);
        Ok(self.view(model))
    }

    pub async fn load_model(&self, id: &str) -> Result<ModelView> {
        let model = self.catalog().get_model(id).await?;
        let spec = model.path.to_string_lossy().into_owned();
        drop(self.registry().acquire(&spec).await?);
        self.catalog().touch_model(id).await?;
        self.emit(AppEvent::ModelsChanged);
        self.get_model(id).await
    }

    pub async fn unload_model(&self, id: &str) -> Result<ModelView> {
        let model = self.catalog().get_model(id).await?;
        self.registry().unload(&model.path).await?;
        self.emit(AppEvent::ModelsChanged);
        Ok(self.view(model))
    }

    pub async fn delete_model(&self, id: &str) -> Result<Deleted> {
        let model = self.catalog().get_model(id).await?;
        self.registry().unload(&model.path).await?;
        let (models_dir, cache) = (self.models_dir(), self.hub_config().cache_dir);
        let path = model.path.clone();
        let source = model.source.clone();
        let freed =
            tokio::task::spawn_blocking(move || delete_files(&path, &source, &models_dir, &cache))
                .await??;
        self.catalog().delete_model(id).await?;
        if default_model_path(&self.models_dir()) == model.path {
            *crate::registry::lock(&self.inner.default_model_id) = None;
        }
        self.emit(AppEvent::ModelsChanged);
        Ok(Deleted {
            freed_bytes: freed.unwrap_or(0),
            files_kept: freed.is_none(),
        })
    }

    /// Imports a .gguf file (into MLX format in the models folder) or registers a model folder
    /// where it is.
    pub async fn import_model(&self, req: ImportRequest) -> Result<ModelView> {
        let path = req.path;
        if !path.is_absolute() {
            return Err(ServiceError::invalid("path", "must be an absolute path"));
        }
        let meta = std::fs::metadata(&path).map_err(|_| {
            ServiceError::invalid("path", format!("{} does not exist", path.display()))
        })?;
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let model = if meta.is_file() && is_gguf {
            let source = ModelSource::Gguf {
                file: path.to_string_lossy().into_owned(),
            };
            self.import_gguf_file(&path, req.name, source).await?
        } else if meta.is_dir() {
            if !path.join("config.json").is_file() {
                return Err(ServiceError::invalid(
                    "path",
                    format!(
                        "{} holds no config.json: not a model folder",
                        path.display()
                    ),
                ));
            }
            let name = req.name.unwrap_or_else(|| file_name(&path));
            let source = ModelSource::Folder {
                path: path.to_string_lossy().into_owned(),
            };
            self.register(Registration { path, name, source }).await?
        } else {
            return Err(ServiceError::invalid(
                "path",
                "expected a .gguf file or a model folder",
            ));
        };
        Ok(self.view(model))
    }

    /// GGUF -> MLX format in the models folder (staged, renamed into place), then registered.
    pub(crate) async fn import_gguf_file(
        &self,
        file: &Path,
        name: Option<String>,
        source: ModelSource,
    ) -> Result<LocalModel> {
        let stem = name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let folder = safe_folder_name(&stem);
        let dest = unused_dest(&self.models_dir(), &folder);
        let src = file.to_path_buf();
        let dest = tokio::task::spawn_blocking(move || {
            cortex_engine::gguf_import::import_gguf(&src, &dest)
        })
        .await??;
        self.register(Registration {
            path: dest,
            name: name.unwrap_or(stem),
            source,
        })
        .await
    }

    /// Imports the embedded default model on first use and registers it.
    pub async fn ensure_default_model(&self) -> Result<String> {
        if let Some(id) = self.default_model_id() {
            return Ok(id);
        }
        let models = self.models_dir();
        let dir = tokio::task::spawn_blocking(move || default_model::ensure(&models)).await??;
        let model = self
            .register(Registration {
                path: dir,
                name: default_model::NAME.to_string(),
                source: ModelSource::Default,
            })
            .await?;
        *crate::registry::lock(&self.inner.default_model_id) = Some(model.id.clone());
        Ok(model.id)
    }

    pub(crate) async fn resume_unfinished(&self) -> Result<()> {
        self.resume_downloads().await?;
        self.fail_interrupted_conversions().await
    }
}

fn default_model_path(models: &Path) -> PathBuf {
    models.join(default_model::NAME)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// A name made safe as one folder name: no separators, no leading dots, not empty.
pub(crate) fn safe_folder_name(name: &str) -> String {
    let parts: Vec<String> = name
        .split(['/', '\\'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect()
        })
        .collect();
    let joined = parts.join("-");
    let cleaned = joined.trim_start_matches('.').trim_matches('-');
    if cleaned.is_empty() {
        "model".into()
    } else {
        cleaned.chars().take(120).collect()
    }
}

/// `dir/name`, or `dir/name-2`, `-3`, ... when taken.
pub(crate) fn unused_dest(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| dir.join(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Removes a model's files if the app owns them; the bytes freed, or None when the files are
/// the user's own folder and stay.
fn delete_files(
    path: &Path,
    source: &ModelSource,
    models_dir: &Path,
    cache: &Path,
) -> Result<Option<u64>> {
    if !path.exists() {
        return Ok(Some(0));
    }
    if path.starts_with(cache) {
        let repo = match source {
            ModelSource::Hub { repo, .. } => Some(repo.clone()),
            _ => repo_of_snapshot(cache, path),
        };
        if let Some(repo) = repo {
            let commit = file_name(path);
            return Ok(Some(cortex_catalog::scan::delete_hf_snapshot(
                cache, &repo, &commit,
            )?));
        }
    }
    if path.starts_with(models_dir) {
        return Ok(Some(cortex_catalog::scan::delete_model_dir(
            models_dir, path,
        )?));
    }
    Ok(None)
}

/// `cache/models--org--name/snapshots/<commit>` -> `org/name`.
fn repo_of_snapshot(cache: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(cache).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let rest = first.strip_prefix("models--")?;
    let (org, name) = rest.split_once("--")?;
    Some(format!("{org}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_safe() {
        assert_eq!(
            safe_folder_name("SmolLM2 135M/Instruct"),
            "SmolLM2-135M-Instruct"
        );
        assert_eq!(safe_folder_name("../../etc"), "etc");
        assert_eq!(safe_folder_name("..."), "model");
        assert_eq!(safe_folder_name(""), "model");
        assert_eq!(safe_folder_name("a\\b"), "a-b");
    }

    #[test]
    fn taken_destinations_get_a_number() {
        let dir = std::env::temp_dir().join(format!("cortex-unused-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::create_dir_all(dir.join("m-2")).unwrap();
        assert_eq!(unused_dest(&dir, "m"), dir.join("m-3"));
        assert_eq!(unused_dest(&dir, "x"), dir.join("x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Registration of work a front end did itself (the CLI's pull and convert draw their own
/// progress bars), so it lands in the library the same way as the app's own.
impl App {
    /// A snapshot the hub downloader completed.
    pub async fn register_snapshot(
        &self,
        repo: &str,
        revision: &str,
        commit: &str,
        path: &Path,
    ) -> Result<ModelView> {
        let name = repo.rsplit('/').next().unwrap_or(repo).to_string();
        let model = self
            .register(Registration {
                path: path.to_path_buf(),
                name,
                source: ModelSource::Hub {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    commit: Some(commit.to_string()),
                },
            })
            .await?;
        Ok(self.view(model))
    }

    /// The output `dest` of converting the model folder `src` (registered first if it is not
    /// in the library yet).
    pub async fn register_converted(&self, src: &Path, dest: &Path) -> Result<ModelView> {
        let src = std::fs::canonicalize(src).map_err(ServiceError::io(src))?;
        let from = match self.catalog().get_model_by_path(&src).await {
            Ok(m) => m,
            Err(cortex_catalog::CatalogError::NotFound { .. }) => {
                self.register(Registration {
                    name: file_name(&src),
                    source: ModelSource::Folder {
                        path: src.to_string_lossy().into_owned(),
                    },
                    path: src.clone(),
                })
                .await?
            }
            Err(e) => return Err(e.into()),
        };
        let repo = match &from.source {
            ModelSource::Hub { repo, .. } => Some(repo.clone()),
            _ => None,
        };
        let model = self
            .register(Registration {
                path: dest.to_path_buf(),
                name: file_name(dest),
                source: ModelSource::Converted {
                    from_model_id: from.id,
                    repo,
                },
            })
            .await?;
        Ok(self.view(model))
    }

    /// A library model by id or name.
    pub async fn find_model(&self, id_or_name: &str) -> Result<ModelView> {
        self.sync_library(false).await?;
        match self.catalog().get_model(id_or_name).await {
            Ok(m) => Ok(self.view(m)),
            Err(cortex_catalog::CatalogError::NotFound { .. }) => {
                Ok(self.view(self.catalog().get_model_by_name(id_or_name).await?))
            }
            Err(e) => Err(e.into()),
        }
    }
}
