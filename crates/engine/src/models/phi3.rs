//! Phi-3 / Phi-3.5 / Phi-4-mini: the Llama layout with fused projections (qkv_proj,
//! gate_up_proj; each split after its single matmul), head_dim = hidden/heads, an untied
//! head by default, partial rotary dims, and long-context RoPE ("su"/"longrope": an explicit
//! frequency table plus an input scale). Like mlx-lm, the long factors are always used and
//! the config's sliding window is ignored.
use super::decoder::{self, DecoderSpec};
use super::Model;
use crate::config::{RawConfig, RopeScaling};
use crate::error::{EngineError, Result};
use crate::nn::{AttentionDims, RotaryEmbedding};
use crate::weights::Weights;
use cortex_mlx::Array;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    pub hidden_size: i32,
    pub num_hidden_layers: usize,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: Option<i32>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default)]
    pub rope_traditional: bool,
    pub rope_scaling: Option<Phi3RopeScaling>,
    #[serde(default = "default_partial_rotary")]
    pub partial_rotary_factor: f32,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: f32,
    #[serde(default = "default_original_max_positions")]
    pub original_max_position_embeddings: f32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

/// rope_scaling with Phi-3's per-frequency factor lists.
#[derive(Clone, Debug, Deserialize)]
pub struct Phi3RopeScaling {
    #[serde(flatten)]
    pub common: RopeScaling,
    pub short_factor: Option<Factors>,
    pub long_factor: Option<Factors>,
}

/// One factor per rotated frequency, or one for all of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Factors {
    One(f32),
    PerFrequency(Vec<f32>),
}

fn default_eps() -> f32 {
    1e-5
}
fn default_theta() -> f32 {
    10000.0
}
fn default_partial_rotary() -> f32 {
    1.0
}
fn default_max_positions() -> f32 {
    131072.0
}
fn default_original_max_positions() -> f32 {
    4096.0
}

impl Config {
    fn dims(&self) -> AttentionDims {
        let n_heads = self.num_attention_heads;
        AttentionDims {
            n_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(n_heads),
            head_dim: AttentionDims::derived_head_dim(self.hidden_size, n_heads),
        }
    }

    /// Only "longrope"/"su" and "linear" scaling are honoured; any other type runs unscaled.
    fn rope(&self, raw: &RawConfig) -> Result<RotaryEmbedding> {
        let dims = (self.dims().head_dim as f32 * self.partial_rotary_factor) as i32;
        let Some(s) = &self.rope_scaling else {
            return RotaryEmbedding::new(dims, self.rope_theta, self.rope_traditional, None);
        };
        match s.common.rope_type.as_deref() {
            Some("longrope" | "su") => {
                let long = s.long_factor.as_ref().ok_or_else(|| EngineError::Config {
                    path: raw.path.clone(),
                    detail: "rope_scaling of type longrope needs long_factor".into(),
                })?;
                self.long_rope(dims, long, raw)
            }
            Some("linear") => RotaryEmbedding::new(
                dims,
                self.rope_theta,
                self.rope_traditional,
                Some(&s.common),
            ),
            _ => RotaryEmbedding::new(dims, self.rope_theta, self.rope_traditional, None),
        }
    }

    /// Inverse frequencies base^(2i/dims) stretched by the long factors; inputs scaled by
    /// sqrt(1 + ln(ctx/orig) / ln(orig)) when the context was extended.
    fn long_rope(&self, dims: i32, long: &Factors, raw: &RawConfig) -> Result<RotaryEmbedding> {
        let half = (dims / 2) as usize;
        let factor = |i: usize| match long {
            Factors::One(f) => Some(*f),
            Factors::PerFrequency(v) => v.get(i).copied(),
        };
        let freqs = (0..half)
            .map(|i| factor(i).map(|f| f * self.rope_theta.powf((2 * i) as f32 / dims as f32)))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| EngineError::Config {
                path: raw.path.clone(),
                detail: format!("rope_scaling.long_factor must have {half} entries"),
            })?;
        let orig = self.original_max_position_embeddings;
        let ratio = self.max_position_embeddings / orig;
        let scale = if ratio <= 1.0 {
            1.0
        } else {
            (1.0 + ratio.ln() / orig.ln()).sqrt()
        };
        RotaryEmbedding::with_freqs(
            dims,
            false,
            Array::from_slice(&freqs, &[half as i32])?,
            scale,
        )
    }
}

pub fn build(raw: &RawConfig, mut w: Weights) -> Result<Box<dyn Model>> {
    let c: Config = raw.parse()?;
    decoder::drop_rotary_tables(&mut w);
    let dims = c.dims();
    dims.check(c.hidden_size, &raw.path)?;
    let spec = DecoderSpec {
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        intermediate: c.intermediate_size,
        vocab: c.vocab_size,
        eps: c.rms_norm_eps,
        dims,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        fused: true,
        tie_word_embeddings: Some(c.tie_word_embeddings),
        rope: c.rope(raw)?,
    };
    decoder::build(&w, spec)
}
