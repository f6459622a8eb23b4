//! Where an imported model folder came from. An import records its source file's size,
//! modification time and SHA-256 in the folder; a folder is the import of a file only if the
//! record matches it: same size and either the same modification time or, when that differs
//! (a copy), the same content hash. A folder without a record (made by anything else) is never
//! taken for an import.
use crate::error::{EngineError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

/// The record, inside the imported folder.
pub const RECORD_FILE: &str = ".cortex-source.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    file_name: String,
    size: u64,
    /// Nanoseconds since the Unix epoch, when the platform reports it.
    modified_ns: Option<u64>,
    sha256: String,
}

/// What a candidate folder is to a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Nothing by that name.
    Free,
    /// A finished import of these bytes.
    Same,
    /// Anything else: another file's import, a converted model, a stray folder or file.
    Other,
}

/// A source file, hashed only when needed (once).
pub struct SourceFile {
    path: PathBuf,
    size: u64,
    modified_ns: Option<u64>,
    sha256: OnceLock<String>,
}

impl SourceFile {
    pub fn open(path: &Path) -> Result<SourceFile> {
        let meta = std::fs::metadata(path).map_err(EngineError::io(path))?;
        if !meta.is_file() {
            return Err(EngineError::NotAModel {
                path: path.to_path_buf(),
            });
        }
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        Ok(SourceFile {
            path: path.to_path_buf(),
            size: meta.len(),
            modified_ns,
            sha256: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's SHA-256, lower-case hex.
    pub fn sha256(&self) -> Result<&str> {
        if let Some(h) = self.sha256.get() {
            return Ok(h);
        }
        let io = EngineError::io(&self.path);
        let mut f = std::fs::File::open(&self.path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(EngineError::io(&self.path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(self.sha256.get_or_init(|| hex))
    }

    /// Writes the record into `dir` (the import's staging folder).
    pub fn record(&self, dir: &Path) -> Result<()> {
        let record = Record {
            file_name: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: self.size,
            modified_ns: self.modified_ns,
            sha256: self.sha256()?.to_string(),
        };
        let path = dir.join(RECORD_FILE);
        let text =
            serde_json::to_string_pretty(&record).map_err(|e| EngineError::Gguf(e.to_string()))?;
        std::fs::write(&path, text).map_err(EngineError::io(&path))
    }

    /// What `dest` is to this file.
    pub fn matches(&self, dest: &Path) -> Result<Match> {
        match std::fs::symlink_metadata(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Match::Free),
            Err(e) => return Err(EngineError::io(dest)(e)),
            Ok(m) if !m.is_dir() => return Ok(Match::Other),
            Ok(_) => {}
        }
        if !dest.join("config.json").is_file() {
            return Ok(Match::Other);
        }
        let record = std::fs::read_to_string(dest.join(RECORD_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<Record>(&t).ok());
        let Some(record) = record else {
            return Ok(Match::Other);
        };
        if record.size != self.size {
            return Ok(Match::Other);
        }
        if record.modified_ns.is_some() && record.modified_ns == self.modified_ns {
            return Ok(Match::Same);
        }
        Ok(if record.sha256 == self.sha256()? {
            Match::Same
        } else {
            Match::Other
        })
    }
}
