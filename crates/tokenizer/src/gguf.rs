//! A pure-Rust reader for the metadata of GGUF files (versions 2 and 3): the header, every
//! key/value pair and the tensor table. It never reads tensor data and never trusts a length from
//! the file: every string, array and table size is checked against the bytes left in the file
//! and against a memory budget before anything is allocated (a 1-byte bool becomes a 32-byte
//! `GgufValue`, so a count the file could hold may still be far too much memory), so a corrupt
//! or hostile file yields a `GgufError`, not an abort. [`GgufMetadata::check_tensor_data`]
//! checks that every tensor's data lies inside the file, for loaders that map it unchecked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub use crate::error::GgufError;

const MAGIC: [u8; 4] = *b"GGUF";
/// GGML tensors have at most 4 dimensions; anything much larger is a corrupt file.
const MAX_DIMS: u32 = 8;
/// Arrays of arrays are legal but never deep in practice; the bound keeps recursion finite.
const MAX_ARRAY_DEPTH: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Memory the parsed metadata may take. The largest real vocabularies (262k tokens with scores
/// and types, or 151k tokens plus 151k merges) need about 30 MB.
pub const MAX_METADATA_MEMORY: u64 = 256 << 20;
/// GGML tensors have at most 4 dimensions.
const GGML_MAX_DIMS: usize = 4;

/// (elements per block, bytes per block) of each GGML tensor type, as PyPI `gguf`'s
/// GGML_QUANT_SIZES lists them.
const GGML_BLOCKS: &[(u32, u64, u64)] = &[
    (0, 1, 4),      // F32
    (1, 1, 2),      // F16
    (2, 32, 18),    // Q4_0
    (3, 32, 20),    // Q4_1
    (6, 32, 22),    // Q5_0
    (7, 32, 24),    // Q5_1
    (8, 32, 34),    // Q8_0
    (9, 32, 40),    // Q8_1
    (10, 256, 84),  // Q2_K
    (11, 256, 110), // Q3_K
    (12, 256, 144), // Q4_K
    (13, 256, 176), // Q5_K
    (14, 256, 210), // Q6_K
    (15, 256, 292), // Q8_K
    (16, 256, 66),  // IQ2_XXS
    (17, 256, 74),  // IQ2_XS
    (18, 256, 98),  // IQ3_XXS
    (19, 256, 50),  // IQ1_S
    (20, 32, 18),   // IQ4_NL
    (21, 256, 110), // IQ3_S
    (22, 256, 82),  // IQ2_S
    (23, 256, 136), // IQ4_XS
    (24, 1, 1),     // I8
    (25, 1, 2),     // I16
    (26, 1, 4),     // I32
    (27, 1, 8),     // I64
    (28, 1, 8),     // F64
    (29, 256, 56),  // IQ1_M
    (30, 1, 2),     // BF16
    (34, 256, 54),  // TQ1_0
    (35, 256, 66),  // TQ2_0
    (39, 32, 17),   // MXFP4
];

/// One metadata value, typed as the file types it.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }

    /// Any integer value as i128, so callers can range-check without caring which width the
    /// writer chose (converters disagree: token ids appear as u32, i32 and u64).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions in GGML order (innermost first), as stored.
    pub shape: Vec<u64>,
    pub ggml_type: u32,
    /// Offset relative to `GgufMetadata::data_offset`.
    pub offset: u64,
}

/// (elements per block, bytes per block) of the GGML tensor type `ggml_type`; None for a type
/// this reader does not know.
pub fn ggml_block(ggml_type: u32) -> Option<(u64, u64)> {
    GGML_BLOCKS
        .iter()
        .find(|(t, _, _)| *t == ggml_type)
        .map(|&(_, block, bytes)| (block, bytes))
}

impl GgufTensorInfo {
    /// Bytes of tensor data, from the type's block size and the shape: `None` for a type this
    /// reader does not know, a row that is not a whole number of blocks, or a size that
    /// overflows.
    pub fn byte_size(&self) -> Option<u64> {
        let (block, block_bytes) = ggml_block(self.ggml_type)?;
        let row = *self.shape.first().unwrap_or(&1);
        if row % block != 0 {
            return None;
        }
        let elements = self
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))?;
        (elements / block).checked_mul(block_bytes)
    }
}

#[derive(Debug, Clone)]
pub struct GgufMetadata {
    pub version: u32,
    pub kv: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
    pub file_len: u64,
}

impl GgufMetadata {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.kv.get(key)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.kv.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong(key: &str, expected: &'static str, v: &GgufValue) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: v.type_name(),
        }
    }

    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self.require(key)?;
        v.as_int()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Self::wrong(key, "u32", v))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_int()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Self::wrong(key, "u64", v))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| Self::wrong(key, "f32", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "array of string", v))?;
        arr.iter()
            .map(|e| {
                e.as_str()
                    .ok_or_else(|| Self::wrong(key, "array of string", e))
            })
            .collect()
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let v = self.require(key)?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "array of f32", v))?;
        arr.iter()
            .map(|e| {
                e.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| Self::wrong(key, "array of f32", e))
            })
            .collect()
    }

    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let v = self.require(key)?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "array of int", v))?;
        arr.iter()
            .map(|e| {
                e.as_int()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| Self::wrong(key, "array of int", e))
            })
            .collect()
    }

    /// `Ok(None)` when the key is absent; a present key of the wrong type is still an error.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        if self.kv.contains_key(key) {
            self.get_u32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        if self.kv.contains_key(key) {
            self.get_bool(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        if self.kv.contains_key(key) {
            self.get_str(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks that every tensor's data lies inside the file: at most 4 dimensions, a type of
    /// known block size, rows of whole blocks, an aligned offset, and an overflow-checked
    /// `offset + size` within the file. Loaders that map tensor data (MLX's `load_gguf`) need
    /// this first; reading only the vocabulary does not.
    pub fn check_tensor_data(&self) -> Result<(), GgufError> {
        for t in &self.tensors {
            let bad = |detail: &str| GgufError::BadTensor {
                name: t.name.clone(),
                detail: detail.to_string(),
            };
            if t.shape.len() > GGML_MAX_DIMS {
                return Err(bad("has more than 4 dimensions"));
            }
            if !GGML_BLOCKS.iter().any(|(ty, _, _)| *ty == t.ggml_type) {
                return Err(bad("has a tensor type of unknown size"));
            }
            let size = t
                .byte_size()
                .ok_or_else(|| bad("has a shape that overflows or splits a block"))?;
            if t.offset % self.alignment != 0 {
                return Err(bad("has a data offset that is not aligned"));
            }
            let end = self
                .data_offset
                .checked_add(t.offset)
                .and_then(|start| start.checked_add(size));
            if !matches!(end, Some(end) if end <= self.file_len) {
                return Err(bad("has data past the end of the file"));
            }
        }
        Ok(())
    }
}

/// Reads the header, metadata and tensor table of the GGUF file at `path`.
pub fn read_metadata(path: &Path) -> Result<GgufMetadata, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    parse_metadata(BufReader::new(file), len)
}

/// Parses GGUF metadata from any reader positioned at the start of a file of `file_len` bytes.
pub fn parse_metadata<R: Read>(reader: R, file_len: u64) -> Result<GgufMetadata, GgufError> {
    let mut src = Source {
        r: reader,
        pos: 0,
        len: file_len,
        memory_left: MAX_METADATA_MEMORY,
    };
    let magic: [u8; 4] = src.array("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = src.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = src.u64("tensor count")?;
    let n_kv = src.u64("metadata count")?;
    // Smallest possible entries: a kv is key length + empty key + type + 1 byte value; a tensor
    // info is name length + empty name + n_dims + type + offset.
    src.check_count("metadata", n_kv, 8 + 4 + 1)?;
    src.check_count("tensor", n_tensors, 8 + 4 + 4 + 8)?;

    let mut kv = BTreeMap::new();
    for _ in 0..n_kv {
        // the map entry: key and value structs plus a B-tree's share of a node
        src.charge(
            "metadata",
            (std::mem::size_of::<String>() + std::mem::size_of::<GgufValue>() + 16) as u64,
        )?;
        let key = src.string("metadata key")?;
        let ty = src.u32("value type")?;
        let value = src.value(&key, ty, 0)?;
        kv.insert(key, value);
    }

    src.charge_items::<GgufTensorInfo>("tensor", n_tensors)?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        tensors.push(src.tensor_info()?);
    }

    let alignment = match kv.get("general.alignment").and_then(GgufValue::as_int) {
        Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
        Some(a) => {
            return Err(GgufError::BadTensor {
                name: "general.alignment".into(),
                detail: format!("alignment {a} is not a positive power of two"),
            })
        }
        None => DEFAULT_ALIGNMENT,
    };
    let data_offset = src.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        if !matches!(data_offset.checked_add(t.offset), Some(end) if end <= file_len) {
            return Err(GgufError::BadTensor {
                name: t.name.clone(),
                detail: format!(
                    "data offset {} lies past the end of the file ({file_len} bytes)",
                    t.offset
                ),
            });
        }
    }
    Ok(GgufMetadata {
        version,
        kv,
        tensors,
        alignment,
        data_offset,
        file_len,
    })
}

/// A reader that knows how many bytes the file has left, so lengths can be validated first.
struct Source<R> {
    r: R,
    pos: u64,
    len: u64,
    /// What may still be allocated for parsed metadata (see `MAX_METADATA_MEMORY`).
    memory_left: u64,
}

impl<R: Read> Source<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), GgufError> {
        if (buf.len() as u64) > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what,
            });
        }
        self.r.read_exact(buf).map_err(|_| GgufError::Truncated {
            offset: self.pos,
            what,
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn check_count(&self, what: &'static str, count: u64, min_size: u64) -> Result<(), GgufError> {
        if !matches!(count.checked_mul(min_size), Some(need) if need <= self.remaining()) {
            return Err(GgufError::AbsurdCount {
                what,
                count,
                file_len: self.len,
            });
        }
        Ok(())
    }

    /// Takes `bytes` from the memory budget before they are allocated.
    fn charge(&mut self, what: &'static str, bytes: u64) -> Result<(), GgufError> {
        self.memory_left = self
            .memory_left
            .checked_sub(bytes)
            .ok_or(GgufError::TooLarge {
                what,
                limit: MAX_METADATA_MEMORY,
            })?;
        Ok(())
    }

    fn charge_items<T>(&mut self, what: &'static str, count: u64) -> Result<(), GgufError> {
        let bytes = count.saturating_mul(std::mem::size_of::<T>() as u64);
        self.charge(what, bytes)
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what,
            });
        }
        self.charge(what, n)?;
        let start = self.pos;
        let mut buf = vec![0u8; n as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|_| GgufError::InvalidUtf8 { offset: start })
    }

    fn value(&mut self, key: &str, ty: u32, depth: u32) -> Result<GgufValue, GgufError> {
        const W: &str = "metadata value";
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(W)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(W)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(W)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(W)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(W)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(W)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(W)?)),
            7 => GgufValue::Bool(u8::from_le_bytes(self.array::<1>(W)?) != 0),
            8 => GgufValue::String(self.string(W)?),
            9 if depth < MAX_ARRAY_DEPTH => {
                let elem_ty = self.u32("array element type")?;
                let count = self.u64("array length")?;
                let min_size = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 => 8,
                    9 => 12,
                    10..=12 => 8,
                    other => {
                        return Err(GgufError::UnknownValueType {
                            key: key.to_string(),
                            value_type: other,
                        })
                    }
                };
                self.check_count("array element", count, min_size)?;
                self.charge_items::<GgufValue>("array element", count)?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(key, elem_ty, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(W)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(W)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(W)?)),
            other => {
                return Err(GgufError::UnknownValueType {
                    key: key.to_string(),
                    value_type: other,
                })
            }
        })
    }

    fn tensor_info(&mut self) -> Result<GgufTensorInfo, GgufError> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::BadTensor {
                name,
                detail: format!("{n_dims} dimensions"),
            });
        }
        self.charge_items::<u64>("tensor dimension", n_dims.into())?;
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(self.u64("tensor dimension")?);
        }
        let ggml_type = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        Ok(GgufTensorInfo {
            name,
            shape,
            ggml_type,
            offset,
        })
    }
}

#[cfg(test)]
#[path = "gguf_tests.rs"]
mod tests;
