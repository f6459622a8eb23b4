//! The shared Hugging Face cache (`hub/`), laid out as every HF tool writes it:
//! `models--{org}--{name}/{blobs/<etag>, refs/<rev>, snapshots/<commit>/<path> -> ../../blobs/<etag>}`,
//! with partial downloads as `blobs/<etag>.incomplete`. A snapshot is one model; its size is the
//! blobs it links to. Deleting a snapshot frees the blobs no other snapshot of the repo links to,
//! the refs naming it, and the repo folder once no snapshot is left (huggingface_hub's strategy).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::fs::{dir_size, folder_inside, sorted_entries};
use super::{read_model_info, ScanResult, Skipped};
use crate::error::{CatalogError, Result};
use crate::models::{ModelSource, NewModel};

const REPO_PREFIX: &str = "models--";

/// Every complete model snapshot in the cache at `cache_dir`; a missing cache holds none.
pub fn scan_hf_cache(cache_dir: &Path) -> Result<ScanResult> {
    let mut result = ScanResult::default();
    if !cache_dir.is_dir() {
        return Ok(result);
    }
    for repo_dir in sorted_entries(cache_dir)? {
        let Some(repo) = repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(repo_id_of)
        else {
            continue;
        };
        let snapshots = repo_dir.join("snapshots");
        if !is_real_dir(&repo_dir) || !is_real_dir(&snapshots) {
            continue;
        }
        let refs = refs_by_commit(&repo_dir)?;
        let blobs = repo_dir.join("blobs").canonicalize().ok();
        for snapshot in sorted_entries(&snapshots)? {
            let Some(commit) = snapshot
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !is_real_dir(&snapshot) || !snapshot.join("config.json").exists() {
                continue;
            }
            let info = linked_files(&snapshot, blobs.as_deref())
                .and_then(|linked| read_model_info(&snapshot, linked.bytes()?));
            match info {
                Ok(info) => result.models.push(NewModel {
                    name: repo.clone(),
                    source: ModelSource::Hub {
                        revision: preferred_ref(refs.get(&commit))
                            .unwrap_or_else(|| commit.clone()),
                        repo: repo.clone(),
                        commit: Some(commit),
                    },
                    path: snapshot,
                    info,
                }),
                Err(e) => result.skipped.push(Skipped {
                    path: snapshot,
                    reason: e.to_string(),
                }),
            }
        }
    }
    Ok(result)
}

/// Deletes snapshot `commit` of `repo` ("org/name") from the cache at `cache_dir`; returns the
/// bytes freed.
pub fn delete_hf_snapshot(cache_dir: &Path, repo: &str, commit: &str) -> Result<u64> {
    check_repo_id(repo)?;
    check_segment("commit", commit)?;
    let repo_dir = folder_inside(
        cache_dir,
        &cache_dir.join(repo_folder_name(repo)),
        "cached repo",
    )?;
    let snapshots = repo_dir.join("snapshots");
    let target = folder_inside(&repo_dir, &snapshots.join(commit), "snapshot")?;
    let blobs = repo_dir.join("blobs").canonicalize().ok();

    let mine = linked_files(&target, blobs.as_deref())?;
    let mut others = BTreeSet::new();
    for snapshot in sorted_entries(&snapshots)? {
        if snapshot.file_name() != target.file_name() && is_real_dir(&snapshot) {
            others.extend(linked_files(&snapshot, blobs.as_deref())?.blobs);
        }
    }

    let mut freed = mine.regular_bytes;
    std::fs::remove_dir_all(&target).map_err(|e| CatalogError::io(&target, e))?;
    for blob in mine.blobs.difference(&others) {
        let size = std::fs::symlink_metadata(blob)
            .map(|m| m.len())
            .unwrap_or(0);
        match std::fs::remove_file(blob) {
            Ok(()) => freed += size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CatalogError::io(blob, e)),
        }
    }
    remove_refs_to(&repo_dir.join("refs"), commit)?;

    if sorted_entries(&snapshots)?.is_empty() {
        freed += dir_size(&repo_dir)?;
        std::fs::remove_dir_all(&repo_dir).map_err(|e| CatalogError::io(&repo_dir, e))?;
    }
    Ok(freed)
}

/// "org/name" for a folder named "models--org--name".
fn repo_id_of(folder_name: &str) -> Option<String> {
    let rest = folder_name
        .strip_prefix(REPO_PREFIX)
        .filter(|r| !r.is_empty())?;
    Some(rest.split("--").collect::<Vec<_>>().join("/"))
}

fn repo_folder_name(repo: &str) -> String {
    format!("{REPO_PREFIX}{}", repo.replace('/', "--"))
}

/// A repo id is "name" or "org/name" of letters, digits, '-', '_', '.', without "--" or "..".
fn check_repo_id(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 || repo.contains("--") {
        return Err(CatalogError::invalid("repo id", format!("{repo:?}")));
    }
    parts.iter().try_for_each(|p| check_segment("repo id", p))
}

/// One path segment that cannot climb or branch out: no separators, not "." or "..".
fn check_segment(what: &'static str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s != "."
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(CatalogError::invalid(what, format!("{s:?}")));
    }
    Ok(())
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// The files a snapshot is made of: blobs it links to (canonical paths inside `blobs`) and the
/// bytes of regular files it holds itself (caches written without symlinks).
struct Linked {
    blobs: BTreeSet<PathBuf>,
    regular_bytes: u64,
}

impl Linked {
    fn bytes(&self) -> Result<u64> {
        let mut total = self.regular_bytes;
        for blob in &self.blobs {
            let len = std::fs::metadata(blob)
                .map_err(|e| CatalogError::io(blob, e))?
                .len();
            total = total.saturating_add(len);
        }
        Ok(total)
    }
}

fn linked_files(snapshot: &Path, blobs: Option<&Path>) -> Result<Linked> {
    let mut linked = Linked {
        blobs: BTreeSet::new(),
        regular_bytes: 0,
    };
    collect_links(snapshot, blobs, &mut linked)?;
    Ok(linked)
}

fn collect_links(dir: &Path, blobs: Option<&Path>, out: &mut Linked) -> Result<()> {
    for path in sorted_entries(dir)? {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| CatalogError::io(&path, e))?;
        if meta.is_dir() {
            collect_links(&path, blobs, out)?;
        } else if meta.is_file() {
            out.regular_bytes = out.regular_bytes.saturating_add(meta.len());
        } else if meta.file_type().is_symlink() {
            // A link that dangles or leads out of the repo's blobs is neither counted nor freed.
            if let (Ok(target), Some(blobs)) = (path.canonicalize(), blobs) {
                if target.starts_with(blobs) && target.is_file() {
                    out.blobs.insert(target);
                }
            }
        }
    }
    Ok(())
}

/// Commit -> the ref names (e.g. "main", "pr/1") that point at it.
fn refs_by_commit(repo_dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let refs = repo_dir.join("refs");
    for (name, commit) in ref_files(&refs, &refs)? {
        map.entry(commit).or_default().push(name);
    }
    Ok(map)
}

/// (ref name, commit) of every ref file under `dir`; unreadable refs are ignored.
fn ref_files(root: &Path, dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if !is_real_dir(dir) {
        return Ok(out);
    }
    for path in sorted_entries(dir)? {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(ref_files(root, &path)?);
        } else if meta.is_file() {
            if let (Ok(commit), Ok(name)) =
                (std::fs::read_to_string(&path), path.strip_prefix(root))
            {
                out.push((
                    name.to_string_lossy().replace('\\', "/"),
                    commit.trim().to_string(),
                ));
            }
        }
    }
    Ok(out)
}

fn preferred_ref(names: Option<&Vec<String>>) -> Option<String> {
    let names = names?;
    names
        .iter()
        .find(|n| *n == "main")
        .or_else(|| names.iter().min())
        .cloned()
}

/// Removes the ref files under `dir` that point at `commit`, and folders that become empty.
fn remove_refs_to(dir: &Path, commit: &str) -> Result<()> {
    if !is_real_dir(dir) {
        return Ok(());
    }
    for path in sorted_entries(dir)? {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            remove_refs_to(&path, commit)?;
            if sorted_entries(&path)?.is_empty() {
                std::fs::remove_dir(&path).map_err(|e| CatalogError::io(&path, e))?;
            }
        } else if meta.is_file() && std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit)
        {
            std::fs::remove_file(&path).map_err(|e| CatalogError::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_folder_names() {
        assert_eq!(repo_id_of("models--org--name").as_deref(), Some("org/name"));
        assert_eq!(repo_id_of("models--gpt2").as_deref(), Some("gpt2"));
        assert_eq!(repo_id_of("datasets--org--name"), None);
        assert_eq!(repo_id_of("models--"), None);
        assert_eq!(repo_folder_name("org/name"), "models--org--name");
        assert!(check_repo_id("org/name.v1_x-y").is_ok());
        for bad in [
            "", "a/b/c", "../x", "org/..", "a--b", "org/", "o rg/x", "org\\x",
        ] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        for bad in ["", ".", "..", "a/b", "..abc"] {
            assert!(check_segment("commit", bad).is_err(), "{bad}");
        }
    }
}
