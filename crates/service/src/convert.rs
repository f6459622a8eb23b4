//! Conversions of library models (Hugging Face safetensors) into MLX format, optionally
//! quantized, run in the background with progress events. The output is staged beside its
//! destination in the models folder and renamed into place when complete (the hub converter
//! does that), then registered in the library with the source it came from. A conversion
//! interrupted by a restart is recorded as failed (its staging folder is removed): converting
//! again is cheap and nothing half-written is ever visible.
use crate::app::App;
use crate::events::AppEvent;
use crate::library::{safe_folder_name, unused_dest, Registration};
use crate::{Result, ServiceError};
use cortex_catalog::{
    ConversionState, ConversionUpdate, ErrorInfo, ModelFormat, ModelSource, NewConversion,
};
use cortex_hub::{ConvertOptions, QuantizeOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cortex_catalog::Conversion;

const EMIT_EVERY: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertRequest {
    pub model_id: String,
    /// None: no quantization (a dtype change only).
    #[serde(default)]
    pub bits: Option<i32>,
    #[serde(default = "default_group_size")]
    pub group_size: i32,
    /// float16, bfloat16 or float32; None: the checkpoint's own.
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_group_size() -> i32 {
    64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub output_bytes: u64,
    pub source_bytes: u64,
    pub tensors: usize,
}

#[derive(Default)]
pub(crate) struct Conversions {
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Conversions {
    pub fn stop_all(&self) {
        for c in crate::registry::lock(&self.running).values() {
            c.store(true, Ordering::Release);
        }
    }
}

fn options(req: &ConvertRequest) -> Result<ConvertOptions> {
    let dtype = req
        .dtype
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(cortex_hub::convert::parse_dtype)
        .transpose()?;
    let quantize = req.bits.map(|bits| QuantizeOptions {
        bits,
        group_size: req.group_size,
    });
    if let Some(q) = quantize {
        cortex_hub::convert::check_quantize(q)?;
    }
    Ok(ConvertOptions {
        quantize,
        dtype,
        ..ConvertOptions::default()
    })
}

impl App {
    async fn convertible(&self, model_id: &str) -> Result<cortex_catalog::LocalModel> {
        let model = self.catalog().get_model(model_id).await?;
        if model.info.format != ModelFormat::Safetensors || model.info.quantization.is_some() {
            return Err(ServiceError::invalid(
                "model_id",
                format!(
                    "{} is already in MLX format; convert from a Hugging Face safetensors model",
                    model.name
                ),
            ));
        }
        Ok(model)
    }

    pub async fn estimate_conversion(&self, req: ConvertRequest) -> Result<Estimate> {
        let model = self.convertible(&req.model_id).await?;
        let opts = options(&req)?;
        let e =
            tokio::task::spawn_blocking(move || cortex_hub::estimate(&model.path, &opts)).await??;
        Ok(Estimate {
            output_bytes: e.output_bytes,
            source_bytes: e.source_bytes,
            tensors: e.tensors,
        })
    }

    pub async fn start_conversion(&self, req: ConvertRequest) -> Result<Conversion> {
        let model = self.convertible(&req.model_id).await?;
        let opts = options(&req)?;
        let (src, o) = (model.path.clone(), opts.clone());
        let est = tokio::task::spawn_blocking(move || cortex_hub::estimate(&src, &o)).await??;
        let name = req
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| match req.bits {
                Some(b) => format!("{}-mlx-{b}bit", model.name),
                None => format!("{}-mlx", model.name),
            });
        let dest = unused_dest(&self.models_dir(), &safe_folder_name(&name));
        let record = self
            .catalog()
            .create_conversion(&NewConversion {
                model_id: model.id.clone(),
                name: name.clone(),
                bits: req.bits.map(i64::from),
                group_size: i64::from(req.group_size),
                dtype: req.dtype.clone().filter(|d| !d.is_empty()),
                total_tensors: est.tensors as i64,
                total_bytes: est.output_bytes as i64,
                estimated_output_bytes: est.output_bytes as i64,
            })
            .await?;
        let cancel = Arc::new(AtomicBool::new(false));
        crate::registry::lock(&self.inner.conversions.running)
            .insert(record.id.clone(), cancel.clone());
        let source = ModelSource::Converted {
            from_model_id: model.id.clone(),
            repo: match &model.source {
                ModelSource::Hub { repo, .. } => Some(repo.clone()),
                _ => None,
            },
        };
        let job = Job {
            app: self.clone(),
            rt: tokio::runtime::Handle::current(),
            id: record.id.clone(),
            name,
            cancel,
        };
        let src = model.path.clone();
        std::thread::Builder::new()
            .name("convert".into())
            .spawn(move || job.run(&src, &dest, &opts, source))
            .map_err(|e| ServiceError::Internal(format!("cannot start a conversion: {e}")))?;
        self.emit(AppEvent::Conversion {
            conversion: record.clone(),
        });
        Ok(record)
    }

    pub async fn list_conversions(&self) -> Result<Vec<Conversion>> {
        Ok(self.catalog().list_conversions().await?)
    }

    pub async fn cancel_conversion(&self, id: &str) -> Result<Conversion> {
        let record = self.catalog().get_conversion(id).await?;
        match crate::registry::lock(&self.inner.conversions.running).get(id) {
            Some(flag) => flag.store(true, Ordering::Release),
            None if record.state.is_finished() => {
                return Err(ServiceError::Conflict(format!(
                    "the conversion is already {}",
                    record.state.as_str()
                )))
            }
            None => {}
        }
        Ok(record)
    }

    /// Conversions the last run left "running" were interrupted: record them as failed and
    /// remove the staging folders they left.
    pub(crate) async fn fail_interrupted_conversions(&self) -> Result<()> {
        for c in self.catalog().unfinished_conversions().await? {
            let update = ConversionUpdate {
                state: Some(ConversionState::Failed),
                error: Some(Some(ErrorInfo::new(
                    "cancelled",
                    "interrupted when the app stopped; start the conversion again",
                ))),
                ..Default::default()
            };
            self.catalog().update_conversion(&c.id, &update).await?;
        }
        let models = self.models_dir();
        tokio::task::spawn_blocking(move || remove_stale_staging(&models)).await?;
        Ok(())
    }
}

/// Removes `.<name>.converting-<pid>` / `.importing-<pid>` folders whose process is gone
/// (where that can be told: Linux's /proc).
fn remove_stale_staging(models: &Path) {
    let Ok(entries) = std::fs::read_dir(models) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once('-'))
            .filter(|(head, _)| head.ends_with(".converting") || head.ends_with(".importing"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let gone = cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists();
        if gone && pid != std::process::id() {
            tracing::info!("removing {} left by an interrupted run", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

struct Job {
    app: App,
    rt: tokio::runtime::Handle,
    id: String,
    name: String,
    cancel: Arc<AtomicBool>,
}

impl Job {
    fn run(self, src: &Path, dest: &Path, opts: &ConvertOptions, source: ModelSource) {
        let mut last = Instant::now();
        let mut progress = |p: &cortex_hub::ConvertProgress| {
            if last.elapsed() >= EMIT_EVERY || p.tensors_done == p.tensors_total {
                last = Instant::now();
                self.save(ConversionUpdate {
                    done_tensors: Some(p.tensors_done as i64),
                    total_tensors: Some(p.tensors_total as i64),
                    done_bytes: Some(p.bytes_done as i64),
                    total_bytes: Some(p.bytes_total as i64),
                    ..Default::default()
                });
            }
            if self.cancel.load(Ordering::Acquire) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let result = cortex_hub::convert(src, dest, opts, &mut progress);
        let update = match result {
            Ok(report) => {
                let registered = self.rt.block_on(self.app.register(Registration {
                    path: report.dest,
                    name: self.name.clone(),
                    source,
                }));
                match registered {
                    Ok(m) => ConversionUpdate {
                        state: Some(ConversionState::Completed),
                        result_model_id: Some(Some(m.id)),
                        ..Default::default()
                    },
                    Err(e) => failed(&e),
                }
            }
            Err(cortex_hub::ConvertError::Cancelled) => ConversionUpdate {
                state: Some(ConversionState::Cancelled),
                ..Default::default()
            },
            Err(e) => failed(&ServiceError::Convert(e)),
        };
        crate::registry::lock(&self.app.inner.conversions.running).remove(&self.id);
        self.save(update);
    }

    fn save(&self, update: ConversionUpdate) {
        match self
            .rt
            .block_on(self.app.catalog().update_conversion(&self.id, &update))
        {
            Ok(c) => self.app.emit(AppEvent::Conversion { conversion: c }),
            Err(e) => tracing::warn!("conversion {}: cannot save progress: {e}", self.id),
        }
    }
}

fn failed(e: &ServiceError) -> ConversionUpdate {
    ConversionUpdate {
        state: Some(ConversionState::Failed),
        error: Some(Some(e.info())),
        ..Default::default()
    }
}
