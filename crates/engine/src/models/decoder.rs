//! The pre-norm decoder shared by Llama, Qwen2 and Qwen3: embed -> N x (RMSNorm, GQA attention
//! with RoPE, residual, RMSNorm, SwiGLU MLP, residual) -> RMSNorm -> tied or untied head.
//! Each architecture file keeps its own Config (Hugging Face names and defaults) and maps it to
//! a [`DecoderSpec`]; this file holds the one implementation of the layers.
use super::{Model, ModelInfo};
use crate::cache::KvCache;
use crate::error::Result;
use crate::nn::{
    self, Activation, AttentionDims, Embedding, GatedMlp, Linear, RmsNorm, RotaryEmbedding,
    SelfAttention,
};
use crate::weights::Weights;
use cortex_mlx::{Array, Dtype};

/// What differs between the decoders that share this layout.
pub struct DecoderSpec {
    pub hidden: i32,
    pub layers: usize,
    pub intermediate: i32,
    pub vocab: i32,
    pub eps: f32,
    pub dims: AttentionDims,
    /// Biases on q/k/v (Qwen2; Llama's attention_bias).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama's attention_bias).
    pub o_bias: bool,
    /// Biases on the MLP projections (Llama's mlp_bias).
    pub mlp_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    /// One qkv_proj and one gate_up_proj matrix instead of three and two (Phi-3).
    pub fused: bool,
    pub tie_word_embeddings: Option<bool>,
    pub rope: RotaryEmbedding,
}

struct Block {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    attn: SelfAttention,
    mlp: GatedMlp,
}

pub struct Decoder {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rope: RotaryEmbedding,
    dims: AttentionDims,
    vocab_size: i32,
    kv_stored: Dtype,
}

/// Drops rotary tables some exports carry: they are recomputed, not loaded.
pub fn drop_rotary_tables(w: &mut Weights) {
    w.rename(|k| {
        if k.contains("rotary_emb.inv_freq") {
            None
        } else {
            Some(k.to_string())
        }
    });
}

fn load_block(w: &Weights, s: &DecoderSpec, i: usize) -> Result<Block> {
    let p = format!("model.layers.{i}");
    let (h, d) = (s.hidden, s.dims);
    let mut attn = SelfAttention::load(w, &format!("{p}.self_attn"), h, d, s.qkv_bias, s.fused)?;
    if s.o_bias {
        attn.o_proj = w.linear(
            &format!("{p}.self_attn.o_proj"),
            d.n_heads * d.head_dim,
            h,
            true,
        )?;
    }
    if s.qk_norm {
        attn.q_norm = Some(w.rms_norm(&format!("{p}.self_attn.q_norm"), d.head_dim, s.eps)?);
        attn.k_norm = Some(w.rms_norm(&format!("{p}.self_attn.k_norm"), d.head_dim, s.eps)?);
    }
    let mut mlp = GatedMlp::load(
        w,
        &format!("{p}.mlp"),
        h,
        s.intermediate,
        Activation::Silu,
        s.fused,
    )?;
    if s.mlp_bias {
        let lin = |n: &str, i, o| w.linear(&format!("{p}.mlp.{n}"), i, o, true);
        mlp.gate_up = nn::GateUpProj::Separate {
            gate_proj: lin("gate_proj", h, s.intermediate)?,
            up_proj: lin("up_proj", h, s.intermediate)?,
        };
        mlp.down_proj = lin("down_proj", s.intermediate, h)?;
    }
    Ok(Block {
        input_layernorm: w.rms_norm(&format!("{p}.input_layernorm"), h, s.eps)?,
        post_attention_layernorm: w.rms_norm(&format!("{p}.post_attention_layernorm"), h, s.eps)?,
        attn,
        mlp,
    })
}

pub fn build(w: &Weights, s: DecoderSpec) -> Result<Box<dyn Model>> {
    let layers = (0..s.layers)
        .map(|i| load_block(w, &s, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Decoder {
        embed_tokens: w.embedding("model.embed_tokens", s.vocab, s.hidden)?,
        layers,
        norm: w.rms_norm("model.norm", s.hidden, s.eps)?,
        lm_head: nn::load_lm_head(w, s.tie_word_embeddings, s.hidden, s.vocab)?,
        rope: s.rope,
        dims: s.dims,
        vocab_size: s.vocab,
        kv_stored: crate::compute::kv_dtype(w.dtype()),
    }))
}

impl Model for Decoder {
    fn forward(&self, tokens: &Array, cache: &mut dyn KvCache) -> Result<Array> {
        let mut h = self.embed_tokens.forward(tokens)?;
        // Each residual add goes with the norm after it (one node on the CPU path): the MLP's
        // output is added at the next layer's input norm, the last one before the final norm.
        let mut pending: Option<Array> = None;
        let add_norm = |h: &Array, pending: Option<Array>, norm: &RmsNorm| match pending {
            Some(r) => norm.forward_residual(h, &r),
            None => Ok((h.clone(), norm.forward(h)?)),
        };
        for (i, b) in self.layers.iter().enumerate() {
            let (sum, x) = add_norm(&h, pending.take(), &b.input_layernorm)?;
            let a = b.attn.forward(&x, &self.rope, i, cache)?;
            let (sum, x) = b.post_attention_layernorm.forward_residual(&sum, &a)?;
            h = sum;
            pending = Some(b.mlp.forward(&x)?);
        }
        let h = nn::logit_rows(&h, cache)?;
        let x = match pending {
            Some(m) => {
                self.norm
                    .forward_residual(&h, &nn::logit_rows(&m, cache)?)?
                    .1
            }
            None => self.norm.forward(&h)?,
        };
        nn::lm_logits(&x, self.lm_head.as_ref(), &self.embed_tokens)
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
