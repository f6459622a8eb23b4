//! Writing a model folder atomically: everything goes into a hidden sibling folder that is
//! renamed onto the destination only when complete. Until then nothing at the destination
//! looks like a model, and a failed or cancelled write removes its staging folder on drop.
//! Every write gets its own staging folder, even two writes to one destination at once.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct StagingDir {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Creates `.<dest name>.<tag>-<pid>-<n>` next to `dest` (and `dest`'s parent if needed),
    /// with `n` unique within the process and the folder new (never one another write uses).
    /// The caller checks that `dest` does not exist; the error names the path that failed.
    pub fn create(dest: &Path, tag: &str) -> Result<StagingDir, (PathBuf, std::io::Error)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| (parent.clone(), e))?;
        let name = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = parent.join(format!(".{name}.{tag}-{}-{n}", std::process::id()));
            // create_dir, not create_dir_all: an existing folder (left by a crashed process that
            // had our pid) is skipped, never shared.
            match std::fs::create_dir(&tmp) {
                Ok(()) => {
                    return Ok(StagingDir {
                        tmp,
                        dest: dest.to_path_buf(),
                        committed: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err((tmp, e)),
            }
        }
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished folder into place.
    pub fn commit(mut self) -> Result<PathBuf, (PathBuf, std::io::Error)> {
        let dest = self.dest.clone();
        self.commit_to(&dest)?;
        Ok(dest)
    }

    /// Moves the finished folder to `dest` (a sibling of the first choice) instead. Fails if
    /// `dest` is taken meanwhile, keeping the staging folder for another try.
    pub fn commit_to(&mut self, dest: &Path) -> Result<(), (PathBuf, std::io::Error)> {
        if std::fs::symlink_metadata(dest).is_ok() {
            // rename() would replace an empty folder; someone else's folder is never replaced.
            let e = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err((dest.to_path_buf(), e));
        }
        std::fs::rename(&self.tmp, dest).map_err(|e| (dest.to_path_buf(), e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
