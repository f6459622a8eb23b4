//! Writing a model folder atomically: everything goes into a hidden sibling folder that is
//! renamed onto the destination only when complete. Until then nothing at the destination
//! looks like a model, and a failed or cancelled write removes its staging folder on drop.
use std::path::{Path, PathBuf};

pub struct StagingDir {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Creates `.<dest name>.<tag>-<pid>` next to `dest` (and `dest`'s parent if needed).
    /// The caller checks that `dest` does not exist; the error names the path that failed.
    pub fn create(dest: &Path, tag: &str) -> Result<StagingDir, (PathBuf, std::io::Error)> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| (parent.clone(), e))?;
        let name = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.{tag}-{}", std::process::id()));
        if tmp.exists() {
            // Left by a crashed run of a process that had our pid: never a finished model.
            std::fs::remove_dir_all(&tmp).map_err(|e| (tmp.clone(), e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| (tmp.clone(), e))?;
        Ok(StagingDir {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished folder into place.
    pub fn commit(mut self) -> Result<PathBuf, (PathBuf, std::io::Error)> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| (self.dest.clone(), e))?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
