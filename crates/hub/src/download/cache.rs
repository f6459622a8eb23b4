//! The shared Hugging Face cache layout, the one every HF tool reads and writes:
//! `models--org--name/{blobs/<etag>, refs/<revision>, snapshots/<commit>/<path>}` where snapshot
//! entries are relative symlinks into `blobs/` and partial downloads are `blobs/<etag>.incomplete`.
//! This module owns path construction and must never create a path outside the repo folder.
use super::error::{DownloadError, Result};
use std::path::{Path, PathBuf};

pub(crate) struct RepoCache {
    pub root: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, folder: &str) -> Self {
        RepoCache {
            root: cache_dir.join(folder),
        }
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    pub fn create_dirs(&self) -> Result<()> {
        let blobs = self.root.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(DownloadError::io(&blobs))
    }

    /// The commit `revision` points to in this cache (refs/<revision>), or the revision itself
    /// when it is a commit; None when the cache has no such ref or the ref is not a commit id.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let is_commit = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        check_relative_path(revision).ok()?;
        let commit = std::fs::read_to_string(self.root.join("refs").join(revision)).ok()?;
        let commit = commit.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// Writes refs/<revision> = commit, unless the revision is the commit itself.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        check_relative_path(revision)?;
        let path = self.root.join("refs").join(revision);
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(DownloadError::io(parent))?;
        }
        std::fs::write(&path, commit).map_err(DownloadError::io(&path))
    }

    /// Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let dest = self.snapshot_dir(commit).join(file);
        let depth = file.split('/').count() + 1; // + the commit folder
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        let target = target.join("blobs").join(etag);
        if std::fs::read_link(&dest).is_ok_and(|t| t == target) {
            return Ok(dest);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(DownloadError::io(parent))?;
        }
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => {
                std::fs::remove_dir_all(&dest).map_err(DownloadError::io(&dest))?
            }
            Ok(_) => std::fs::remove_file(&dest).map_err(DownloadError::io(&dest))?,
            Err(_) => {}
        }
        symlink(&target, &dest).map_err(DownloadError::io(&dest))?;
        Ok(dest)
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let resolved = link.parent().unwrap_or(Path::new(".")).join(target);
    std::fs::copy(resolved, link).map(|_| ())
}

/// Refuses names the hub might send that would land outside the folder they belong in:
/// absolute paths, `..` or `.` segments, empty segments, backslashes, NUL.
pub(crate) fn check_relative_path(p: &str) -> Result<()> {
    let unsafe_path = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.contains('\0')
        || p.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        || (p.len() >= 2 && p.as_bytes()[1] == b':');
    if unsafe_path {
        return Err(DownloadError::UnsafePath {
            path: p.to_string(),
        });
    }
    Ok(())
}

/// A blob name must be one path segment (the hub's etag: a git sha1 or an LFS sha256).
pub(crate) fn check_etag(etag: &str) -> Result<()> {
    if etag.is_empty()
        || !etag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DownloadError::UnsafePath {
            path: etag.to_string(),
        });
    }
    Ok(())
}

/// Free bytes for an unprivileged user on the file system holding `dir`.
#[cfg(unix)]
pub(crate) fn free_space(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| DownloadError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(DownloadError::io(dir)(std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(not(unix))]
pub(crate) fn free_space(_dir: &Path) -> Result<u64> {
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_refused() {
        for p in [
            "../../x",
            "/etc/passwd",
            "a/../b",
            "a\\b",
            "",
            "a//b",
            "./a",
            "C:x",
            "a/",
        ] {
            assert!(check_relative_path(p).is_err(), "{p}");
        }
        for p in ["model.safetensors", "sub/dir/tokenizer.json", "a..b"] {
            assert!(check_relative_path(p).is_ok(), "{p}");
        }
        assert!(check_etag("../x").is_err());
        assert!(check_etag("abc123").is_ok());
    }

    #[test]
    fn link_is_relative() {
        let dir = std::env::temp_dir().join(format!("cortex-cache-{}", std::process::id()));
        let repo = RepoCache::new(&dir, "models--a--b");
        repo.create_dirs().unwrap();
        std::fs::write(repo.blob("e1"), b"hi").unwrap();
        let l = repo.link("c0", "sub/f.json", "e1").unwrap();
        assert_eq!(
            std::fs::read_link(&l).unwrap(),
            PathBuf::from("../../../blobs/e1")
        );
        assert_eq!(std::fs::read(&l).unwrap(), b"hi");
        repo.write_ref("main", "c0").unwrap();
        assert_eq!(
            std::fs::read_to_string(repo.root.join("refs/main")).unwrap(),
            "c0"
        );
        assert!(free_space(&dir).unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
