//! The attention core: heads split and merged, RoPE at the cache offset, the KV cache update,
//! fused SDPA (causal, sliding windows) or soft-capped attention spelled out, for one sequence,
//! several sequences back to back (continuous batching) or a batched decode step (padded keys
//! with a keep-mask, or the paged CPU kernel reading the KV pool directly).
use super::{cpu_kernels, RotaryEmbedding};
use crate::cache::KvCache;
use crate::error::{EngineError, Result};
use cortex_mlx::fast::{self, Mask};
use cortex_mlx::{ops, Array, Dtype};

/// Shapes of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttentionDims {
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
}

impl AttentionDims {
    /// head_dim as Hugging Face derives it when a config leaves it out: hidden / heads, or 0
    /// (refused by [`AttentionDims::check`]) when there are no heads.
    pub fn derived_head_dim(hidden: i32, heads: i32) -> i32 {
        if heads > 0 {
            hidden / heads
        } else {
            0
        }
    }

    /// Refuses sizes from a config that would divide by zero or overflow later: every size
    /// positive, heads a multiple of KV heads, heads x head_dim within int32.
    pub fn check(&self, hidden: i32, config: &std::path::Path) -> Result<()> {
        let invalid = |detail: &str| {
            Err(EngineError::Config {
                path: config.to_path_buf(),
                detail: detail.to_string(),
            })
        };
        if hidden <= 0 {
            return invalid("hidden_size must be positive");
        }
        if self.n_heads <= 0 {
            return invalid("num_attention_heads must be positive");
        }
        if self.n_kv_heads <= 0 {
            return invalid("num_key_value_heads must be positive");
        }
        if self.head_dim <= 0 {
            return invalid("head_dim (or hidden_size / num_attention_heads) must be positive");
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return invalid("num_attention_heads must be a multiple of num_key_value_heads");
        }
        if self.n_heads.checked_mul(self.head_dim).is_none() {
            return invalid("num_attention_heads x head_dim does not fit 32 bits");
        }
        Ok(())
    }

    /// Bytes of K plus V per cached token for `layers` such layers.
    /// K+V bytes a token takes in `layers` layers of a cache storing `stored` (int8 rows: D
    /// values and a 4-byte scale per block of 32, `ops::kv_row_width`).
    pub fn kv_bytes_per_token(&self, layers: usize, stored: Dtype) -> usize {
        let width = cortex_mlx::ops::kv_row_width(stored, self.head_dim);
        2 * layers * (self.n_kv_heads * width) as usize * stored.size_bytes()
    }
}

/// [B, L, H*D] -> [B, H, L, D]
pub fn split_heads(x: &Array, heads: i32, head_dim: i32) -> Result<Array> {
    let (b, l) = (x.dim(0), x.dim(1));
    Ok(x.reshape(&[b, l, heads, head_dim])?
        .transpose(&[0, 2, 1, 3])?)
}

/// [B, H, L, D] -> [B, L, H*D]
pub fn merge_heads(x: &Array) -> Result<Array> {
    let (b, h, l, d) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
    Ok(x.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, h * d])?)
}

/// The attention mask for `l` new queries: causal when several tokens attend at once.
pub fn causal_mask(l: i32) -> Mask<'static> {
    if l > 1 {
        Mask::Causal
    } else {
        Mask::None
    }
}

/// Queries/keys/values already projected and split into heads ([B, H, L, D]): apply RoPE at
/// the cache offset, append k/v to the cache, attend. Returns [B, L, H*D].
pub struct AttentionInputs<'a> {
    pub q: Array,
    pub k: Array,
    pub v: Array,
    pub rope: &'a RotaryEmbedding,
    pub scale: f32,
    pub layer: usize,
}

/// RoPE at the layer's cache offset, then append k/v; returns q and every cached k/v.
fn rope_and_cache(
    inp: AttentionInputs<'_>,
    cache: &mut dyn KvCache,
) -> Result<(Array, Array, Array)> {
    let offset = cache.layer_offset(inp.layer);
    let q = inp.rope.forward(&inp.q, offset)?;
    let k = inp.rope.forward(&inp.k, offset)?;
    let (k, v) = cache.update_and_fetch(inp.layer, k, inp.v)?;
    Ok((q, k, v))
}

/// A decode step's attention as `KvCache::attend_decode_fused` takes it: the projections
/// ([.., H * D], q/k norms applied, heads not split), RoPE and the attention's options.
pub struct FusedDecode<'a> {
    pub q: &'a Array,
    pub k: &'a Array,
    pub v: &'a Array,
    pub rope: &'a RotaryEmbedding,
    pub dims: AttentionDims,
    pub scale: f32,
    pub opts: AttentionOptions,
}

impl FusedDecode<'_> {
    /// The kernel's view of the step, each row's new token at `positions` (int32 [R]).
    pub fn kernel_step<'b>(&'b self, positions: &'b Array) -> ops::DecodeStep<'b> {
        ops::DecodeStep {
            q: self.q,
            k: self.k,
            v: self.v,
            positions,
            head_dim: self.dims.head_dim,
            rope: self.rope.table(),
            scale: self.scale,
            softcap: self.opts.softcap.unwrap_or(0.0),
            window: self.opts.window.unwrap_or(0),
        }
    }
}

/// How a layer's attention departs from plain causal softmax attention.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionOptions {
    /// Sliding window of W keys: the query at position i sees keys i-W < j <= i.
    pub window: Option<i32>,
    /// Gemma 2's soft-capping of the scores, cap * tanh(s / cap), applied before the mask.
    pub softcap: Option<f32>,
}

/// Attention over the cache: causal by default, with a sliding window and/or soft-capped
/// scores when the options say so. With a batched cache (several sequences back to back),
/// each sequence gets RoPE at its own offset and attends to its own cached keys only.
pub fn attend_with(
    inp: AttentionInputs<'_>,
    cache: &mut dyn KvCache,
    opts: AttentionOptions,
) -> Result<Array> {
    if cache.decode_offsets().is_some() {
        return attend_decode_batch(inp, cache, opts);
    }
    let Some(segments) = cache.segments().map(<[_]>::to_vec) else {
        let scale = inp.scale;
        let (q, k, v) = rope_and_cache(inp, cache)?;
        return attend_cached(&q, k, v, scale, opts);
    };
    let (mut qs, mut ks) = (Vec::new(), Vec::new());
    let mut start = 0;
    for s in &segments {
        let part = |a: &Array| -> Result<Array> {
            if segments.len() == 1 {
                Ok(a.clone())
            } else {
                Ok(a.slice_axis(2, start, start + s.len)?)
            }
        };
        qs.push(inp.rope.forward(&part(&inp.q)?, s.offset)?);
        ks.push(inp.rope.forward(&part(&inp.k)?, s.offset)?);
        start += s.len;
    }
    let k_new = if ks.len() == 1 {
        ks.pop().expect("one segment")
    } else {
        ops::concatenate(&ks, 2)?
    };
    let fetched = cache.update_and_fetch_segments(inp.layer, k_new, inp.v)?;
    let outs = qs
        .iter()
        .zip(fetched)
        .map(|(q, (k, v))| attend_cached(q, k, v, inp.scale, opts))
        .collect::<Result<Vec<_>>>()?;
    Ok(if outs.len() == 1 {
        outs.into_iter().next().expect("one segment")
    } else {
        ops::concatenate(&outs, 1)?
    })
}

/// The keep-mask [B, S] of a decode step: key j is visible to the query at position p when
/// j <= p (and p - j < window). `offsets` holds each query's position.
pub fn decode_keep_mask(offsets: &Array, s: i32, window: Option<i32>) -> Result<Array> {
    let b = offsets.dim(0);
    let pos = offsets.reshape(&[b, 1])?;
    let j = Array::arange(0.0, s as f64, 1.0, Dtype::Int32)?.reshape(&[1, s])?;
    let keep = j.less_equal(&pos)?;
    Ok(match window {
        Some(w) => keep.logical_and(&j.greater(&pos.add_scalar(-(w as f64))?)?)?,
        None => keep,
    })
}

/// Attention for a decode step of B sequences (one new token each) in one go: the tokens
/// become a batch of B single-token queries with RoPE at each one's own position, keys and
/// values come padded to the longest sequence, and a keep-mask hides the padding (and keys
/// outside a sliding window). (The CPU path reads the pool directly instead:
/// `KvCache::attend_decode_fused`.)
fn attend_decode_batch(
    inp: AttentionInputs<'_>,
    cache: &mut dyn KvCache,
    opts: AttentionOptions,
) -> Result<Array> {
    let offsets = cache
        .decode_offsets()
        .cloned()
        .expect("checked by the caller");
    // [1, H, B, D] -> [B, H, 1, D]
    let per_row = |a: &Array| -> Result<Array> { Ok(a.transpose(&[2, 1, 0, 3])?) };
    let q = inp.rope.forward_offsets(&per_row(&inp.q)?, &offsets)?;
    let k = inp.rope.forward_offsets(&per_row(&inp.k)?, &offsets)?;
    let v = per_row(&inp.v)?;
    // [B, H, 1, D] -> [1, H, B, D] -> [1, B, H*D]
    let back = |out: &Array| merge_heads(&out.transpose(&[2, 1, 0, 3])?);
    let (k, v) = cache.update_and_fetch_padded(inp.layer, k, v)?;
    let (b, s) = (k.dim(0), k.dim(2));
    let keep = cache.decode_keep_mask(opts.window)?;
    let out = match opts.softcap {
        None => {
            let keep = keep.reshape(&[b, 1, 1, s])?;
            fast::scaled_dot_product_attention(&q, &k, &v, inp.scale, Mask::Array(&keep))?
        }
        Some(cap) => {
            let keep = keep.reshape(&[b, 1, 1, 1, s])?;
            softcapped_attention(&q, &k, &v, inp.scale, cap, Some(&keep))?
        }
    };
    back(&out)
}

/// Queries [B, H, L, D] for the last L of the S cached positions in k/v ([B, Hkv, S, D]);
/// returns [B, L, H * D], the heads merged. The cache may keep more than the window: keys no
/// query can see are sliced off (so decode reads only W keys) and the rest are masked, which
/// gives what a rotating window cache gives. On the CPU path one sequence's attention is one
/// kernel node (`ops::prefill_attention`, which also skips what the window hides).
fn attend_cached(
    q: &Array,
    k: Array,
    v: Array,
    scale: f32,
    opts: AttentionOptions,
) -> Result<Array> {
    let (l, total) = (q.dim(2), k.dim(2));
    // The new queries are the last `l` of the `total` cached positions.
    let q_start = total - l;
    let prompt_kernel_reads = matches!(k.dtype(), Dtype::Float32 | Dtype::Float16);
    if cpu_kernels() && q.dim(0) == 1 && q.dtype() == Dtype::Float32 && prompt_kernel_reads {
        let (softcap, window) = (opts.softcap.unwrap_or(0.0), opts.window.unwrap_or(0));
        return Ok(ops::prefill_attention(
            q, &k, &v, q_start, scale, softcap, window,
        )?);
    }
    let k_start = opts.window.map_or(0, |w| (q_start + 1 - w).max(0));
    let (k, v) = if k_start > 0 {
        (
            k.slice_axis(2, k_start, total)?,
            v.slice_axis(2, k_start, total)?,
        )
    } else {
        (k, v)
    };
    let window_bites = opts.window.is_some_and(|w| l > 1 && total > w);
    merge_heads(&match opts.softcap {
        None if window_bites => {
            let keep = keep_mask(q_start, l, k_start, total - k_start, opts.window)?;
            fast::scaled_dot_product_attention(q, &k, &v, scale, Mask::Array(&keep))?
        }
        None => fast::scaled_dot_product_attention(q, &k, &v, scale, causal_mask(l))?,
        Some(cap) => {
            let keep = if l > 1 {
                Some(keep_mask(
                    q_start,
                    l,
                    k_start,
                    total - k_start,
                    opts.window,
                )?)
            } else {
                None
            };
            softcapped_attention(q, &k, &v, scale, cap, keep.as_ref())?
        }
    })
}

/// The rows of the final hidden state [B, L, hidden] that need logits (the cache's
/// `logit_rows`; all rows when it names none).
pub fn logit_rows(h: &Array, cache: &dyn KvCache) -> Result<Array> {
    Ok(match cache.logit_rows() {
        Some(rows) => h.take(rows, 1)?,
        None => h.clone(),
    })
}

/// Boolean keep-mask [l, k_len] for queries at positions q_start.. over keys at positions
/// k_start..: causal, and within `window` keys when given.
pub fn keep_mask(
    q_start: i32,
    l: i32,
    k_start: i32,
    k_len: i32,
    window: Option<i32>,
) -> Result<Array> {
    let pos =
        |start: i32, n: i32| Array::arange(start as f64, (start + n) as f64, 1.0, Dtype::Int32);
    let q = pos(q_start, l)?.reshape(&[l, 1])?;
    let k = pos(k_start, k_len)?.reshape(&[1, k_len])?;
    let keep = q.greater_equal(&k)?;
    Ok(match window {
        Some(w) => keep.logical_and(&q.less(&k.add_scalar(w as f64)?)?)?,
        None => keep,
    })
}

/// cap * tanh(x / cap): Gemma 2's soft-capping of attention scores and final logits.
pub fn softcap(x: &Array, cap: f32) -> Result<Array> {
    let c = Array::full(&[], cap as f64, x.dtype())?;
    Ok(x.divide(&c)?.tanh()?.multiply(&c)?)
}

/// Attention spelled out (the fused kernel cannot soft-cap): queries pre-scaled, scores
/// capped, masked to the dtype's lowest value, precise softmax; q [B, Hq, L, D], k/v
/// [B, Hkv, S, D] -> [B, Hq, L, D].
fn softcapped_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    cap: f32,
    keep: Option<&Array>,
) -> Result<Array> {
    let (b, hq, l, d) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let hkv = k.dim(1);
    // GQA by broadcasting: queries grouped per KV head, keys/values given a group axis.
    let q = q
        .mul_scalar(scale as f64)?
        .reshape(&[b, hkv, hq / hkv, l, d])?;
    let (k, v) = (k.expand_dims(2)?, v.expand_dims(2)?);
    let scores = softcap(&q.matmul(&k.swapaxes(-1, -2)?)?, cap)?;
    let scores = match keep {
        Some(m) => ops::where_(
            m,
            &scores,
            &Array::full(&[], lowest(scores.dtype()), scores.dtype())?,
        )?,
        None => scores,
    };
    let out = scores.softmax(&[-1], true)?.matmul(&v)?;
    Ok(out.reshape(&[b, hq, l, d])?)
}

/// The most negative finite value of a float dtype (numpy's finfo.min), used for masking.
fn lowest(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::Float16 => -65504.0,
        Dtype::Bfloat16 => -3.3895313892515355e38,
        Dtype::Float64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_mask_is_causal_and_windowed() {
        // Queries at positions 3 and 4 over keys 1..=4 with a 2-key window.
        let m = keep_mask(3, 2, 1, 4, Some(2))
            .unwrap()
            .astype(Dtype::Int32)
            .unwrap()
            .to_vec::<i32>()
            .unwrap();
        assert_eq!(m, vec![0, 1, 1, 0, 0, 0, 1, 1]);
        let m = keep_mask(0, 3, 0, 3, None)
            .unwrap()
            .astype(Dtype::Int32)
            .unwrap()
            .to_vec::<i32>()
            .unwrap();
        assert_eq!(m, vec![1, 0, 0, 1, 1, 0, 1, 1, 1]);
    }

    #[test]
    fn softcap_bounds_scores() {
        let x = Array::from_slice(&[-100.0f32, 0.0, 1.0, 100.0], &[4]).unwrap();
        let y = softcap(&x, 5.0).unwrap().to_vec::<f32>().unwrap();
        assert!(
            (y[0] + 5.0).abs() < 1e-4 && y[1] == 0.0 && (y[2] - 5.0 * (0.2f32).tanh()).abs() < 1e-6
        );
        assert!((y[3] - 5.0).abs() < 1e-4);
    }
}
