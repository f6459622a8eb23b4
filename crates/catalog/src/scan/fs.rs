//! Filesystem primitives of the scans: sorted listings, sizes that never follow a symlink, the
//! check that a path stays inside its root, and deleting a plain model folder.

use std::path::{Path, PathBuf};

use crate::error::{CatalogError, Result};

/// The entries of `dir`, sorted by name so scans are deterministic.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e| CatalogError::io(dir, e);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        entries.push(entry.map_err(io)?.path());
    }
    entries.sort();
    Ok(entries)
}

/// Bytes of the regular files under `path` (or of `path` itself), never following a symlink.
pub(crate) fn dir_size(path: &Path) -> Result<u64> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| CatalogError::io(path, e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0u64;
    for entry in sorted_entries(path)? {
        total = total.saturating_add(dir_size(&entry)?);
    }
    Ok(total)
}

/// The canonical form of `path` if it is a real folder (not a symlink) strictly inside `root`;
/// `Invalid` otherwise, `NotFound` if it does not exist.
pub(crate) fn folder_inside(root: &Path, path: &Path, what: &'static str) -> Result<PathBuf> {
    let root = root.canonicalize().map_err(|e| CatalogError::io(root, e))?;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CatalogError::not_found(what, path.display().to_string()));
        }
        Err(e) => return Err(CatalogError::io(path, e)),
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(CatalogError::invalid(
            what,
            format!("{} is not a folder", path.display()),
        ));
    }
    let canonical = path.canonicalize().map_err(|e| CatalogError::io(path, e))?;
    if canonical == root || !canonical.starts_with(&root) {
        return Err(CatalogError::invalid(
            what,
            format!("{} is not inside {}", path.display(), root.display()),
        ));
    }
    Ok(canonical)
}

/// Deletes the model folder `path`, which must be inside `root` (the models folder); returns the
/// bytes freed. Symlinks inside are removed, not followed.
pub fn delete_model_dir(root: &Path, path: &Path) -> Result<u64> {
    let folder = folder_inside(root, path, "model folder")?;
    let freed = dir_size(&folder)?;
    std::fs::remove_dir_all(&folder).map_err(|e| CatalogError::io(&folder, e))?;
    Ok(freed)
}
