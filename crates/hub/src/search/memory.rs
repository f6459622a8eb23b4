//! How much memory a model needs at a context length, and whether this machine has it.
//!
//! needed = weights (the bytes of the weight files, which is what gets mapped into memory)
//!        + KV cache (2 [K and V] * layers * kv_heads * head_dim * bytes per element * tokens).
//! Activations and the runtime are left out: at the context lengths people pick they are small
//! next to these two, and the verdict thresholds leave room for them.
use serde::Serialize;
use serde_json::Value;

/// Bytes per cached K/V element: the engine keeps the cache in the compute dtype, which on a
/// GPU is bfloat16/float16 (see cortex_engine::device).
pub const KV_ELEMENT_BYTES: u64 = 2;

/// Fits when the estimate is at most this share of total memory: macOS lets the GPU wire about
/// 75% of RAM by default, and the OS and other apps need the rest.
const FITS_SHARE: f64 = 0.75;
/// Tight up to this share: it may run, with swapping or after closing other apps.
const TIGHT_SHARE: f64 = 0.95;

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

/// K+V bytes per token from a Hugging Face config.json (multimodal configs: its `text_config`).
pub fn kv_bytes_per_token(config: &Value, element_bytes: u64) -> Option<u64> {
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
    Some(2 * layers * kv_heads * head_dim * element_bytes)
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
    fn kv_shapes() {
        // GQA with explicit head_dim.
        let c = json!({"num_hidden_layers": 32, "num_attention_heads": 32,
                       "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 4096});
        assert_eq!(kv_bytes_per_token(&c, 2), Some(2 * 32 * 8 * 128 * 2));
        // MHA, head_dim from hidden / heads.
        let c = json!({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64});
        assert_eq!(kv_bytes_per_token(&c, 2), Some(2 * 2 * 4 * 16 * 2));
        let c = json!({"text_config": {"num_hidden_layers": 1, "num_attention_heads": 2,
                                       "head_dim": 8}});
        assert_eq!(kv_bytes_per_token(&c, 4), Some(2 * 2 * 8 * 4));
        assert_eq!(kv_bytes_per_token(&json!({"model_type": "x"}), 2), None);
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
