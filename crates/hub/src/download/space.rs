//! Disk space for downloads: one process-wide ledger of what the running downloads still have
//! to write, per file system. A download starts only if the free space minus what the others
//! still need covers its own bytes and the margin, so downloads started together cannot each
//! count the same free bytes and fill the disk between them.

use super::cache::free_space;
use super::error::{DownloadError, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Entry {
    id: u64,
    /// The file system (device id) the download writes to.
    device: u64,
    /// Bytes it had to fetch when it started.
    need: u64,
    /// Bytes it has fetched since (they now take free space instead).
    written: Arc<AtomicU64>,
}

static LEDGER: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A running download's claim on its disk; dropping it (the download ended) frees the claim.
pub(crate) struct Reservation {
    id: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut ledger = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
        ledger.retain(|e| e.id != self.id);
    }
}

/// Claims `need` bytes on the disk holding `dir` for a download whose fetched bytes are counted
/// in `written`; fails when they do not fit beside the other downloads' remaining bytes.
pub(crate) fn reserve(
    dir: &Path,
    need: u64,
    margin: u64,
    written: Arc<AtomicU64>,
) -> Result<Reservation> {
    reserve_with(dir, device_of(dir), need, margin, written, || {
        free_space(dir)
    })
}

fn reserve_with(
    dir: &Path,
    device: u64,
    need: u64,
    margin: u64,
    written: Arc<AtomicU64>,
    free: impl FnOnce() -> Result<u64>,
) -> Result<Reservation> {
    let mut ledger = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
    let pending: u64 = ledger
        .iter()
        .filter(|e| e.device == device)
        .map(|e| e.need.saturating_sub(e.written.load(Ordering::Relaxed)))
        .sum();
    let available = free()?.saturating_sub(pending);
    if need.saturating_add(margin) > available {
        return Err(DownloadError::InsufficientSpace {
            dir: dir.to_path_buf(),
            needed: need,
            available,
        });
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    ledger.push(Entry {
        id,
        device,
        need,
        written,
    });
    Ok(Reservation { id })
}

#[cfg(unix)]
fn device_of(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).map(|m| m.dev()).unwrap_or(0)
}

#[cfg(not(unix))]
fn device_of(_dir: &Path) -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device id no real file system has, so the downloads of other tests never share it.
    const TEST_DEVICE: u64 = u64::MAX - 7;

    fn claim(need: u64, free: u64, written: &Arc<AtomicU64>) -> Result<Reservation> {
        let dir = Path::new("/models");
        reserve_with(dir, TEST_DEVICE, need, 10, written.clone(), || Ok(free))
    }

    #[test]
    fn concurrent_downloads_share_one_reservation_of_the_free_space() {
        let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        // 1000 bytes free: the first download of 600 fits, a second of 600 does not, although
        // each alone would (the old per-download check let both start).
        let first = claim(600, 1000, &a).unwrap();
        match claim(600, 1000, &b) {
            Err(DownloadError::InsufficientSpace {
                needed, available, ..
            }) => assert_eq!((needed, available), (600, 400)),
            other => panic!("expected InsufficientSpace, got {:?}", other.map(|_| ())),
        }
        // As the first one writes, its bytes leave the free space and its claim shrinks alike.
        a.store(500, Ordering::Relaxed);
        match claim(600, 500, &b) {
            Err(DownloadError::InsufficientSpace { available, .. }) => assert_eq!(available, 400),
            other => panic!("expected InsufficientSpace, got {:?}", other.map(|_| ())),
        }
        // A smaller one fits beside it.
        let second = claim(300, 500, &b).unwrap();
        drop(first);
        drop(second);
        // Finished downloads free their claims.
        claim(900, 1000, &Arc::new(AtomicU64::new(0))).unwrap();
    }

    #[test]
    fn other_disks_do_not_count() {
        let w = Arc::new(AtomicU64::new(0));
        let _held = claim(900, 1000, &w).unwrap();
        let dir = Path::new("/elsewhere");
        reserve_with(dir, TEST_DEVICE - 1, 900, 10, w.clone(), || Ok(1000)).unwrap();
    }
}
