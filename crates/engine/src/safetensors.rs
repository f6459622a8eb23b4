//! What the engine accepts as a safetensors checkpoint before MLX reads a byte of it. A model
//! folder comes from the internet, so it is untrusted input:
//!
//! - weight files are plain names inside the folder (model.safetensors.index.json's weight_map
//!   may not point at `../../token` or `/etc/...`, nor reach outside through a symlink), and
//!   regular files;
//! - every header entry is checked: a dtype MLX knows, dimensions that fit MLX's int32 shapes,
//!   an overflow-checked byte size equal to its data range, ranges inside the data area that do
//!   not overlap. MLX's own check multiplies without overflow checks and narrows dimensions.
//!
//! Errors name the file and the tensor, and never quote bytes or numbers read from the file.
use crate::error::{EngineError, Result, SafetensorsProblem, TensorFault};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The safetensors format's own limit on the JSON header.
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The dtypes MLX's safetensors loader accepts, with their sizes in bytes.
const DTYPES: &[(&str, u64)] = &[
    ("BOOL", 1),
    ("U8", 1),
    ("I8", 1),
    ("F8_E4M3", 1),
    ("U16", 2),
    ("I16", 2),
    ("F16", 2),
    ("BF16", 2),
    ("U32", 4),
    ("I32", 4),
    ("F32", 4),
    ("U64", 8),
    ("I64", 8),
    ("C64", 8),
];

/// The dtype names MLX loads, for error messages.
pub fn dtype_names() -> String {
    DTYPES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name`, as listed in `listed_in`, as a file of `dir`: a plain file name (no separator, not
/// `.` or `..`, not absolute) of a regular file that lies inside `dir` once symlinks are
/// resolved. In a Hugging Face cache snapshot (`models--org--name/snapshots/<commit>`) files are
/// symlinks into the repo's own `blobs/`, which counts as inside.
pub fn weight_file(dir: &Path, name: &str, listed_in: &Path) -> Result<PathBuf> {
    let refuse = |reason: &'static str| EngineError::UnsafeWeightFile {
        listed_in: listed_in.to_path_buf(),
        name: name.to_string(),
        reason,
    };
    let mut parts = Path::new(name).components();
    let plain = matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) && !name.contains(['/', '\\', ':', '\0']);
    if !plain {
        return Err(refuse("is not a plain file name"));
    }
    let path = dir.join(name);
    let real = std::fs::canonicalize(&path).map_err(EngineError::io(&path))?;
    let real_dir = std::fs::canonicalize(dir).map_err(EngineError::io(dir))?;
    if !real.starts_with(&real_dir) && !hf_blobs(&real_dir).is_some_and(|b| real.starts_with(b)) {
        return Err(refuse("lies outside the model folder"));
    }
    let meta = std::fs::metadata(&real).map_err(EngineError::io(&path))?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    Ok(path)
}

/// `<repo>/blobs` when `snapshot` (canonical) is `<repo>/snapshots/<commit>`.
fn hf_blobs(snapshot: &Path) -> Option<PathBuf> {
    let snapshots = snapshot.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    Some(snapshots.parent()?.join("blobs"))
}

/// The top level of a header in file order, keeping duplicate names (a JSON object that names
/// a tensor twice could be read one way here and another way by MLX).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One tensor of a checked header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    /// The safetensors dtype name ("F32", "BF16", "U32", ...).
    pub dtype: &'static str,
    pub elements: u64,
    pub bytes: u64,
}

impl TensorEntry {
    /// Floating-point data (what the engine converts to its compute dtype).
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, "F16" | "BF16" | "F32")
    }
}

/// Reads and checks the header of the safetensors file at `path` (see the module docs).
pub fn check_file(path: &Path) -> Result<()> {
    read_header(path).map(|_| ())
}

/// Reads and checks the header of the safetensors file at `path`; returns its tensors.
pub fn read_header(path: &Path) -> Result<Vec<TensorEntry>> {
    let corrupt = |problem| EngineError::CorruptSafetensors {
        path: path.to_path_buf(),
        problem,
    };
    let mut f = std::fs::File::open(path).map_err(EngineError::io(path))?;
    let file_len = f.metadata().map_err(EngineError::io(path))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| corrupt(SafetensorsProblem::NoHeaderLength))?;
    let header_len = u64::from_le_bytes(len);
    // Refused before allocating: the length is whatever the file's first 8 bytes say.
    if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
        return Err(corrupt(SafetensorsProblem::HeaderLength));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header)
        .map_err(|_| corrupt(SafetensorsProblem::HeaderLength))?;
    let Entries(entries) =
        serde_json::from_slice(&header).map_err(|_| corrupt(SafetensorsProblem::HeaderNotJson))?;
    check_entries(&entries, file_len - 8 - header_len).map_err(corrupt)
}

/// Checks every entry against a data area of `data_len` bytes.
fn check_entries(
    entries: &[(String, Value)],
    data_len: u64,
) -> std::result::Result<Vec<TensorEntry>, SafetensorsProblem> {
    let mut names = BTreeSet::new();
    let mut ranges = Vec::with_capacity(entries.len());
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        if !names.insert(name.as_str()) {
            return Err(SafetensorsProblem::DuplicateTensor(name.clone()));
        }
        if name == "__metadata__" {
            let strings = entry
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !strings {
                return Err(SafetensorsProblem::Metadata);
            }
            continue;
        }
        let fault = |fault| SafetensorsProblem::Tensor {
            tensor: name.clone(),
            fault,
        };
        let (begin, end, dtype, elements) = check_entry(entry, data_len).map_err(fault)?;
        ranges.push((begin, end, name));
        tensors.push(TensorEntry {
            name: name.clone(),
            dtype,
            elements,
            bytes: end - begin,
        });
    }
    // Sorted by start, each non-empty range must begin at or after the end of the ones before.
    ranges.sort();
    let mut last: Option<(u64, &String)> = None;
    for (begin, end, name) in ranges.into_iter().filter(|(b, e, _)| b < e) {
        if let Some((prev_end, prev)) = last {
            if begin < prev_end {
                return Err(SafetensorsProblem::Tensor {
                    tensor: name.clone(),
                    fault: TensorFault::Overlap(prev.clone()),
                });
            }
        }
        last = Some((end, name));
    }
    Ok(tensors)
}

/// One tensor entry: its data range, dtype and element count, once dtype, shape and offsets
/// agree.
fn check_entry(
    entry: &Value,
    data_len: u64,
) -> std::result::Result<(u64, u64, &'static str, u64), TensorFault> {
    let (Some(dtype), Some(shape), Some(offsets)) = (
        entry.get("dtype").and_then(Value::as_str),
        entry.get("shape").and_then(Value::as_array),
        entry.get("data_offsets").and_then(Value::as_array),
    ) else {
        return Err(TensorFault::Entry);
    };
    let (dtype, itemsize) = DTYPES
        .iter()
        .find(|(n, _)| *n == dtype)
        .copied()
        .ok_or(TensorFault::Dtype)?;
    let mut elements = 1u64;
    for d in shape {
        let d = d
            .as_u64()
            .filter(|d| *d <= i32::MAX as u64)
            .ok_or(TensorFault::Dim)?;
        elements = elements.checked_mul(d).ok_or(TensorFault::SizeOverflow)?;
    }
    let bytes = elements
        .checked_mul(itemsize)
        .ok_or(TensorFault::SizeOverflow)?;
    let [begin, end] = offsets.as_slice() else {
        return Err(TensorFault::Offsets);
    };
    let (Some(begin), Some(end)) = (begin.as_u64(), end.as_u64()) else {
        return Err(TensorFault::Offsets);
    };
    if begin > end {
        return Err(TensorFault::Offsets);
    }
    if end > data_len {
        return Err(TensorFault::PastEnd);
    }
    if end - begin != bytes {
        return Err(TensorFault::SizeMismatch);
    }
    Ok((begin, end, dtype, elements))
}
