//! Downloads the app runs in the background: each is a catalog row (so it shows up and resumes
//! after a restart or a kill) plus, while it runs, a task with live progress (per file and
//! total, speed, ETA) and cancel/pause flags. Progress goes out as [`AppEvent::Download`] at
//! most every [`EMIT_EVERY`]; the row is saved on every state change and every [`SAVE_EVERY`].
//!
//! States: queued -> running (<-> retrying) -> completed | failed | cancelled; running ->
//! paused -> (resume) queued. Pausing and cancelling both stop the transfer and keep the
//! partial files (the hub downloader resumes from them); cancel only records that the user
//! does not want it. A completed download is registered in the library (a GGUF variant is
//! imported into MLX format first) and its `model_id` set.
use crate::app::App;
use crate::events::AppEvent;
use crate::library::Registration;
use crate::{Result, ServiceError};
use cortex_catalog::{DownloadState, DownloadUpdate, ErrorInfo, ModelSource, NewDownload};
use cortex_hub::download::{DownloadEvent, DownloadOptions, Snapshot};
use cortex_hub::{parse_model_ref, HubModel, ModelRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const EMIT_EVERY: Duration = Duration::from_millis(200);
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileProgress {
    pub path: String,
    pub size: u64,
    pub done: u64,
}

/// A download as front ends see it: the catalog row plus live progress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Download {
    #[serde(flatten)]
    pub record: cortex_catalog::Download,
    pub speed_bps: f64,
    pub eta_s: Option<f64>,
    pub files: Vec<FileProgress>,
}

impl From<cortex_catalog::Download> for Download {
    fn from(record: cortex_catalog::Download) -> Self {
        Download {
            record,
            speed_bps: 0.0,
            eta_s: None,
            files: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct DownloadRequest {
    pub repo: String,
    #[serde(default)]
    pub revision: Option<String>,
    /// Globs of the files to fetch; absent: what a model needs (safetensors, json, tokenizer).
    #[serde(default)]
    pub include: Option<Vec<String>>,
}

/// A running download.
struct Task {
    cancel: AtomicBool,
    /// Set with `cancel` when the stop is a pause.
    pause: AtomicBool,
    live: Mutex<Live>,
}

struct Live {
    view: Download,
    last_emit: Instant,
    last_save: Instant,
    /// When bytes last arrived: a stalled transfer shows no speed and no ETA.
    last_progress: Instant,
}

/// No bytes for this long: the speed shown is 0 and the ETA unknown.
const STALLED_AFTER: Duration = Duration::from_secs(3);

impl Live {
    fn snapshot(&self) -> Download {
        let mut v = self.view.clone();
        if self.last_progress.elapsed() >= STALLED_AFTER {
            v.speed_bps = 0.0;
            v.eta_s = None;
        }
        v.record.updated_at = unix_ms();
        v
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Default)]
pub(crate) struct Downloads {
    running: Mutex<HashMap<String, Arc<Task>>>,
}

impl Downloads {
    fn task(&self, id: &str) -> Option<Arc<Task>> {
        crate::registry::lock(&self.running).get(id).cloned()
    }

    pub fn stop_all(&self) {
        for t in crate::registry::lock(&self.running).values() {
            t.pause.store(true, Ordering::Release);
            t.cancel.store(true, Ordering::Release);
        }
    }
}

fn hub_model(repo: &str, revision: Option<&str>) -> Result<HubModel> {
    match parse_model_ref(repo.trim()) {
        Ok(ModelRef::Hub(mut m)) => {
            if let Some(r) = revision.filter(|r| !r.is_empty()) {
                m.revision = Some(r.to_string());
            }
            Ok(m)
        }
        _ => Err(ServiceError::invalid(
            "repo",
            format!("{repo:?} is not a Hugging Face model id (org/name)"),
        )),
    }
}

impl App {
    pub async fn start_download(&self, req: DownloadRequest) -> Result<Download> {
        let model = hub_model(&req.repo, req.revision.as_deref())?;
        let include = req.include.filter(|g| !g.is_empty());
        let revision = model.revision_or_main().to_string();
        // the same repo, revision and files already on the way: that one
        for d in self.catalog().unfinished_downloads().await? {
            if d.repo == model.repo_id() && d.revision == revision && d.include == include {
                if d.state == DownloadState::Paused {
                    return self.resume_download(&d.id).await;
                }
                return Ok(self.download_view(d));
            }
        }
        let record = self
            .catalog()
            .create_download(&NewDownload {
                repo: model.repo_id(),
                revision,
                include,
            })
            .await?;
        let id = record.id.clone();
        self.spawn_download(record);
        self.get_download(&id).await
    }

    pub async fn list_downloads(&self) -> Result<Vec<Download>> {
        let rows = self.catalog().list_downloads().await?;
        Ok(rows.into_iter().map(|r| self.download_view(r)).collect())
    }

    pub async fn get_download(&self, id: &str) -> Result<Download> {
        let record = self.catalog().get_download(id).await?;
        Ok(self.download_view(record))
    }

    /// The live view of a running download, else the row.
    fn download_view(&self, record: cortex_catalog::Download) -> Download {
        match self.inner.downloads.task(&record.id) {
            Some(t) => crate::registry::lock(&t.live).snapshot(),
            None => record.into(),
        }
    }

    pub async fn pause_download(&self, id: &str) -> Result<Download> {
        self.stop_download(id, true).await
    }

    pub async fn cancel_download(&self, id: &str) -> Result<Download> {
        self.stop_download(id, false).await
    }

    async fn stop_download(&self, id: &str, pause: bool) -> Result<Download> {
        let record = self.catalog().get_download(id).await?;
        if let Some(task) = self.inner.downloads.task(id) {
            task.pause.store(pause, Ordering::Release);
            task.cancel.store(true, Ordering::Release);
            // the task records the final state when its transfer has stopped
            return Ok(self.download_view(record));
        }
        let state = match (record.state, pause) {
            (s, _) if s.is_finished() => {
                return Err(ServiceError::Conflict(format!(
                    "the download is already {}",
                    s.as_str()
                )))
            }
            (_, true) => DownloadState::Paused,
            (_, false) => DownloadState::Cancelled,
        };
        self.save_state(id, state, None).await
    }

    /// Starts a paused, failed or cancelled download again (from its partial files).
    pub async fn resume_download(&self, id: &str) -> Result<Download> {
        let record = self.catalog().get_download(id).await?;
        if self.inner.downloads.task(id).is_some() {
            return Ok(self.download_view(record));
        }
        if record.state == DownloadState::Completed {
            return Err(ServiceError::Conflict(
                "the download is already complete".into(),
            ));
        }
        let record = self
            .catalog()
            .update_download(
                id,
                &DownloadUpdate {
                    state: Some(DownloadState::Queued),
                    error: Some(None),
                    ..Default::default()
                },
            )
            .await?;
        self.spawn_download(record);
        self.get_download(id).await
    }

    /// Forgets a finished, failed or cancelled download (its files stay in the cache).
    pub async fn forget_download(&self, id: &str) -> Result<()> {
        if self.inner.downloads.task(id).is_some() {
            return Err(ServiceError::Conflict(
                "the download is running: cancel it first".into(),
            ));
        }
        Ok(self.catalog().delete_download(id).await?)
    }

    async fn save_state(
        &self,
        id: &str,
        state: DownloadState,
        error: Option<ErrorInfo>,
    ) -> Result<Download> {
        let record = self
            .catalog()
            .update_download(
                id,
                &DownloadUpdate {
                    state: Some(state),
                    error: Some(error),
                    ..Default::default()
                },
            )
            .await?;
        let view: Download = record.into();
        self.emit(AppEvent::Download {
            download: view.clone(),
        });
        Ok(view)
    }

    /// Resumes what the last run left running (paused ones stay paused).
    pub(crate) async fn resume_downloads(&self) -> Result<()> {
        for d in self.catalog().unfinished_downloads().await? {
            if d.state != DownloadState::Paused {
                tracing::info!(repo = d.repo, "resuming download");
                self.spawn_download(d);
            }
        }
        Ok(())
    }

    fn spawn_download(&self, record: cortex_catalog::Download) {
        let task = Arc::new(Task {
            cancel: AtomicBool::new(false),
            pause: AtomicBool::new(false),
            live: Mutex::new(Live {
                view: record.clone().into(),
                last_emit: Instant::now(),
                last_save: Instant::now(),
                last_progress: Instant::now(),
            }),
        });
        crate::registry::lock(&self.inner.downloads.running)
            .insert(record.id.clone(), task.clone());
        let (app, rt) = (self.clone(), tokio::runtime::Handle::current());
        let spawned = std::thread::Builder::new()
            .name("download".into())
            .spawn(move || {
                let id = record.id.clone();
                let result = rt.block_on(app.save_state(&id, DownloadState::Running, None));
                if let Err(e) = result {
                    tracing::warn!("download {id}: {e}");
                }
                let outcome = run(&app, &rt, &record, &task);
                crate::registry::lock(&app.inner.downloads.running).remove(&id);
                rt.block_on(app.finish_download(&id, &task, outcome));
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a download thread: {e}");
        }
    }

    async fn finish_download(&self, id: &str, task: &Task, outcome: Result<String>) {
        let (total, done) = {
            let live = crate::registry::lock(&task.live);
            (live.view.record.total_bytes, live.view.record.done_bytes)
        };
        let saved = match outcome {
            Ok(model_id) => {
                let r = self
                    .catalog()
                    .update_download(
                        id,
                        &DownloadUpdate {
                            state: Some(DownloadState::Completed),
                            model_id: Some(Some(model_id)),
                            error: Some(None),
                            total_bytes: Some(total),
                            done_bytes: Some(total),
                        },
                    )
                    .await;
                self.emit(AppEvent::ModelsChanged);
                let r = r.map(Download::from).map_err(ServiceError::from);
                if let Ok(view) = &r {
                    self.emit(AppEvent::Download {
                        download: view.clone(),
                    });
                }
                r
            }
            Err(ServiceError::Cancelled) if task.pause.load(Ordering::Acquire) => {
                let progress = DownloadUpdate {
                    total_bytes: Some(total),
                    done_bytes: Some(done),
                    ..Default::default()
                };
                let _ = self.catalog().update_download(id, &progress).await;
                self.save_state(id, DownloadState::Paused, None).await
            }
            Err(ServiceError::Cancelled) => {
                self.save_state(id, DownloadState::Cancelled, None).await
            }
            Err(e) => {
                tracing::warn!("download {id} failed: {e}");
                self.save_state(id, DownloadState::Failed, Some(e.info()))
                    .await
            }
        };
        if let Err(e) = saved {
            tracing::error!("download {id}: cannot save its state: {e}");
        }
    }
}

/// The transfer, then registration. Blocking (its own thread). Returns the model id.
fn run(
    app: &App,
    rt: &tokio::runtime::Handle,
    record: &cortex_catalog::Download,
    task: &Arc<Task>,
) -> Result<String> {
    crate::registry::lock(&task.live).view.record.state = DownloadState::Running;
    let model = hub_model(&record.repo, Some(&record.revision))?;
    let opts = DownloadOptions {
        config: app.hub_config(),
        include: record.include.clone().unwrap_or_default(),
        ..DownloadOptions::default()
    };
    let on_event = |e: DownloadEvent| on_progress(app, rt, &record.id, task, e);
    let snapshot = cortex_hub::download::download(&model, &opts, &task.cancel, &on_event).map_err(
        |error| match error {
            cortex_hub::download::DownloadError::Cancelled => ServiceError::Cancelled,
            error => ServiceError::Download {
                model: model.repo_id(),
                error,
            },
        },
    )?;
    {
        let mut live = crate::registry::lock(&task.live);
        live.view.record.state = DownloadState::Verifying;
        app.emit(AppEvent::Download {
            download: live.snapshot(),
        });
    }
    rt.block_on(register_snapshot(app, record, &snapshot))
}

async fn register_snapshot(
    app: &App,
    record: &cortex_catalog::Download,
    snapshot: &Snapshot,
) -> Result<String> {
    let source = ModelSource::Hub {
        repo: record.repo.clone(),
        revision: record.revision.clone(),
        commit: Some(snapshot.commit.clone()),
    };
    let name = record
        .repo
        .rsplit('/')
        .next()
        .unwrap_or(&record.repo)
        .to_string();
    if snapshot.path.join("config.json").is_file() {
        let m = app
            .register(Registration {
                path: snapshot.path.clone(),
                name,
                source,
            })
            .await?;
        return Ok(m.id);
    }
    // a GGUF variant: import it into MLX format in the models folder
    let gguf = snapshot
        .files
        .iter()
        .find(|f| f.ends_with(".gguf"))
        .ok_or_else(|| {
            ServiceError::invalid(
                "include",
                "the downloaded files hold no model (no config.json and no .gguf file)",
            )
        })?;
    let m = app
        .import_gguf_file(&snapshot.path.join(gguf), None, source)
        .await?;
    Ok(m.id)
}

fn on_progress(app: &App, rt: &tokio::runtime::Handle, id: &str, task: &Task, e: DownloadEvent) {
    let mut live = crate::registry::lock(&task.live);
    let now = Instant::now();
    let mut force = false;
    if matches!(e, DownloadEvent::Progress(_)) {
        live.last_progress = now;
    }
    let v = &mut live.view;
    match e {
        DownloadEvent::Started {
            files, total_bytes, ..
        } => {
            v.record.total_bytes = total_bytes as i64;
            v.files = files
                .into_iter()
                .map(|(path, size)| FileProgress {
                    path,
                    size,
                    done: 0,
                })
                .collect();
            force = true;
        }
        DownloadEvent::Progress(p) => {
            if let Some(f) = v.files.iter_mut().find(|f| f.path == p.path) {
                f.done = p.file_done;
            }
            v.record.done_bytes = p.total_done as i64;
            v.record.total_bytes = p.total as i64;
            v.speed_bps = p.bytes_per_sec;
            v.eta_s = p.eta.map(|d| d.as_secs_f64());
            if v.record.state == DownloadState::Retrying {
                v.record.state = DownloadState::Running;
                force = true;
            }
        }
        DownloadEvent::Retrying { .. } => {
            v.record.state = DownloadState::Retrying;
            force = true;
        }
        DownloadEvent::FileDone { path, .. } => {
            if let Some(f) = v.files.iter_mut().find(|f| f.path == path) {
                f.done = f.size;
            }
        }
        _ => {}
    }
    if force || now.duration_since(live.last_emit) >= EMIT_EVERY {
        live.last_emit = now;
        app.emit(AppEvent::Download {
            download: live.snapshot(),
        });
    }
    if force || now.duration_since(live.last_save) >= SAVE_EVERY {
        live.last_save = now;
        let update = DownloadUpdate {
            state: Some(live.view.record.state),
            total_bytes: Some(live.view.record.total_bytes),
            done_bytes: Some(live.view.record.done_bytes),
            ..Default::default()
        };
        drop(live);
        if let Err(err) = rt.block_on(app.catalog().update_download(id, &update)) {
            tracing::warn!("download {id}: cannot save progress: {err}");
        }
    }
}
