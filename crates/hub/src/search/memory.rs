//! How much memory a model needs at a context length, and whether this machine has it.
//!
//! needed = weights as the engine holds them on this device
//!        + KV cache (2 [K and V] * layers * kv_heads * head_dim * bytes per element * tokens).
//! The engine computes in float32 on the CPU and in the checkpoint's half type on GPUs
//! (cortex_engine::compute), and keeps floats and the KV cache in that dtype: a bfloat16
//! checkpoint takes twice its download on the CPU. Quantized weights stay packed. Activations
//! and the runtime are left out: at the context lengths people pick they are small next to
//! these two, and the verdict thresholds leave room for them. For a downloaded folder,
//! cortex_engine::memory::estimate reads the safetensors headers for the exact weight bytes.
use serde::Serialize;
use serde_json::Value;

pub use cortex_engine::memory::{float_bytes_here, kv_bytes_per_token};

/// Fits when the estimate is at most this share of total memory: macOS lets the GPU wire about
/// 75% of RAM by default, and the OS and other apps need the rest.
const FITS_SHARE: f64 = 0.75;
/// Tight up to this share: it may run, with swapping or after closing other apps.
const TIGHT_SHARE: f64 = 0.95;

/// The bytes safetensors weight files of `file_bytes` take once loaded here, from config.json:
/// floats move from the checkpoint's dtype to this device's compute dtype; quantized weights
/// (an MLX "quantization" block) stay packed and only their per-group scale and bias change
/// size. Without a stated checkpoint dtype the file size is taken as it is.
pub fn weights_in_memory(file_bytes: u64, config: &Value) -> u64 {
    let Some(dtype) = cortex_engine::config::checkpoint_dtype(config) else {
        return file_bytes;
    };
    let saved = dtype.size_bytes() as f64;
    let here = float_bytes_here(Some(dtype)) as f64;
    let quant = config
        .get("quantization")
        .or_else(|| config.get("quantization_config"));
    let int = |q: &Value, k: &str| q.get(k).and_then(Value::as_u64).filter(|&v| v > 0);
    let ratio = match quant.and_then(|q| Some((int(q, "bits")?, int(q, "group_size")?))) {
        // per weight: bits/8 packed bytes plus a scale and a bias per group
        Some((bits, group)) => {
            let (bits, group) = (bits as f64, group as f64);
            (bits / 8.0 + 2.0 * here / group) / (bits / 8.0 + 2.0 * saved / group)
        }
        None => here / saved,
    };
    (file_bytes as f64 * ratio).round() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    Fits,
    Tight,
    TooBig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub context: u64,
    pub weights_bytes: u64,
    /// None when config.json does not say the attention shape.
    pub kv_bytes_per_token: Option<u64>,
    pub kv_bytes: u64,
    pub total_bytes: u64,
    /// This machine's total memory, when it could be read.
    pub system_bytes: Option<u64>,
    pub fit: Option<Fit>,
}

pub fn estimate_memory(
    weights_bytes: u64,
    kv_bytes_per_token: Option<u64>,
    context: u64,
    system_bytes: Option<u64>,
) -> MemoryEstimate {
    let kv_bytes = kv_bytes_per_token.unwrap_or(0).saturating_mul(context);
    let total_bytes = weights_bytes.saturating_add(kv_bytes);
    let fit = system_bytes.map(|sys| {
        let share = total_bytes as f64 / sys.max(1) as f64;
        if share <= FITS_SHARE {
            Fit::Fits
        } else if share <= TIGHT_SHARE {
            Fit::Tight
        } else {
            Fit::TooBig
        }
    });
    MemoryEstimate {
        context,
        weights_bytes,
        kv_bytes_per_token,
        kv_bytes,
        total_bytes,
        system_bytes,
        fit,
    }
}

pub use cortex_engine::device::system_memory;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weights_follow_the_compute_dtype() {
        let here = float_bytes_here(None);
        let bf16 = json!({"torch_dtype": "bfloat16"});
        assert_eq!(weights_in_memory(1000, &bf16), 1000 * here / 2);
        let f32 = json!({"torch_dtype": "float32"});
        assert_eq!(
            weights_in_memory(1000, &f32),
            1000 * float_bytes_here(Some(cortex_mlx::Dtype::Float32)) / 4
        );
        assert_eq!(
            weights_in_memory(1000, &json!({})),
            1000,
            "no dtype: as downloaded"
        );
        // 4-bit, group 64, bfloat16 scales: 0.5 + 4/64 bytes per weight in the file
        let q = json!({"torch_dtype": "bfloat16", "quantization": {"bits": 4, "group_size": 64}});
        let want = (0.5 + 2.0 * here as f64 / 64.0) / (0.5 + 4.0 / 64.0);
        assert_eq!(
            weights_in_memory(1_000_000, &q),
            (1e6 * want).round() as u64
        );
    }

    #[test]
    fn verdicts() {
        let e = estimate_memory(500, Some(10), 20, Some(1000));
        assert_eq!(
            (e.kv_bytes, e.total_bytes, e.fit),
            (200, 700, Some(Fit::Fits))
        );
        assert_eq!(
            estimate_memory(900, None, 5, Some(1000)).fit,
            Some(Fit::Tight)
        );
        assert_eq!(
            estimate_memory(990, None, 5, Some(1000)).fit,
            Some(Fit::TooBig)
        );
        assert_eq!(estimate_memory(1, None, 5, None).fit, None);
    }
}
