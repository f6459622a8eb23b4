//! Qwen2 and Qwen2.5: the Llama layout with biases on the q/k/v projections (none on o_proj),
//! head_dim always hidden/heads, and usually tied embeddings. The config's sliding window is
//! ignored, as mlx-lm and Hugging Face (use_sliding_window is false in every release) do.
use super::decoder::{self, DecoderSpec};
use super::Model;
use crate::config::{RawConfig, RopeScaling};
use crate::error::Result;
use crate::nn::{AttentionDims, RotaryEmbedding};
use crate::weights::Weights;
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
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_tied")]
    pub tie_word_embeddings: bool,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    1_000_000.0
}
fn default_tied() -> bool {
    true
}

pub fn build(raw: &RawConfig, mut w: Weights) -> Result<Box<dyn Model>> {
    let c: Config = raw.parse()?;
    decoder::drop_rotary_tables(&mut w);
    let n_heads = c.num_attention_heads;
    let dims = AttentionDims {
        n_heads,
        n_kv_heads: c.num_key_value_heads.unwrap_or(n_heads),
        head_dim: AttentionDims::derived_head_dim(c.hidden_size, n_heads),
    };
    dims.check(c.hidden_size, &raw.path)?;
    let spec = DecoderSpec {
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        intermediate: c.intermediate_size,
        vocab: c.vocab_size,
        eps: c.rms_norm_eps,
        dims,
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        fused: false,
        tie_word_embeddings: Some(c.tie_word_embeddings),
        rope: RotaryEmbedding::new(
            dims.head_dim,
            c.rope_theta,
            c.rope_traditional,
            c.rope_scaling.as_ref(),
        )?,
    };
    decoder::build(&w, spec)
}
