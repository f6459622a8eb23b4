//! Llama 2/3.x (and Mistral, SmolLM as aliases): pre-norm decoder, GQA attention with RoPE
//! (optionally llama3-scaled), SwiGLU MLP, tied or untied output head.
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
    pub head_dim: Option<i32>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default)]
    pub rope_traditional: bool,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    10000.0
}

pub fn build(raw: &RawConfig, mut w: Weights) -> Result<Box<dyn Model>> {
    let c: Config = raw.parse()?;
    decoder::drop_rotary_tables(&mut w);
    let n_heads = c.num_attention_heads;
    let dims = AttentionDims {
        n_heads,
        n_kv_heads: c.num_key_value_heads.unwrap_or(n_heads),
        head_dim: c
            .head_dim
            .unwrap_or(AttentionDims::derived_head_dim(c.hidden_size, n_heads)),
    };
    dims.check(c.hidden_size, &raw.path)?;
    let rope = RotaryEmbedding::new(
        dims.head_dim,
        c.rope_theta,
        c.rope_traditional,
        c.rope_scaling.as_ref(),
    )?;
    // An untied config without a head in the checkpoint still ties (load_lm_head decides).
    let spec = DecoderSpec {
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        intermediate: c.intermediate_size,
        vocab: c.vocab_size,
        eps: c.rms_norm_eps,
        dims,
        qkv_bias: c.attention_bias,
        o_bias: c.attention_bias,
        mlp_bias: c.mlp_bias,
        qk_norm: false,
        fused: false,
        tie_word_embeddings: c.tie_word_embeddings,
        rope,
    };
    decoder::build(&w, spec)
}
