//! From a MODEL string to a model folder: "default", a name in the models folder, a local
//! folder, a .gguf file (imported on first use) or a Hugging Face id / URL (downloaded into the
//! shared HF cache; the engine loads HF safetensors and MLX folders alike, so the snapshot
//! folder is the model). The CLI and the HTTP server share this one implementation; they differ
//! only in how a download reports progress, which the caller passes in.
use crate::{default_model, ServiceError};
use cortex_engine::EngineError;
use cortex_hub::download::{self, DownloadError, DownloadEvent, DownloadOptions, Snapshot};
use cortex_hub::{parse_model_ref, HubModel, ModelRef};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Downloads a hub model and returns its snapshot (the CLI draws progress bars, the server logs).
pub type PullFn<'a> = &'a dyn Fn(&HubModel) -> Result<Snapshot, DownloadError>;

/// Resolves `spec` against the models folder `models`, downloading hub models with `pull`.
/// Blocking: imports and downloads can take minutes.
pub fn resolve_model(spec: &str, models: &Path, pull: PullFn) -> Result<PathBuf, ServiceError> {
    if spec == "default" {
        return default_model::ensure(models);
    }
    match parse_model_ref(spec) {
        Ok(ModelRef::Hub(model)) => match pull(&model) {
            Ok(snapshot) => Ok(snapshot.path),
            Err(error) => Err(ServiceError::Download {
                model: model.to_string(),
                error,
            }),
        },
        Ok(ModelRef::Local(_)) => {
            cortex_engine::loader::resolve(spec, models).map_err(|e| match e {
                EngineError::NotAModel { .. } => ServiceError::ModelNotFound {
                    spec: spec.to_string(),
                    detail: e.to_string(),
                },
                e => ServiceError::Engine(e),
            })
        }
        Err(e) => Err(ServiceError::ModelNotFound {
            spec: spec.to_string(),
            detail: format!(
                "{spec}: no such local model file or folder, and not a Hugging Face id ({e})"
            ),
        }),
    }
}

/// True for a bare model name (a folder of the models folder): no path separator, not `.`/`~`
/// relative, not a .gguf file, not empty.
pub fn is_plain_name(name: &str) -> bool {
    !(name.is_empty()
        || name.contains(['/', '\\'])
        || name.starts_with(['.', '~'])
        || name.to_ascii_lowercase().ends_with(".gguf"))
}

/// Resolves `spec` to a model already here, for a server others can reach, which must not
/// download on a caller's behalf or open files by path: `default`, a folder of the models
/// folder by its bare name, or a Hugging Face model already in the cache `hub` (looked up
/// offline). Anything else is [`ServiceError::Forbidden`], whatever exists on disk.
pub fn resolve_library_model(
    spec: &str,
    models: &Path,
    hub: &download::HubConfig,
) -> Result<PathBuf, ServiceError> {
    if spec == "default" {
        return default_model::ensure(models);
    }
    if let Ok(ModelRef::Hub(model)) = parse_model_ref(spec) {
        return download::cached_snapshot(&model, hub).ok_or_else(|| ServiceError::Forbidden {
            spec: spec.to_string(),
            reason: "this server does not download models; it serves only models already here",
        });
    }
    if !is_plain_name(spec) {
        return Err(ServiceError::Forbidden {
            spec: spec.to_string(),
            reason: "this server does not open files by path; name a model of its library",
        });
    }
    let dir = models.join(spec);
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    Err(ServiceError::ModelNotFound {
        spec: spec.to_string(),
        detail: format!("{spec}: no model of that name in the library"),
    })
}

/// Downloads `model` (default file selection, at most `max_bytes` in all) logging progress
/// with `tracing` at most every few seconds; `cancel` stops it, keeping partial files for
/// resume.
pub fn pull_logged(
    model: &HubModel,
    max_bytes: Option<u64>,
    cancel: &AtomicBool,
) -> Result<Snapshot, DownloadError> {
    let last = Mutex::new(Instant::now());
    let total = Mutex::new(0u64);
    let on_event = |e: DownloadEvent| match e {
        DownloadEvent::Started {
            total_bytes,
            to_fetch,
            ..
        } => {
            if let Ok(mut t) = total.lock() {
                *t = total_bytes;
            }
            tracing::info!(%model, total_bytes, to_fetch, "download started");
        }
        DownloadEvent::Progress(p) => {
            let due = last.lock().ok().is_some_and(|mut l| {
                let due = l.elapsed() >= Duration::from_secs(5);
                if due {
                    *l = Instant::now();
                }
                due
            });
            if due {
                let total = total.lock().map(|t| *t).unwrap_or(0);
                tracing::info!(%model, done = p.total_done, total, "downloading");
            }
        }
        DownloadEvent::Retrying {
            path,
            attempt,
            error,
        } => tracing::warn!(%model, path, attempt, error, "retrying"),
        DownloadEvent::Finished { fetched_bytes, .. } => {
            tracing::info!(%model, fetched_bytes, "download finished")
        }
        _ => {}
    };
    let opts = DownloadOptions {
        max_bytes,
        ..DownloadOptions::default()
    };
    download::download(model, &opts, cancel, &on_event)
}
