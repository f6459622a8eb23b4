//! Gemma 2 (and Gemma 1, model_type "gemma", the same decoder without the extras):
//! embeddings scaled by sqrt(hidden), RMSNorm scales stored as offsets from one, GELU-gated
//! MLP, always-tied head. Gemma 2 adds norms after attention and around the MLP, queries
//! scaled by query_pre_attn_scalar^-0.5, soft-capped attention scores and final logits, and
//! sliding-window attention on alternate layers.
//!
//! mlx-lm's gemma2 attends over every cached key on all layers; we honour the window as
//! Hugging Face does. Both agree until a sequence outgrows the window (4096 tokens in the
//! released models). Gemma 1's MLP uses exact GELU, as mlx-lm runs it.
use super::{Model, ModelInfo};
use crate::cache::KvCache;
use crate::config::RawConfig;
use crate::error::Result;
use crate::nn::{
    self, Activation, AttentionDims, AttentionOptions, Embedding, GatedMlp, RmsNorm,
    RotaryEmbedding, SelfAttention,
};
use crate::weights::Weights;
use cortex_mlx::{Array, Dtype};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    pub model_type: String,
    pub hidden_size: i32,
    pub num_hidden_layers: usize,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: Option<i32>,
    pub head_dim: i32,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default)]
    pub rope_traditional: bool,
    /// Gemma 2 only; null turns capping off.
    #[serde(default = "default_attn_cap")]
    pub attn_logit_softcapping: Option<f32>,
    #[serde(default = "default_final_cap")]
    pub final_logit_softcapping: Option<f32>,
    #[serde(default = "default_query_scalar")]
    pub query_pre_attn_scalar: f32,
    pub sliding_window: Option<i32>,
    /// "sliding_attention" / "full_attention" per layer; without it even layers slide.
    pub layer_types: Option<Vec<String>>,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    10000.0
}
fn default_attn_cap() -> Option<f32> {
    Some(50.0)
}
fn default_final_cap() -> Option<f32> {
    Some(30.0)
}
fn default_query_scalar() -> f32 {
    144.0
}

impl Config {
    fn is_gemma2(&self) -> bool {
        self.model_type != "gemma"
    }

    fn dims(&self) -> AttentionDims {
        let n_heads = self.num_attention_heads;
        AttentionDims {
            n_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(n_heads),
            head_dim: self.head_dim,
        }
    }

    fn is_sliding(&self, layer: usize) -> bool {
        match &self.layer_types {
            Some(types) => types.get(layer).is_some_and(|t| t == "sliding_attention"),
            None => layer & 1 == 0,
        }
    }

    fn attention_options(&self, layer: usize) -> AttentionOptions {
        if !self.is_gemma2() {
            return AttentionOptions::default();
        }
        AttentionOptions {
            window: self.sliding_window.filter(|_| self.is_sliding(layer)),
            softcap: self.attn_logit_softcapping,
        }
    }
}

/// Gemma 2's norms around the MLP (Gemma 1 feeds the MLP through post_attention_layernorm).
struct MlpNorms {
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
}

struct Block {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    mlp_norms: Option<MlpNorms>,
    attn: SelfAttention,
    mlp: GatedMlp,
}

pub struct Gemma2 {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    rope: RotaryEmbedding,
    dims: AttentionDims,
    embed_scale: f64,
    final_logit_softcapping: Option<f32>,
    vocab_size: i32,
    kv_stored: Dtype,
}

pub fn build(raw: &RawConfig, mut w: Weights) -> Result<Box<dyn Model>> {
    let c: Config = raw.parse()?;
    sanitize(&mut w);
    let d = c.dims();
    let h = c.hidden_size;
    d.check(h, &raw.path)?;
    let norm = |name: &str| w.rms_norm(name, h, c.rms_norm_eps)?.offset_by_one();
    let act = if c.is_gemma2() {
        Activation::GeluApprox
    } else {
        Activation::Gelu
    };
    let mut layers = Vec::new();
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut attn = SelfAttention::load(&w, &format!("{p}.self_attn"), h, d, false, false)?;
        if c.is_gemma2() {
            attn.scale = c.query_pre_attn_scalar.powf(-0.5);
        }
        attn.options = c.attention_options(i);
        let mlp_norms = if c.is_gemma2() {
            Some(MlpNorms {
                pre_feedforward_layernorm: norm(&format!("{p}.pre_feedforward_layernorm"))?,
                post_feedforward_layernorm: norm(&format!("{p}.post_feedforward_layernorm"))?,
            })
        } else {
            None
        };
        layers.push(Block {
            input_layernorm: norm(&format!("{p}.input_layernorm"))?,
            post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm"))?,
            mlp_norms,
            attn,
            mlp: GatedMlp::load(&w, &format!("{p}.mlp"), h, c.intermediate_size, act, false)?,
        });
    }
    Ok(Box::new(Gemma2 {
        embed_tokens: w.embedding("model.embed_tokens", c.vocab_size, h)?,
        layers,
        norm: norm("model.norm")?,
        rope: RotaryEmbedding::new(d.head_dim, c.rope_theta, c.rope_traditional, None)?,
        dims: d,
        embed_scale: (h as f64).sqrt(),
        final_logit_softcapping: c.final_logit_softcapping.filter(|_| c.is_gemma2()),
        vocab_size: c.vocab_size,
        kv_stored: crate::compute::kv_dtype(w.dtype()),
    }))
}

/// Checkpoint key fixes: the head is always the embedding (a stored copy is dropped), and
/// rotary tables some exports carry are recomputed.
fn sanitize(w: &mut Weights) {
    w.rename(|k| {
        if k.starts_with("lm_head.") || k.contains("rotary_emb.inv_freq") {
            None
        } else {
            Some(k.to_string())
        }
    });
}

impl Block {
    fn forward(
        &self,
        x: &Array,
        rope: &RotaryEmbedding,
        layer: usize,
        cache: &mut dyn KvCache,
    ) -> Result<Array> {
        let a = self
            .attn
            .forward(&self.input_layernorm.forward(x)?, rope, layer, cache)?;
        match &self.mlp_norms {
            Some(n) => {
                let h = x.add(&self.post_attention_layernorm.forward(&a)?)?;
                let m = self
                    .mlp
                    .forward(&n.pre_feedforward_layernorm.forward(&h)?)?;
                Ok(h.add(&n.post_feedforward_layernorm.forward(&m)?)?)
            }
            None => {
                let h = x.add(&a)?;
                let m = self
                    .mlp
                    .forward(&self.post_attention_layernorm.forward(&h)?)?;
                Ok(h.add(&m)?)
            }
        }
    }
}

impl Model for Gemma2 {
    fn forward(&self, tokens: &Array, cache: &mut dyn KvCache) -> Result<Array> {
        let mut h = self
            .embed_tokens
            .forward(tokens)?
            .mul_scalar(self.embed_scale)?;
        for (i, b) in self.layers.iter().enumerate() {
            h = b.forward(&h, &self.rope, i, cache)?;
        }
        let logits = self
            .embed_tokens
            .as_linear(&self.norm.forward(&nn::logit_rows(&h, cache)?)?)?;
        match self.final_logit_softcapping {
            Some(cap) => nn::softcap(&logits, cap),
            None => Ok(logits),
        }
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            num_layers: self.layers.len(),
            vocab_size: self.vocab_size,
            kv_bytes_per_token: self
                .dims
                .kv_bytes_per_token(self.layers.len(), self.kv_stored),
        }
    }
}
