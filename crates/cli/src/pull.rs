//! `cortex pull`: download a model from the Hugging Face hub into the shared HF cache, with
//! progress bars (total + one per active file). A thin adapter over `cortex_hub::download`;
//! `cortex run` and `cortex bench` use the same bars when their MODEL is a hub id.
use anyhow::{bail, Context, Result};
use clap::Args;
use cortex_hub::download::{self, DownloadError, DownloadEvent, DownloadOptions, Snapshot};
use cortex_hub::{parse_model_ref, HubModel, ModelRef};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Args)]
pub struct PullArgs {
    /// org/name, org/name@revision, or a huggingface.co URL
    pub model: String,
    /// Branch, tag or commit (default: main, or the one in MODEL)
    #[arg(long)]
    pub revision: Option<String>,
    /// Only files matching this glob (repeatable; default: weights, configs, tokenizer, templates)
    #[arg(long)]
    pub include: Vec<String>,
}

pub fn run(args: PullArgs) -> Result<()> {
    let mut model = match parse_model_ref(&args.model)? {
        ModelRef::Hub(m) => m,
        ModelRef::Local(p) => bail!(
            "{} is not a Hugging Face model id (expected org/name)",
            p.display()
        ),
    };
    if args.revision.is_some() {
        model.revision = args.revision;
    }
    let snap = pull(&model, args.include)?;
    crate::library::register_snapshot(
        &model.repo_id(),
        model.revision_or_main(),
        &snap.commit,
        &snap.path,
    );
    println!("{}", snap.path.display());
    Ok(())
}

/// Downloads `model` with progress bars on stderr; returns the snapshot.
pub fn pull(model: &HubModel, include: Vec<String>) -> Result<Snapshot> {
    match download_with_bars(model, include) {
        Err(DownloadError::Cancelled) => Err(cancelled(&model.to_string())),
        r => r.with_context(|| format!("downloading {model}")),
    }
}

pub fn cancelled(model: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "download of {model} cancelled; the partial files are kept: run the same command again to resume"
    )
}

/// The download itself, with bars and Ctrl-C handling.
pub fn download_with_bars(
    model: &HubModel,
    include: Vec<String>,
) -> Result<Snapshot, DownloadError> {
    let opts = DownloadOptions {
        include,
        ..Default::default()
    };
    let bars = Bars::new();
    let cancel = ctrl_c_flag();
    let result = download::download(model, &opts, cancel, &|e| bars.on_event(e));
    bars.finish();
    result
}

/// Ctrl-C during a pull: the first press stops the download cleanly (partial files stay in the
/// cache for resume), a second press exits at once.
fn ctrl_c_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ncancelling (Ctrl-C again to quit now)...");
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will not cancel the download cleanly: {e}");
        }
    });
    FLAG.store(false, Ordering::SeqCst);
    &FLAG
}

struct Bars {
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    files: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            total: Mutex::new(None),
            files: Mutex::new(HashMap::new()),
        }
    }

    fn file_style() -> ProgressStyle {
        ProgressStyle::with_template("  {msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn on_event(&self, e: DownloadEvent) {
        match e {
            DownloadEvent::Started {
                total_bytes,
                to_fetch,
                files,
                ..
            } => {
                let bar = self.multi.add(ProgressBar::new(total_bytes));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(format!(
                    "{} files, {} to fetch",
                    files.len(),
                    indicatif::HumanBytes(to_fetch)
                ));
                if let Ok(mut t) = self.total.lock() {
                    *t = Some(bar);
                }
            }
            DownloadEvent::FileStarted { path, size } => {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(Self::file_style());
                bar.set_message(path.clone());
                if let Ok(mut f) = self.files.lock() {
                    f.insert(path, bar);
                }
            }
            DownloadEvent::Progress(p) => {
                if let Ok(t) = self.total.lock() {
                    if let Some(bar) = t.as_ref() {
                        bar.set_position(p.total_done);
                    }
                }
                if let Ok(f) = self.files.lock() {
                    if let Some(bar) = f.get(&p.path) {
                        bar.set_position(p.file_done);
                    }
                }
            }
            DownloadEvent::Retrying {
                path,
                attempt,
                error,
            } => {
                let _ = self
                    .multi
                    .println(format!("retrying {path} (attempt {attempt}): {error}"));
            }
            DownloadEvent::ChecksumFailed { path, attempt } => {
                let _ = self.multi.println(format!(
                    "{path}: checksum mismatch, fetching again (attempt {attempt})"
                ));
            }
            DownloadEvent::FileDone { path, .. } => {
                if let Ok(mut f) = self.files.lock() {
                    if let Some(bar) = f.remove(&path) {
                        bar.finish_and_clear();
                        self.multi.remove(&bar);
                    }
                }
            }
            DownloadEvent::Finished { .. } => {}
        }
    }

    fn finish(&self) {
        if let Ok(t) = self.total.lock() {
            if let Some(bar) = t.as_ref() {
                bar.finish();
            }
        }
    }
}
