//! Downloading a model from the Hugging Face hub into the shared HF cache.
//!
//! Owns: picking the files a model needs, fetching them (several files at once, large files as
//! parallel ranges, resumable, retried, sha256-verified) and publishing them as a snapshot.
//! Never: exposes a file that failed verification, writes outside the repo's cache folder, or
//! deletes anything but its own partial files. Written on reqwest rather than the hf-hub crate;
//! see docs/ARCHITECTURE.md for why.
mod cache;
mod config;
mod error;
mod fetch;
mod progress;
mod space;

pub use crate::api::{LfsInfo, TreeEntry};
pub use config::{HubConfig, DEFAULT_ENDPOINT};
pub use error::DownloadError;
pub use progress::{DownloadEvent, Progress};

use crate::model_id::HubModel;
use cache::RepoCache;
use fetch::{Fetcher, FileJob};
use progress::Tracker;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What a model needs to load and chat: weights, configs, tokenizer, chat templates.
pub const DEFAULT_INCLUDE: &[&str] = &[
    "*.safetensors",
    "*.json",
    "*tokenizer.model",
    "*.jinja",
    "*.txt",
    "*.tiktoken",
];

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub config: HubConfig,
    /// Glob patterns over repo paths (`*` crosses `/`); empty means [`DEFAULT_INCLUDE`].
    pub include: Vec<String>,
    /// Files fetched at the same time.
    pub parallel_files: usize,
    /// Files at least this large are fetched as `chunks` parallel ranges.
    pub chunk_threshold: u64,
    pub chunks: usize,
    /// No byte for this long counts as a failed attempt (stall) and is retried.
    pub stall_timeout: Duration,
    /// Consecutive failed attempts (without progress) before giving up.
    pub max_retries: u32,
    /// First backoff delay; doubles with each consecutive failure.
    pub backoff: Duration,
    /// Downloads of one file that may fail verification before the file is given up.
    pub verify_attempts: u32,
    /// Minimum free bytes to leave on the disk besides the download itself (and besides what
    /// other downloads of this process still have to write).
    pub disk_margin: u64,
    /// Refuse a selection larger than this many bytes in all, before fetching anything.
    pub max_bytes: Option<u64>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            config: HubConfig::from_env(),
            include: Vec::new(),
            parallel_files: 4,
            chunk_threshold: 64 << 20,
            chunks: 4,
            stall_timeout: Duration::from_secs(30),
            max_retries: 6,
            backoff: Duration::from_millis(500),
            verify_attempts: 3,
            disk_margin: 64 << 20,
            max_bytes: None,
        }
    }
}

/// A complete snapshot in the cache.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `.../models--org--name/snapshots/<commit>`
    pub path: PathBuf,
    pub commit: String,
    pub files: Vec<String>,
    /// Bytes fetched from the network by this call (0 when everything was cached).
    pub fetched_bytes: u64,
}

/// Downloads `model` and returns its snapshot folder. Progress goes to `on_event`; setting
/// `cancel` stops every transfer and returns [`DownloadError::Cancelled`], leaving partial files
/// to resume from.
pub fn download(
    model: &HubModel,
    opts: &DownloadOptions,
    cancel: &AtomicBool,
    on_event: &(dyn Fn(DownloadEvent) + Sync),
) -> Result<Snapshot, DownloadError> {
    let client = crate::api::HubClient::new(
        opts.config.clone(),
        opts.stall_timeout,
        opts.max_retries,
        opts.backoff,
    )?;
    let commit = client.resolve_commit(model, cancel)?;
    cache::check_etag(&commit)?;
    let tree = client.list_files(model, &commit, cancel)?;
    for entry in &tree {
        cache::check_relative_path(&entry.path)?;
        cache::check_etag(entry.etag())?;
    }
    let patterns = if opts.include.is_empty() {
        DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect()
    } else {
        opts.include.clone()
    };
    let matcher = build_matcher(&patterns)?;
    let jobs: Vec<FileJob> = tree
        .iter()
        .filter(|e| matcher.is_match(&e.path))
        .map(|e| FileJob {
            path: e.path.clone(),
            etag: e.etag().to_string(),
            size: e.file_size(),
            sha256: e.lfs.as_ref().map(|l| l.oid.clone()),
            // Without `lfs` the oid is the git blob id of the content itself.
            git_sha1: (e.lfs.is_none()
                && e.oid.len() == 40
                && e.oid.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| e.oid.clone()),
        })
        .collect();
    if jobs.is_empty() {
        return Err(DownloadError::NoFiles {
            repo: model.repo_id(),
            patterns,
        });
    }

    let repo = RepoCache::new(&opts.config.cache_dir, &model.cache_folder_name());
    repo.create_dirs()?;
    let (total, to_fetch) = sizes(&repo, &jobs);
    if let Some(limit) = opts.max_bytes.filter(|&limit| total > limit) {
        return Err(DownloadError::TooLarge {
            repo: model.repo_id(),
            total,
            limit,
        });
    }
    let tracker = Tracker::new(on_event, total, 0);
    let _space = space::reserve(
        &repo.root,
        to_fetch,
        opts.disk_margin,
        tracker.fetched_counter(),
    )?;
    tracker.emit(DownloadEvent::Started {
        commit: commit.clone(),
        files: jobs.iter().map(|j| (j.path.clone(), j.size)).collect(),
        total_bytes: total,
        to_fetch,
    });
    let fetcher = Fetcher {
        client: &client,
        repo: model,
        commit: &commit,
        cache: &repo,
        tracker: &tracker,
        cancel,
        chunk_threshold: opts.chunk_threshold,
        chunks: opts.chunks,
        verify_attempts: opts.verify_attempts.max(1),
    };
    run_jobs(&fetcher, &jobs, opts.parallel_files.max(1), cancel)?;
    for job in &jobs {
        repo.link(&commit, &job.path, &job.etag)?;
    }
    repo.write_ref(model.revision_or_main(), &commit)?;
    let snapshot = repo.snapshot_dir(&commit);
    tracker.emit(DownloadEvent::Finished {
        snapshot: snapshot.clone(),
        fetched_bytes: tracker.fetched(),
    });
    Ok(Snapshot {
        path: snapshot,
        commit,
        files: jobs.into_iter().map(|j| j.path).collect(),
        fetched_bytes: tracker.fetched(),
    })
}

/// Runs the jobs on `workers` threads; the first error stops the others.
fn run_jobs(
    fetcher: &Fetcher,
    jobs: &[FileJob],
    workers: usize,
    cancel: &AtomicBool,
) -> Result<(), DownloadError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<DownloadError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len()) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                    return;
                }
                let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                match fetcher.ensure_blob(job) {
                    Ok(reused) => fetcher.tracker.emit(DownloadEvent::FileDone {
                        path: job.path.clone(),
                        reused,
                    }),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock() {
                            // A real failure wins over the cancellations it caused elsewhere.
                            if slot.is_none() || matches!(*slot, Some(DownloadError::Cancelled)) {
                                *slot = Some(e);
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(DownloadError::Cancelled);
    }
    Ok(())
}

fn build_matcher(patterns: &[String]) -> Result<globset::GlobSet, DownloadError> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .map_err(|e| DownloadError::BadPattern {
                pattern: p.clone(),
                detail: e.to_string(),
            })?;
        b.add(glob);
    }
    b.build().map_err(|e| DownloadError::BadPattern {
        pattern: patterns.join(" "),
        detail: e.to_string(),
    })
}

/// Total bytes of the selection, and bytes still to fetch (cached blobs and partial files
/// count as had).
fn sizes(repo: &RepoCache, jobs: &[FileJob]) -> (u64, u64) {
    let total = jobs.iter().map(|j| j.size).sum();
    let to_fetch = jobs
        .iter()
        .filter(|j| !repo.blob(&j.etag).exists())
        .map(|j| {
            let partial = std::fs::metadata(repo.incomplete(&j.etag))
                .map(|m| m.len())
                .unwrap_or(0);
            j.size.saturating_sub(partial)
        })
        .sum();
    (total, to_fetch)
}

/// The snapshot folder of `model` already in the cache (its revision's ref resolved offline),
/// when it holds a model (config.json); None otherwise. Never touches the network: for a
/// server that may serve downloaded models but must not download new ones.
pub fn cached_snapshot(model: &HubModel, config: &HubConfig) -> Option<PathBuf> {
    let repo = RepoCache::new(&config.cache_dir, &model.cache_folder_name());
    let commit = repo.read_ref(model.revision_or_main())?;
    let dir = repo.snapshot_dir(&commit);
    dir.join("config.json").is_file().then_some(dir)
}

/// An event sink that forwards to a channel, for callers that prefer a stream.
pub fn channel_sink(tx: std::sync::mpsc::Sender<DownloadEvent>) -> impl Fn(DownloadEvent) + Sync {
    let tx = Mutex::new(tx);
    move |e| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(e);
        }
    }
}
