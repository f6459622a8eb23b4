//! Qwen3 (dense): the Qwen2 layout without q/k/v biases, with head_dim from the config and a
//! per-head RMSNorm on queries and keys before RoPE (q_norm, k_norm).
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
    pub rope_theta: Option<f32>,
    pub rope_scaling: Option<RopeScaling>,
    /// transformers >= 5 nests rope_theta and the scaling here.
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default = "default_tied")]
    pub tie_word_embeddings: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: Option<f32>,
    #[serde(flatten)]
    pub scaling: RopeScaling,
}

fn default_eps() -> f32 {
    1e-6
}
/// Hugging Face's Qwen3Config default.
const DEFAULT_THETA: f32 = 10_000.0;
fn default_tied() -> bool {
    true
}

impl Config {
    fn dims(&self) -> AttentionDims {
        let n_heads = self.num_attention_heads;
        AttentionDims {
            n_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(n_heads),
            head_dim: self
                .head_dim
                .unwrap_or(AttentionDims::derived_head_dim(self.hidden_size, n_heads)),
        }
    }

    fn rope_theta(&self) -> f32 {
        let nested = self.rope_parameters.as_ref().and_then(|p| p.rope_theta);
        self.rope_theta.or(nested).unwrap_or(DEFAULT_THETA)
    }

    fn rope_scaling(&self) -> Option<&RopeScaling> {
        self.rope_scaling
            .as_ref()
            .or(self.rope_parameters.as_ref().map(|p| &p.scaling))
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
        qk_norm: true,
        fused: false,
        tie_word_embeddings: Some(c.tie_word_embeddings),
        rope: RotaryEmbedding::new(dims.head_dim, c.rope_theta(), false, c.rope_scaling())?,
    };
    decoder::build(&w, spec)
}
