//! Reading what safetensors headers say about a checkpoint (format tag, parameter count, dtype)
//! without reading any tensor data: a header is at most 100 MB of JSON at the start of the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::error::{CatalogError, Result};

/// The safetensors format's own limit on the header size.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One tensor's entry in a header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// A parsed header: tensors by name and the free-form `__metadata__` strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Header {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: HashMap<String, String>,
}

pub(crate) fn read_header(path: &Path) -> Result<Header> {
    let io = |e| CatalogError::io(path, e);
    let bad = |detail: &str| {
        CatalogError::invalid("safetensors file", format!("{}: {detail}", path.display()))
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    // Bounded before anything is allocated; the message never quotes the number read.
    if len > MAX_HEADER_BYTES || len > file_len.saturating_sub(8) {
        return Err(bad("header length exceeds the file or 100 MB"));
    }
    let mut json = Vec::new();
    file.take(len).read_to_end(&mut json).map_err(io)?;
    if json.len() as u64 != len {
        return Err(bad("truncated header"));
    }
    let Ok(Value::Object(entries)) = serde_json::from_slice::<Value>(&json) else {
        return Err(bad("header is not a JSON object"));
    };
    let mut header = Header::default();
    for (name, entry) in entries {
        if name == "__metadata__" {
            if let Value::Object(meta) = entry {
                for (k, v) in meta {
                    if let Value::String(v) = v {
                        header.metadata.insert(k, v);
                    }
                }
            }
            continue;
        }
        let dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("tensor without dtype"))?;
        let shape = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| bad("tensor without a valid shape"))?;
        header.tensors.insert(
            name,
            TensorInfo {
                dtype: dtype.to_string(),
                shape,
            },
        );
    }
    Ok(header)
}

/// How a checkpoint's linear layers are quantized, from config.json's "quantization" block:
/// defaults plus optional per-module entries (`{"bits": 8, ...}`, or `false` for unquantized).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantConfig {
    pub bits: i64,
    pub group_size: i64,
    pub per_module: HashMap<String, Option<i64>>,
}

impl QuantConfig {
    pub fn from_config(config: &Value) -> Option<QuantConfig> {
        let block = config.get("quantization")?.as_object()?;
        let bits = block.get("bits")?.as_i64()?;
        // mlx-lm's default group size.
        let group_size = block
            .get("group_size")
            .and_then(Value::as_i64)
            .unwrap_or(64);
        let per_module = block
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Object(o) => Some((k.clone(), o.get("bits").and_then(Value::as_i64))),
                Value::Bool(false) => Some((k.clone(), None)),
                _ => None,
            })
            .collect();
        Some(QuantConfig {
            bits,
            group_size,
            per_module,
        })
    }

    fn bits_of(&self, module: &str) -> Option<i64> {
        match self.per_module.get(module) {
            Some(bits) => *bits,
            None => Some(self.bits),
        }
    }
}

/// The number of parameters the headers hold, counting a quantized weight by its unpacked size
/// (its `.scales` and `.biases` are not parameters). `None` when a quantized layer's bit width is
/// not known or its packing is not MLX's (uint32 words).
pub(crate) fn count_parameters(headers: &[Header], quant: Option<&QuantConfig>) -> Option<i64> {
    let all: HashMap<&str, &TensorInfo> = headers
        .iter()
        .flat_map(|h| h.tensors.iter().map(|(k, v)| (k.as_str(), v)))
        .collect();
    let quantized = |module: &str| all.contains_key(format!("{module}.scales").as_str());
    let mut total: u64 = 0;
    for (name, tensor) in &all {
        let elements = if let Some(module) = name
            .strip_suffix(".scales")
            .or_else(|| name.strip_suffix(".biases"))
        {
            if quantized(module) {
                continue;
            }
            product(&tensor.shape)?
        } else if let Some(module) = name.strip_suffix(".weight").filter(|m| quantized(m)) {
            let bits = u64::try_from(quant?.bits_of(module)?)
                .ok()
                .filter(|b| *b > 0)?;
            let (last, rest) = tensor.shape.split_last()?;
            // Shapes come from the file: every product is overflow-checked.
            let unpacked_bits = last.checked_mul(32)?;
            if tensor.dtype != "U32" || unpacked_bits % bits != 0 {
                return None;
            }
            product(rest)?.checked_mul(unpacked_bits / bits)?
        } else {
            product(&tensor.shape)?
        };
        total = total.checked_add(elements)?;
    }
    i64::try_from(total).ok()
}

fn product(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d))
}

/// The float dtype most tensors have (ties broken by name), in config.json's spelling.
pub(crate) fn dominant_float_dtype(headers: &[Header]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for tensor in headers.iter().flat_map(|h| h.tensors.values()) {
        let name = match tensor.dtype.as_str() {
            "BF16" => "bfloat16",
            "F16" => "float16",
            "F32" => "float32",
            _ => continue,
        };
        *counts.entry(name).or_default() += 1;
    }
    // max_by_key returns the last maximum: iterate in reverse so the first name wins a tie.
    counts
        .into_iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dtype: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            dtype: dtype.into(),
            shape: shape.to_vec(),
        }
    }

    fn header(tensors: &[(&str, TensorInfo)]) -> Header {
        Header {
            tensors: tensors
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn counts_plain_tensors() {
        let h = header(&[
            ("a.weight", t("BF16", &[4, 8])),
            ("a.bias", t("BF16", &[4])),
            ("n", t("F32", &[8])),
        ]);
        assert_eq!(count_parameters(std::slice::from_ref(&h), None), Some(44));
        assert_eq!(dominant_float_dtype(&[h]), Some("bfloat16".into()));
    }

    #[test]
    fn counts_quantized_weights_unpacked_with_per_module_bits() {
        // 4-bit: 64 inputs pack into 8 words; 8-bit override: 64 inputs into 16 words.
        let h = header(&[
            ("q.weight", t("U32", &[16, 8])),
            ("q.scales", t("F16", &[16, 1])),
            ("q.biases", t("F16", &[16, 1])),
            ("q.bias", t("F16", &[16])),
            ("o.weight", t("U32", &[16, 16])),
            ("o.scales", t("F16", &[16, 1])),
            ("o.biases", t("F16", &[16, 1])),
            ("norm.weight", t("F16", &[64])),
        ]);
        let config = serde_json::json!({"quantization": {"bits": 4, "group_size": 64, "o": {"bits": 8, "group_size": 64}}});
        let q = QuantConfig::from_config(&config).unwrap();
        assert_eq!(
            count_parameters(std::slice::from_ref(&h), Some(&q)),
            Some(16 * 64 + 16 + 16 * 64 + 64)
        );
        // Without knowing the bits, a packed weight cannot be counted.
        assert_eq!(count_parameters(&[h], None), None);
    }

    #[test]
    fn dtype_tie_goes_to_the_first_name() {
        let h = header(&[("a", t("F16", &[1])), ("b", t("F32", &[1]))]);
        assert_eq!(dominant_float_dtype(&[h]), Some("float16".into()));
        assert_eq!(
            dominant_float_dtype(&[header(&[("a", t("U8", &[1]))])]),
            None
        );
    }

    #[test]
    fn absurd_shapes_count_as_unknown_not_a_panic() {
        // A packed width whose unpacked size (x 32 / bits) overflows u64.
        let h = header(&[
            ("q.weight", t("U32", &[1, u64::MAX / 16])),
            ("q.scales", t("F16", &[1, 1])),
        ]);
        let config = serde_json::json!({"quantization": {"bits": 4, "group_size": 64}});
        let q = QuantConfig::from_config(&config).unwrap();
        assert_eq!(count_parameters(&[h], Some(&q)), None);
        let h = header(&[("a", t("F32", &[u64::MAX, 2]))]);
        assert_eq!(count_parameters(&[h], None), None);
    }

    #[test]
    fn rejects_bad_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        for bytes in [
            vec![1u8, 2, 3],
            u64::MAX.to_le_bytes().to_vec(),
            [&10u64.to_le_bytes()[..], b"{}"].concat(),
            [&2u64.to_le_bytes()[..], b"[]"].concat(),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            assert!(read_header(&p).is_err(), "{bytes:?}");
        }
    }
}
