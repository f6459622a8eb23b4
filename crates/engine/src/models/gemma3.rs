//! Gemma 3 text decoders (model_type "gemma3_text", and the language model of the multimodal
//! "gemma3" checkpoints, whose vision tower is dropped): the Gemma 2 layer (norms after
//! attention and around the MLP, (1 + w) RMSNorm scales, tanh-GELU MLP) with per-head q/k
//! RMSNorm instead of soft-capping, and local sliding-window layers interleaved with global
//! ones: every `sliding_window_pattern`-th layer is global and uses rope_theta with the
//! configured scaling, the others rope_local_base_freq unscaled.
//!
//! The cache keeps every position on every layer; local layers slice and mask it to their
//! window, which gives what mlx-lm's rotating window cache gives.
use super::{Model, ModelInfo};
use crate::cache::KvCache;
use crate::config::{RawConfig, RopeScaling};
use crate::error::{EngineError, Result};
use crate::nn::{
    self, Activation, AttentionDims, AttentionOptions, Embedding, GatedMlp, Linear, RmsNorm,
    RotaryEmbedding, SelfAttention,
};
use crate::weights::Weights;
use cortex_mlx::{Array, Dtype};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    pub hidden_size: i32,
    pub num_hidden_layers: usize,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    pub rope_theta: f32,
    pub rope_local_base_freq: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub query_pre_attn_scalar: f32,
    pub sliding_window: i32,
    /// Every n-th layer is global. Newer configs give `layer_types` instead.
    pub sliding_window_pattern: Option<usize>,
    pub layer_types: Option<Vec<String>>,
}

/// mlx-lm's defaults (Gemma 3 1B's shapes).
impl Default for Config {
    fn default() -> Self {
        Config {
            hidden_size: 1152,
            num_hidden_layers: 26,
            intermediate_size: 6912,
            num_attention_heads: 4,
            num_key_value_heads: 1,
            head_dim: 256,
            rms_norm_eps: 1e-6,
            vocab_size: 262144,
            rope_theta: 1_000_000.0,
            rope_local_base_freq: 10_000.0,
            rope_scaling: None,
            query_pre_attn_scalar: 256.0,
            sliding_window: 512,
            sliding_window_pattern: None,
            layer_types: None,
        }
    }
}

impl Config {
    /// The text config: the file itself for "gemma3_text"; for "gemma3" its "text_config",
    /// with the outer vocab size and the multimodal defaults for head counts (as mlx-lm).
    fn read(raw: &RawConfig) -> Result<Config> {
        if raw.model_type()? != "gemma3" {
            return raw.parse();
        }
        let mut text =
            raw.value
                .get("text_config")
                .cloned()
                .ok_or_else(|| EngineError::Config {
                    path: raw.path.clone(),
                    detail: "model_type gemma3 needs a \"text_config\" object".into(),
                })?;
        let obj = text.as_object_mut().ok_or_else(|| EngineError::Config {
            path: raw.path.clone(),
            detail: "\"text_config\" must be an object".into(),
        })?;
        let vocab = raw
            .value
            .get("vocab_size")
            .cloned()
            .unwrap_or(262208.into());
        obj.insert("vocab_size".into(), vocab);
        obj.entry("num_attention_heads").or_insert(8.into());
        obj.entry("num_key_value_heads").or_insert(4.into());
        RawConfig {
            path: raw.path.clone(),
            value: text,
        }
        .parse()
    }

    fn dims(&self) -> AttentionDims {
        AttentionDims {
            n_heads: self.num_attention_heads,
            n_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
        }
    }

    fn is_global(&self, layer: usize) -> bool {
        match (self.sliding_window_pattern, &self.layer_types) {
            (Some(p), _) => p > 0 && layer % p == p - 1,
            (None, Some(types)) => types.get(layer).is_some_and(|t| t == "full_attention"),
            (None, None) => layer % 6 == 5,
        }
    }
}

struct Block {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    attn: SelfAttention,
    mlp: GatedMlp,
    global: bool,
}

pub struct Gemma3 {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rope_global: RotaryEmbedding,
    rope_local: RotaryEmbedding,
    dims: AttentionDims,
    hidden_size: i32,
    vocab_size: i32,
    kv_stored: Dtype,
}

pub fn build(raw: &RawConfig, mut w: Weights) -> Result<Box<dyn Model>> {
    let c = Config::read(raw)?;
    sanitize(&mut w);
    let d = c.dims();
    let h = c.hidden_size;
    d.check(h, &raw.path)?;
    let norm = |name: &str, dim| w.rms_norm(name, dim, c.rms_norm_eps)?.offset_by_one();
    let mut layers = Vec::new();
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let global = c.is_global(i);
        let mut attn = SelfAttention::load(&w, &format!("{p}.self_attn"), h, d, false, false)?;
        attn.q_norm = Some(norm(&format!("{p}.self_attn.q_norm"), d.head_dim)?);
        attn.k_norm = Some(norm(&format!("{p}.self_attn.k_norm"), d.head_dim)?);
        attn.scale = c.query_pre_attn_scalar.powf(-0.5);
        attn.options = AttentionOptions {
            window: (!global).then_some(c.sliding_window),
            softcap: None,
        };
        layers.push(Block {
            input_layernorm: norm(&format!("{p}.input_layernorm"), h)?,
            post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm"), h)?,
            pre_feedforward_layernorm: norm(&format!("{p}.pre_feedforward_layernorm"), h)?,
            post_feedforward_layernorm: norm(&format!("{p}.post_feedforward_layernorm"), h)?,
            attn,
            mlp: GatedMlp::load(
                &w,
                &format!("{p}.mlp"),
                h,
                c.intermediate_size,
                Activation::GeluApprox,
                false,
            )?,
            global,
        });
    }
    Ok(Box::new(Gemma3 {
        embed_tokens: w.embedding("model.embed_tokens", c.vocab_size, h)?,
        layers,
        norm: norm("model.norm", h)?,
        // Untied only when the checkpoint really has a head (mlx-lm ignores the config flag).
        lm_head: nn::load_lm_head(&w, None, h, c.vocab_size)?,
        rope_global: RotaryEmbedding::new(
            d.head_dim,
            c.rope_theta,
            false,
            c.rope_scaling.as_ref(),
        )?,
        rope_local: RotaryEmbedding::new(d.head_dim, c.rope_local_base_freq, false, None)?,
        dims: d,
        hidden_size: h,
        vocab_size: c.vocab_size,
        kv_stored: crate::compute::kv_dtype(w.dtype()),
    }))
}

/// Checkpoint key fixes: the multimodal layouts ("language_model.model.*" from mlx-lm and
/// older transformers, "model.language_model.*" from newer ones) become the text layout,
/// the vision tower and projector are dropped, and stored rotary tables are recomputed.
fn sanitize(w: &mut Weights) {
    w.rename(|k| {
        let k = k.strip_prefix("language_model.").unwrap_or(k);
        let k = match k.strip_prefix("model.language_model.") {
            Some(rest) => format!("model.{rest}"),
            None => k.to_string(),
        };
        let vision =
            k.starts_with("model.vision_tower.") || k.starts_with("model.multi_modal_projector.");
        let text = (k.starts_with("model.") && !vision) || k.starts_with("lm_head.");
        (text && !k.contains("rotary_emb.inv_freq")).then_some(k)
    });
}

/// x + y, computed in float32 and clipped to the float16 range when activations are
/// float16 (Gemma 3's activations overflow it otherwise), as mlx-lm does.
fn residual(x: &Array, y: &Array) -> Result<Array> {
    if x.dtype() != Dtype::Float16 {
        return Ok(x.add(y)?);
    }
    let bound = 65504.0;
    let sum = x.astype(Dtype::Float32)?.add(&y.astype(Dtype::Float32)?)?;
    Ok(sum.clip(-bound, bound)?.astype(Dtype::Float16)?)
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
        let h = residual(x, &self.post_attention_layernorm.forward(&a)?)?;
        let m = self
            .mlp
            .forward(&self.pre_feedforward_layernorm.forward(&h)?)?;
        residual(&h, &self.post_feedforward_layernorm.forward(&m)?)
    }
}

impl Model for Gemma3 {
    fn forward(&self, tokens: &Array, cache: &mut dyn KvCache) -> Result<Array> {
        let h = self.embed_tokens.forward(tokens)?;
        // sqrt(hidden) rounded to bfloat16 first, as the reference implementation does.
        let scale = Array::full(&[], (self.hidden_size as f64).sqrt(), Dtype::Bfloat16)?
            .astype(h.dtype())?;
        let mut h = h.multiply(&scale)?;
        for (i, b) in self.layers.iter().enumerate() {
            let rope = if b.global {
                &self.rope_global
            } else {
                &self.rope_local
            };
            h = b.forward(&h, rope, i, cache)?;
        }
        nn::lm_logits(
            &self.norm.forward(&nn::logit_rows(&h, cache)?)?,
            self.lm_head.as_ref(),
            &self.embed_tokens,
        )
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
