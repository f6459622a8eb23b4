//! MLX's fused kernels for transformer layers: RMSNorm, LayerNorm, RoPE and attention.
use crate::array::{wrap, Array};
use crate::error::Result;
use crate::ffi::bridge;
use crate::ops::opt_ptr;

pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    // Safety: the pointer is null or borrows an Array alive for the call.
    wrap("rms_norm", unsafe {
        bridge::rms_norm(&x.0, opt_ptr(weight), eps)
    })
}

pub fn layer_norm(
    x: &Array,
    weight: Option<&Array>,
    bias: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    // Safety: as above.
    wrap("layer_norm", unsafe {
        bridge::layer_norm(&x.0, opt_ptr(weight), opt_ptr(bias), eps)
    })
}

/// Rotary embedding over the last axis of `x` ([.., seq, head_dim]) for positions
/// `offset..offset+seq`. Either `base` or explicit inverse `freqs` (e.g. llama3 scaling).
pub struct Rope<'a> {
    pub dims: i32,
    pub traditional: bool,
    pub base: Option<f32>,
    pub scale: f32,
    pub freqs: Option<&'a Array>,
}

pub fn rope(x: &Array, p: &Rope<'_>, offset: i32) -> Result<Array> {
    // Safety: as above.
    wrap("rope", unsafe {
        bridge::rope(
            &x.0,
            p.dims,
            p.traditional,
            p.base.unwrap_or(0.0),
            p.base.is_some(),
            p.scale,
            offset,
            opt_ptr(p.freqs),
        )
    })
}

/// RoPE with one position offset per batch element: x [B, H, L, D], offsets int32 [B].
pub fn rope_offsets(x: &Array, p: &Rope<'_>, offsets: &Array) -> Result<Array> {
    // Safety: as above.
    wrap("rope_offsets", unsafe {
        bridge::rope_offsets(
            &x.0,
            p.dims,
            p.traditional,
            p.base.unwrap_or(0.0),
            p.base.is_some(),
            p.scale,
            &offsets.0,
            opt_ptr(p.freqs),
        )
    })
}

/// How attention is masked.
pub enum Mask<'a> {
    None,
    /// Lower-right-aligned causal mask (queries are the last positions of the keys).
    Causal,
    /// Additive float mask or boolean keep-mask, broadcastable to [B, H, Lq, Lk].
    Array(&'a Array),
}

/// softmax(q k^T * scale + mask) v with q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] (GQA allowed).
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: Mask<'_>,
) -> Result<Array> {
    let (mode, arr) = match mask {
        Mask::None => ("", None),
        Mask::Causal => ("causal", None),
        Mask::Array(a) => ("array", Some(a)),
    };
    // Safety: as above.
    wrap("scaled_dot_product_attention", unsafe {
        bridge::sdpa(&q.0, &k.0, &v.0, scale, mode, opt_ptr(arr))
    })
}
