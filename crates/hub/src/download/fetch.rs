//! Fetching one file into `blobs/<etag>.incomplete` and promoting it to `blobs/<etag>`.
//!
//! Small files are fetched sequentially, so the partial file is always a contiguous prefix (the
//! form huggingface_hub also leaves behind, and resumes from with `Range: bytes=<len>-`). Large
//! files are split into ranges fetched in parallel and written in place; their progress is kept
//! in `<etag>.incomplete.ranges` so a killed download resumes every range where it stopped.
//! A file becomes a blob only after its size and its sha256 (LFS) or git blob sha1 (the tree's
//! `oid`, for small non-LFS files) check out; a file that
//! fails is deleted and fetched again a bounded number of times, never renamed into place.
use super::cache::RepoCache;
use super::error::{DownloadError, Result};
use super::progress::{DownloadEvent, FileCounter, Tracker};
use crate::api::{Failure, HubClient};
use crate::model_id::HubModel;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

pub(crate) struct FileJob {
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub sha256: Option<String>,
    /// The git blob id (sha1 of `"blob {len}\0"` + content) of a non-LFS file.
    pub git_sha1: Option<String>,
}

impl FileJob {
    /// The checksum the content is verified against: (algorithm, expected hex digest).
    fn checksum(&self) -> Option<(&'static str, &str)> {
        match (&self.sha256, &self.git_sha1) {
            (Some(s), _) => Some(("sha256", s)),
            (None, Some(s)) => Some(("git blob sha1", s)),
            (None, None) => None,
        }
    }
}

pub(crate) struct Fetcher<'a> {
    pub client: &'a HubClient,
    pub repo: &'a HubModel,
    pub commit: &'a str,
    pub cache: &'a RepoCache,
    pub tracker: &'a Tracker<'a>,
    pub cancel: &'a AtomicBool,
    /// Files at least this large are fetched as parallel ranges.
    pub chunk_threshold: u64,
    pub chunks: usize,
    pub verify_attempts: u32,
}

struct Range {
    pos: AtomicU64,
    end: u64,
}

/// The ranges of one file being fetched, and where their state is saved.
struct RangeBook {
    ranges: Vec<Range>,
    sidecar: Option<PathBuf>,
    save_lock: Mutex<()>,
}

impl RangeBook {
    fn save(&self) {
        let Some(path) = &self.sidecar else { return };
        let Ok(_guard) = self.save_lock.lock() else {
            return;
        };
        let text: String = self
            .ranges
            .iter()
            .map(|r| format!("{} {}\n", r.pos.load(Ordering::Relaxed), r.end))
            .collect();
        let tmp = path.with_extension("ranges.tmp");
        // Best effort: losing it only costs re-fetching bytes, the checksum catches the rest.
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

impl Fetcher<'_> {
    /// Makes `blobs/<etag>` exist with verified content; returns whether it was already there.
    pub fn ensure_blob(&self, job: &FileJob) -> Result<bool> {
        let blob = self.cache.blob(&job.etag);
        let counter = FileCounter::new(&job.path, job.size);
        if std::fs::metadata(&blob).is_ok_and(|m| m.len() == job.size) {
            self.tracker.add(&counter, job.size, false);
            return Ok(true);
        }
        let incomplete = self.cache.incomplete(&job.etag);
        let sidecar = sidecar_path(&incomplete);
        self.tracker.emit(DownloadEvent::FileStarted {
            path: job.path.clone(),
            size: job.size,
        });
        let mut attempt = 1;
        loop {
            if let Err(e) = self.download(job, &incomplete, &sidecar, &counter) {
                // Keep partial bytes for the next run, but not an empty file we just created.
                if std::fs::metadata(&incomplete).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&incomplete);
                    let _ = std::fs::remove_file(&sidecar);
                }
                return Err(e);
            }
            match self.verify(job, &incomplete)? {
                None => break,
                Some(actual) => {
                    let _ = std::fs::remove_file(&incomplete);
                    let _ = std::fs::remove_file(&sidecar);
                    if attempt >= self.verify_attempts {
                        let (algorithm, expected) = match job.checksum() {
                            Some((a, e)) => (a, e.to_string()),
                            None => ("size", job.size.to_string()),
                        };
                        return Err(DownloadError::ChecksumMismatch {
                            path: job.path.clone(),
                            algorithm,
                            expected,
                            actual,
                            attempts: attempt,
                        });
                    }
                    self.tracker.emit(DownloadEvent::ChecksumFailed {
                        path: job.path.clone(),
                        attempt,
                    });
                    // Take the failed bytes back out of the totals before fetching again.
                    let done = counter.done.swap(0, Ordering::Relaxed);
                    self.tracker.sub(done);
                    attempt += 1;
                }
            }
        }
        let _ = std::fs::remove_file(&sidecar);
        std::fs::rename(&incomplete, &blob).map_err(DownloadError::io(&blob))?;
        Ok(false)
    }

    /// `None` when the file checks out, else a description of what was found.
    fn verify(&self, job: &FileJob, path: &Path) -> Result<Option<String>> {
        let len = std::fs::metadata(path)
            .map_err(DownloadError::io(path))?
            .len();
        if len != job.size {
            return Ok(Some(format!("size {len} instead of {}", job.size)));
        }
        let (actual, expected) = match job.checksum() {
            None => return Ok(None),
            Some(("sha256", e)) => (sha256_file(path)?, e),
            Some((_, e)) => (git_blob_sha1_file(path)?, e),
        };
        Ok((!actual.eq_ignore_ascii_case(expected)).then_some(actual))
    }

    fn download(
        &self,
        job: &FileJob,
        incomplete: &Path,
        sidecar: &Path,
        counter: &FileCounter,
    ) -> Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(incomplete)
            .map_err(DownloadError::io(incomplete))?;
        let book = self.plan(job, &file, incomplete, sidecar)?;
        let skipped = job.size
            - book
                .ranges
                .iter()
                .map(|r| r.end - r.pos.load(Ordering::Relaxed))
                .sum::<u64>();
        if counter.done.load(Ordering::Relaxed) == 0 && skipped > 0 {
            self.tracker.add(counter, skipped, false);
        }
        book.save();
        let url = self.client.resolve_url(self.repo, self.commit, &job.path);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = book
                .ranges
                .iter()
                .map(|r| s.spawn(|| self.fetch_range(job, &url, &file, r, &book, counter)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(DownloadError::Cancelled)))
                .collect()
        });
        book.save();
        file.sync_all().map_err(DownloadError::io(incomplete))?;
        results.into_iter().collect()
    }

    /// Decides which byte ranges remain, from the sidecar when there is one, else from the
    /// partial file's length (a contiguous prefix).
    fn plan(
        &self,
        job: &FileJob,
        file: &File,
        incomplete: &Path,
        sidecar: &Path,
    ) -> Result<RangeBook> {
        if let Some(ranges) = read_sidecar(sidecar, job.size) {
            return Ok(RangeBook {
                ranges,
                sidecar: Some(sidecar.to_path_buf()),
                save_lock: Mutex::new(()),
            });
        }
        let mut start = file
            .metadata()
            .map_err(DownloadError::io(incomplete))?
            .len();
        if start > job.size {
            file.set_len(0).map_err(DownloadError::io(incomplete))?;
            start = 0;
        }
        let remaining = job.size - start;
        if remaining < self.chunk_threshold || self.chunks < 2 {
            let ranges = vec![Range {
                pos: AtomicU64::new(start),
                end: job.size,
            }];
            return Ok(RangeBook {
                ranges,
                sidecar: None,
                save_lock: Mutex::new(()),
            });
        }
        let n = self.chunks as u64;
        let step = remaining.div_ceil(n);
        let ranges = (0..n)
            .map(|i| start + i * step)
            .filter(|&b| b < job.size)
            .map(|b| Range {
                pos: AtomicU64::new(b),
                end: (b + step).min(job.size),
            })
            .collect();
        Ok(RangeBook {
            ranges,
            sidecar: Some(sidecar.to_path_buf()),
            save_lock: Mutex::new(()),
        })
    }

    fn fetch_range(
        &self,
        job: &FileJob,
        url: &str,
        file: &File,
        range: &Range,
        book: &RangeBook,
        counter: &FileCounter,
    ) -> Result<()> {
        let mut failures = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let pos = range.pos.load(Ordering::Relaxed);
            if pos >= range.end {
                return Ok(());
            }
            if self.cancel.load(Ordering::Relaxed) {
                return Err(DownloadError::Cancelled);
            }
            let before = pos;
            let failure = match self.read_range(url, file, range, book, counter, &mut buf) {
                Ok(()) => continue,
                Err(f) => f,
            };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transient(source) => {
                    failures = if range.pos.load(Ordering::Relaxed) > before {
                        1
                    } else {
                        failures + 1
                    };
                    if failures > self.client.max_retries {
                        return Err(DownloadError::Network {
                            url: url.to_string(),
                            attempts: failures,
                            source,
                        });
                    }
                    self.tracker.emit(DownloadEvent::Retrying {
                        path: job.path.clone(),
                        attempt: failures,
                        error: source.to_string(),
                    });
                    book.save();
                    self.client.backoff_sleep(failures, self.cancel)?;
                }
            }
        }
    }

    /// One request for the rest of `range`, written in place as it arrives.
    fn read_range(
        &self,
        url: &str,
        file: &File,
        range: &Range,
        book: &RangeBook,
        counter: &FileCounter,
        buf: &mut [u8],
    ) -> std::result::Result<(), Failure> {
        let mut pos = range.pos.load(Ordering::Relaxed);
        let req = self.client.get(url).header(
            reqwest::header::RANGE,
            format!("bytes={}-{}", pos, range.end - 1),
        );
        let mut resp = req.send().map_err(|e| self.client.send_failure(e))?;
        if let Some(f) = self.client.classify_response(Some(self.repo), url, &resp) {
            return Err(f);
        }
        if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT && pos > 0 {
            // The server ignored Range: skip what we already have.
            let mut skip = (&mut resp).take(pos);
            std::io::copy(&mut skip, &mut std::io::sink())
                .map_err(|e| Failure::Transient(Box::new(e)))?;
        }
        let mut since_save = 0u64;
        while pos < range.end {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Failure::Fatal(DownloadError::Cancelled));
            }
            let n = match resp.read(buf) {
                Ok(0) => {
                    return Err(Failure::Transient(
                        "connection closed before the range was complete".into(),
                    ))
                }
                Ok(n) => n.min((range.end - pos) as usize),
                Err(e) => return Err(Failure::Transient(Box::new(e))),
            };
            file.write_all_at(&buf[..n], pos).map_err(|e| {
                Failure::Fatal(DownloadError::Io {
                    path: PathBuf::from(&counter.path),
                    source: e,
                })
            })?;
            pos += n as u64;
            range.pos.store(pos, Ordering::Relaxed);
            self.tracker.add(counter, n as u64, true);
            since_save += n as u64;
            if since_save >= 8 << 20 {
                book.save();
                since_save = 0;
            }
        }
        Ok(())
    }
}

fn sidecar_path(incomplete: &Path) -> PathBuf {
    let mut s = incomplete.as_os_str().to_owned();
    s.push(".ranges");
    PathBuf::from(s)
}

fn read_sidecar(path: &Path, size: u64) -> Option<Vec<Range>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut ranges = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (pos, end) = line.split_once(' ')?;
        let (pos, end): (u64, u64) = (pos.parse().ok()?, end.trim().parse().ok()?);
        if pos > end || end > size {
            return None;
        }
        ranges.push(Range {
            pos: AtomicU64::new(pos),
            end,
        });
    }
    (!ranges.is_empty()).then_some(ranges)
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    hash_file(Sha256::new(), path)
}

/// The git blob id of a file: sha1 over `"blob {len}\0"` followed by the content.
pub(crate) fn git_blob_sha1_file(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path)
        .map_err(DownloadError::io(path))?
        .len();
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    hash_file(h, path)
}

/// Feeds the file to `h` after whatever it has already taken; lowercase hex of the digest.
fn hash_file<D: sha2::Digest>(mut h: D, path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(DownloadError::io(path))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(DownloadError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn git_blob_sha1() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            super::git_blob_sha1_file(&p).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
