//! Progress events and the shared counters they are computed from. Events go to one callback
//! (`Fn(DownloadEvent) + Sync`); wrap an `mpsc::Sender` in it to get a stream.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum DownloadEvent {
    /// The plan: every selected file with its size, and how many bytes must be fetched.
    Started {
        commit: String,
        files: Vec<(String, u64)>,
        total_bytes: u64,
        to_fetch: u64,
    },
    FileStarted {
        path: String,
        size: u64,
    },
    Progress(Progress),
    /// A transient failure that will be retried.
    Retrying {
        path: String,
        attempt: u32,
        error: String,
    },
    /// A file failed verification and is fetched again.
    ChecksumFailed {
        path: String,
        attempt: u32,
    },
    FileDone {
        path: String,
        reused: bool,
    },
    Finished {
        snapshot: std::path::PathBuf,
        fetched_bytes: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub path: String,
    pub file_done: u64,
    pub file_total: u64,
    pub total_done: u64,
    pub total: u64,
    /// Bytes per second over this download so far (fetched bytes only).
    pub bytes_per_sec: f64,
    pub eta: Option<Duration>,
}

pub(crate) type Sink<'a> = &'a (dyn Fn(DownloadEvent) + Sync);

/// Counters shared by every worker thread.
pub(crate) struct Tracker<'a> {
    sink: Sink<'a>,
    start: Instant,
    total: u64,
    /// Bytes already on disk plus bytes fetched.
    done: AtomicU64,
    /// Bytes fetched over the network (shared with the download's disk reservation).
    fetched: Arc<AtomicU64>,
    last_emit: Mutex<Instant>,
}

impl<'a> Tracker<'a> {
    pub fn new(sink: Sink<'a>, total: u64, already: u64) -> Self {
        let start = Instant::now();
        Tracker {
            sink,
            start,
            total,
            done: AtomicU64::new(already),
            fetched: Arc::new(AtomicU64::new(0)),
            last_emit: Mutex::new(start),
        }
    }

    pub fn emit(&self, e: DownloadEvent) {
        (self.sink)(e)
    }

    /// The fetched-bytes counter itself, for the disk reservation to follow.
    pub fn fetched_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.fetched)
    }

    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Takes back bytes counted for a file that failed verification.
    pub fn sub(&self, n: u64) {
        self.done.fetch_sub(n, Ordering::Relaxed);
    }

    /// Records `n` bytes newly on disk for `file`; emits a throttled Progress event.
    pub fn add(&self, file: &FileCounter, n: u64, fetched: bool) {
        let file_done = file.done.fetch_add(n, Ordering::Relaxed) + n;
        let total_done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if fetched {
            self.fetched.fetch_add(n, Ordering::Relaxed);
        }
        let now = Instant::now();
        let finished = file_done >= file.total;
        {
            let Ok(mut last) = self.last_emit.lock() else {
                return;
            };
            if !finished && now.duration_since(*last) < Duration::from_millis(100) {
                return;
            }
            *last = now;
        }
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let bytes_per_sec = self.fetched() as f64 / secs;
        let remaining = self.total.saturating_sub(total_done);
        let eta = (bytes_per_sec > 0.0)
            .then(|| Duration::from_secs_f64(remaining as f64 / bytes_per_sec));
        self.emit(DownloadEvent::Progress(Progress {
            path: file.path.clone(),
            file_done,
            file_total: file.total,
            total_done,
            total: self.total,
            bytes_per_sec,
            eta,
        }));
    }
}

pub(crate) struct FileCounter {
    pub path: String,
    pub total: u64,
    pub done: AtomicU64,
}

impl FileCounter {
    pub fn new(path: &str, total: u64) -> Self {
        FileCounter {
            path: path.to_string(),
            total,
            done: AtomicU64::new(0),
        }
    }
}
