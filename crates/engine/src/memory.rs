//! The memory a model takes once loaded on this device, from its files, before loading it.
//!
//! The engine keeps floating-point tensors in its compute dtype ([`crate::compute`]): float32
//! on the CPU, so a bfloat16 checkpoint takes twice its file size there, and the checkpoint's
//! half type on GPUs. Quantized weights stay packed as they are in the file (their scales and
//! biases are floats and follow the compute dtype, except 16-bit ones of the layers the CPU
//! kernels take, which stay as stored; with int8 activations on an x86 CPU with AVX2 those
//! layers are held a second time, repacked: see `weights`). The KV cache holds K and V for
//! every layer in the compute dtype:
//!
//!   kv bytes per token = 2 x layers x kv_heads x head_dim x dtype size
//!
//! Activations and the runtime come on top; they are small next to these at the context
//! lengths people pick (`memory` tests measure the whole process against this estimate).
use crate::compute::ComputeOptions;
use crate::config::RawConfig;
use crate::error::Result;
use cortex_mlx::Dtype;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryNeed {
    /// Weights as the engine holds them.
    pub weights_bytes: u64,
    /// K+V bytes per token of context; None when config.json lacks the attention shape.
    pub kv_bytes_per_token: Option<u64>,
    /// The dtype floats are held in.
    #[serde(serialize_with = "dtype_name")]
    pub dtype: Dtype,
}

fn dtype_name<S: serde::Serializer>(d: &Dtype, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

impl MemoryNeed {
    /// Weights plus the KV cache for `tokens` tokens of context.
    pub fn at_context(&self, tokens: u64) -> u64 {
        self.weights_bytes
            .saturating_add(self.kv_bytes_per_token.unwrap_or(0).saturating_mul(tokens))
    }
}

/// What the model folder `dir` will take once loaded with `options`: read from config.json and
/// the safetensors headers (checked as the loader checks them); reads no weights.
pub fn estimate(dir: &Path, options: &ComputeOptions) -> Result<MemoryNeed> {
    let config = RawConfig::read(dir)?;
    let dtype = options.dtype(config.checkpoint_dtype());
    let float_size = dtype.size_bytes() as u64;
    let quant = config.quantization()?;
    let cpu = options.path() == crate::compute::ComputePath::Cpu;
    // (group, bits) of a quantized layer the CPU kernels take, per `weights`
    let kernel_layer = |prefix: &str| {
        quant
            .as_ref()
            .map(|q| q.params_for(prefix))
            .filter(|&(g, b)| cpu && (b == 4 || b == 8) && g > 0 && g % 8 == 0)
    };
    let repack = cpu && options.int8_activations() && cortex_mlx::ops::int8_repacks();
    let mut entries = Vec::new();
    for file in crate::weights::safetensors_files(dir)? {
        entries.extend(crate::safetensors::read_header(&file)?);
    }
    let bytes_of = |name: &str| {
        entries
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.bytes)
    };
    let mut weights_bytes = 0u64;
    for t in &entries {
        let side_of = t
            .name
            .strip_suffix(".scales")
            .or_else(|| t.name.strip_suffix(".biases"));
        let kernel = side_of.and_then(kernel_layer);
        // 16-bit scales and biases of a kernel layer stay as stored; other floats are converted
        let as_stored = !t.is_float() || (kernel.is_some() && matches!(t.dtype, "F16" | "BF16"));
        let mut held = if as_stored {
            t.bytes
        } else {
            t.elements.saturating_mul(float_size)
        };
        // the repacked copy: the packed weight again, scales and biases in float32
        if let (true, Some(prefix), Some((g, _))) = (repack, t.name.strip_suffix(".scales"), kernel)
        {
            if g % 32 == 0 {
                let copy = bytes_of(&format!("{prefix}.weight"))
                    .saturating_add(t.elements.saturating_mul(8));
                held = held.saturating_add(copy);
            }
        }
        weights_bytes = weights_bytes.saturating_add(held);
    }
    Ok(MemoryNeed {
        weights_bytes,
        // the int8 path's cache holds int8 rows, the float path's float16 for float32
        // (`compute::kv_dtype`)
        kv_bytes_per_token: if cpu && options.int8_activations() {
            kv_int8_bytes_per_token(&config.value)
        } else if options.half_kv() && dtype == Dtype::Float32 {
            kv_bytes_per_token(&config.value, 2)
        } else {
            kv_bytes_per_token(&config.value, float_size)
        },
        dtype,
    })
}

/// K+V bytes per token from a Hugging Face config.json (multimodal configs: its `text_config`)
/// with `element_bytes` per cached value.
pub fn kv_bytes_per_token(config: &Value, element_bytes: u64) -> Option<u64> {
    let (rows, head_dim) = kv_rows_per_token(config)?;
    rows.checked_mul(head_dim)?.checked_mul(element_bytes)
}

/// K+V bytes per token of the int8 path's cache: per head, D int8 values and a 4-byte scale
/// per block of 32 (`ops::kv_row_width`).
pub fn kv_int8_bytes_per_token(config: &Value) -> Option<u64> {
    let (rows, head_dim) = kv_rows_per_token(config)?;
    let width = cortex_mlx::ops::kv_row_width(Dtype::Int8, i32::try_from(head_dim).ok()?);
    rows.checked_mul(u64::try_from(width).ok()?)
}

/// The rows of head_dim values a token caches (2 x layers x KV heads), and head_dim.
fn kv_rows_per_token(config: &Value) -> Option<(u64, u64)> {
    let cfg = if config.get("num_hidden_layers").is_none() {
        config.get("text_config")?
    } else {
        config
    };
    let int = |k: &str| cfg.get(k).and_then(Value::as_u64).filter(|&v| v > 0);
    let layers = int("num_hidden_layers")?;
    let heads = int("num_attention_heads")?;
    let kv_heads = int("num_key_value_heads").unwrap_or(heads);
    let head_dim = match int("head_dim") {
        Some(d) => d,
        None => int("hidden_size")? / heads,
    };
    Some((2u64.checked_mul(layers)?.checked_mul(kv_heads)?, head_dim))
}

/// Bytes per float the engine holds on this device for a checkpoint saved in
/// `checkpoint_dtype` (4 on the CPU; 2 on GPUs unless the checkpoint is float32).
pub fn float_bytes_here(checkpoint_dtype: Option<Dtype>) -> u64 {
    ComputeOptions::default()
        .dtype(checkpoint_dtype)
        .size_bytes() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kv_shape_from_config() {
        let c = json!({"num_hidden_layers": 32, "num_attention_heads": 32,
                       "num_key_value_heads": 8, "hidden_size": 4096});
        assert_eq!(kv_bytes_per_token(&c, 2), Some(2 * 32 * 8 * 128 * 2));
        assert_eq!(kv_bytes_per_token(&c, 4), Some(2 * 32 * 8 * 128 * 4));
        let wrapped = json!({"model_type": "gemma3", "text_config": {"num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16}});
        assert_eq!(kv_bytes_per_token(&wrapped, 4), Some(2 * 2 * 16 * 4));
        assert_eq!(kv_bytes_per_token(&json!({"model_type": "x"}), 2), None);
        // int8 rows: 128 values and four 4-byte scales per head; 16 values and one
        assert_eq!(kv_int8_bytes_per_token(&c), Some(2 * 32 * 8 * (128 + 16)));
        assert_eq!(kv_int8_bytes_per_token(&wrapped), Some(2 * 2 * (16 + 4)));
        let huge = json!({"num_hidden_layers": u64::MAX, "num_attention_heads": 1,
                          "head_dim": 2});
        assert_eq!(kv_bytes_per_token(&huge, 4), None, "overflow is no size");
    }
}
