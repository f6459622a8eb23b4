//! Layers shared by every architecture: dense or affine-quantized Linear and Embedding,
//! RMSNorm, rotary embeddings (plain, linear-scaled, llama3, explicit tables), the attention
//! core (heads split, RoPE, KV cache, fused SDPA, sliding windows, soft-capping), and the
//! standard self-attention and gated MLP blocks. Layers own weights only, never KV state.
use crate::cache::KvCache;
use crate::config::RopeScaling;
use crate::error::Result;
use crate::weights::Weights;
use cortex_mlx::fast::{self, Mask, Rope};
use cortex_mlx::{ops, Array, Dtype};

pub enum LinearWeight {
    /// [out, in]
    Dense(Array),
    /// MLX affine form: packed uint32 [out, in*bits/32], scales/biases [out, in/group].
    Quantized {
        w: Array,
        scales: Array,
        biases: Option<Array>,
        group_size: i32,
        bits: i32,
    },
}

impl LinearWeight {
    /// x @ W^T
    fn apply(&self, x: &Array) -> Result<Array> {
        let rows = x.size() / x.dim(-1).max(1) as usize;
        let LinearWeight::Quantized {
            w,
            scales,
            biases,
            group_size,
            bits,
        } = self
        else {
            let LinearWeight::Dense(w) = self else {
                unreachable!()
            };
            if cpu_kernels() && rows <= CPU_GEMV_MAX_ROWS && w.dtype() == Dtype::Float32 {
                return Ok(ops::gemv_cpu(x, w)?.astype(x.dtype())?);
            }
            return Ok(x.matmul(&w.t()?)?);
        };
        let (g, b) = (*group_size, *bits);
        Ok(match (quantized_path(rows, b, g), biases) {
            (QuantPath::CpuGemv, Some(bias)) => {
                ops::qgemv_cpu(x, w, scales, bias, g, b)?.astype(x.dtype())?
            }
            (QuantPath::Dequantize, _) => {
                let dense = ops::dequantize(w, scales, biases.as_ref(), g, b, Some(x.dtype()))?;
                x.matmul(&dense.t()?)?
            }
            _ => ops::quantized_matmul(x, w, scales, biases.as_ref(), true, g, b)?,
        })
    }
}

/// How a quantized matmul runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantPath {
    /// MLX's own quantized kernel (GPUs, and bit widths our CPU kernel lacks).
    Mlx,
    /// Our multi-threaded SIMD kernel for few rows on the CPU (decode).
    CpuGemv,
    /// Many rows on the CPU (prefill): dequantize, then one BLAS sgemm, which beats any
    /// quantized kernel once the weights are reused across enough rows.
    Dequantize,
}

/// Rows at or below this go through the gemv kernels on the CPU; above it, BLAS sgemm (after
/// dequantizing, for quantized layers).
const CPU_GEMV_MAX_ROWS: usize = 8;

/// Whether our CPU kernels are used: on the CPU device, unless `CORTEX_CPU_KERNELS=0` (MLX's
/// own kernels everywhere, for A/B benchmarks).
fn cpu_kernels() -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| {
        std::env::var("CORTEX_CPU_KERNELS").as_deref() != Ok("0")
            && !cortex_mlx::default_device_is_gpu()
    })
}

/// The path for `rows` rows of input on this device.
pub fn quantized_path(rows: usize, bits: i32, group_size: i32) -> QuantPath {
    if !cpu_kernels() {
        QuantPath::Mlx
    } else if rows > CPU_GEMV_MAX_ROWS {
        QuantPath::Dequantize
    } else if (bits == 4 || bits == 8) && group_size % 8 == 0 {
        QuantPath::CpuGemv
    } else {
        QuantPath::Mlx
    }
}

pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<Array>,
}

impl Linear {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let y = self.weight.apply(x)?;
        Ok(match &self.bias {
            Some(b) => y.add(b)?,
            None => y,
        })
    }
}

pub struct Embedding {
    pub weight: LinearWeight,
}

impl Embedding {
    /// Rows of the table for `ids` (any shape) -> [..., dim].
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(match &self.weight {
            LinearWeight::Dense(w) => w.take(ids, 0)?,
            LinearWeight::Quantized {
                w,
                scales,
                biases,
                group_size,
                bits,
            } => {
                let rows = w.take(ids, 0)?;
                let s = scales.take(ids, 0)?;
                let b = biases.as_ref().map(|b| b.take(ids, 0)).transpose()?;
                ops::dequantize(&rows, &s, b.as_ref(), *group_size, *bits, Some(s.dtype()))?
            }
        })
    }

    /// The tied output head: x @ E^T.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.weight.apply(x)
    }
}

pub struct RmsNorm {
    pub weight: Array,
    pub eps: f32,
}

impl RmsNorm {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, Some(&self.weight), self.eps)?)
    }

    /// Gemma stores its norm scales as offsets from one (y = norm(x) * (1 + w)). The one is
    /// added here, once, in the compute dtype, as mlx-lm adds it on every call.
    pub fn offset_by_one(self) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.weight.add_scalar(1.0)?,
            eps: self.eps,
        })
    }
}

/// Rotary embedding parameters, resolved once from the config.
pub struct RotaryEmbedding {
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
    /// Multiplies the rotated part of the input before rotating (Phi-3's long-context mscale).
    input_scale: f32,
}

impl RotaryEmbedding {
    pub fn new(
        dims: i32,
        base: f32,
        traditional: bool,
        scaling: Option<&RopeScaling>,
    ) -> Result<Self> {
        let plain = |scale| RotaryEmbedding {
            dims,
            traditional,
            base: Some(base),
            scale,
            freqs: None,
            input_scale: 1.0,
        };
        let Some(s) = scaling else {
            return Ok(plain(1.0));
        };
        match s.rope_type.as_deref().unwrap_or("default") {
            "linear" => Ok(plain(1.0 / s.factor.unwrap_or(1.0))),
            "llama3" => Ok(RotaryEmbedding {
                dims,
                traditional,
                base: None,
                scale: 1.0,
                freqs: Some(llama3_freqs(dims, base, s)?),
                input_scale: 1.0,
            }),
            // "default" and types whose effect at our context lengths is nil
            _ => Ok(plain(1.0)),
        }
    }

    /// RoPE over the first `dims` features with an explicit inverse-frequency table ([dims/2]),
    /// the rotated features first multiplied by `input_scale` (Phi-3's "su"/"longrope").
    pub fn with_freqs(dims: i32, traditional: bool, freqs: Array, input_scale: f32) -> Self {
        RotaryEmbedding {
            dims,
            traditional,
            base: None,
            scale: 1.0,
            freqs: Some(freqs),
            input_scale,
        }
    }

    pub fn forward(&self, x: &Array, offset: i32) -> Result<Array> {
        let x = self.scale_input(x)?;
        Ok(fast::rope(&x, &self.params(), offset)?)
    }

    /// One position offset per batch element: x [B, H, L, D], offsets int32 [B].
    pub fn forward_offsets(&self, x: &Array, offsets: &Array) -> Result<Array> {
        let x = self.scale_input(x)?;
        Ok(fast::rope_offsets(&x, &self.params(), offsets)?)
    }

    fn params(&self) -> Rope<'_> {
        Rope {
            dims: self.dims,
            traditional: self.traditional,
            base: self.base,
            scale: self.scale,
            freqs: self.freqs.as_ref(),
        }
    }

    fn scale_input(&self, x: &Array) -> Result<Array> {
        Ok(if self.input_scale == 1.0 {
            x.clone()
        } else if self.dims == x.dim(-1) {
            x.mul_scalar(self.input_scale as f64)?
        } else {
            let head = x
                .slice_axis(-1, 0, self.dims)?
                .mul_scalar(self.input_scale as f64)?;
            ops::concatenate(&[head, x.slice_axis(-1, self.dims, x.dim(-1))?], -1)?
        })
    }
}

/// Llama 3.x frequency scaling: long wavelengths are slowed by `factor`, short ones kept, and
/// the band between is interpolated (mlx-lm's Llama3RoPE computes the same table).
fn llama3_freqs(dims: i32, base: f32, s: &RopeScaling) -> Result<Array> {
    let factor = s.factor.unwrap_or(8.0);
    let low = s.low_freq_factor.unwrap_or(1.0);
    let high = s.high_freq_factor.unwrap_or(4.0);
    let old_ctx = s.original_max_position_embeddings.unwrap_or(8192.0);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    let freqs: Vec<f32> = (0..dims / 2)
        .map(|i| {
            let f = base.powf(2.0 * i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI * f;
            let scaled = if wavelen > low_wavelen { f * factor } else { f };
            if wavelen > high_wavelen && wavelen < low_wavelen {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                scaled / ((1.0 - smooth) / factor + smooth)
            } else {
                scaled
            }
        })
        .collect();
    Ok(Array::from_slice(&freqs, &[dims / 2])?)
}

/// Shapes of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttentionDims {
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
}

impl AttentionDims {
    /// Bytes of K plus V per cached token for `layers` such layers.
    pub fn kv_bytes_per_token(&self, layers: usize, itemsize: usize) -> usize {
        2 * layers * (self.n_kv_heads * self.head_dim) as usize * itemsize
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
        return merge_heads(&attend_cached(&q, k, v, scale, opts)?);
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
    let out = if outs.len() == 1 {
        outs.into_iter().next().expect("one segment")
    } else {
        ops::concatenate(&outs, 2)?
    };
    merge_heads(&out)
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
/// outside a sliding window).
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
    if cpu_kernels() {
        let out =
            cache.attend_decode_paged(inp.layer, &q, k.clone(), v.clone(), inp.scale, opts)?;
        if let Some(out) = out {
            return back(&out.astype(q.dtype())?);
        }
    }
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

/// Queries [B, H, L, D] for the last L of the S cached positions in k/v ([B, Hkv, S, D]).
/// The cache may keep more than the window: keys no query can see are sliced off (so decode
/// reads only W keys) and the rest are masked, which gives what a rotating window cache gives.
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
    Ok(match opts.softcap {
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

/// The q/k/v projections: separate matrices, or one fused matrix (Phi-3's qkv_proj) whose
/// output is split after a single matmul.
pub enum QkvProj {
    Separate {
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
    },
    Fused(Linear),
}

impl QkvProj {
    /// x [B, L, hidden] -> q [B, L, Hq*D], k and v [B, L, Hkv*D].
    fn forward(&self, x: &Array, d: AttentionDims) -> Result<(Array, Array, Array)> {
        Ok(match self {
            QkvProj::Separate {
                q_proj,
                k_proj,
                v_proj,
            } => (q_proj.forward(x)?, k_proj.forward(x)?, v_proj.forward(x)?),
            QkvProj::Fused(qkv) => {
                let y = qkv.forward(x)?;
                let (nq, nkv) = (d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim);
                (
                    y.slice_axis(-1, 0, nq)?,
                    y.slice_axis(-1, nq, nq + nkv)?,
                    y.slice_axis(-1, nq + nkv, nq + 2 * nkv)?,
                )
            }
        })
    }
}

/// Multi-head (GQA) self-attention with RoPE: the shape shared by Qwen, Phi-3 and Gemma.
/// Optional per-head q/k RMSNorm before RoPE (Qwen3, Gemma 3), window and soft-capping.
pub struct SelfAttention {
    pub qkv: QkvProj,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub dims: AttentionDims,
    pub scale: f32,
    pub options: AttentionOptions,
}

impl SelfAttention {
    /// `{prefix}.{q,k,v,o}_proj` or, when `fused`, `{prefix}.qkv_proj` (biases on q/k/v when
    /// `qkv_bias`, never on o), scale head_dim^-0.5, no q/k norms, plain causal attention;
    /// callers adjust the public fields.
    pub fn load(
        w: &Weights,
        prefix: &str,
        hidden: i32,
        dims: AttentionDims,
        qkv_bias: bool,
        fused: bool,
    ) -> Result<SelfAttention> {
        let (nq, nkv) = (
            dims.n_heads * dims.head_dim,
            dims.n_kv_heads * dims.head_dim,
        );
        let lin = |name: &str, i, o, b| w.linear(&format!("{prefix}.{name}"), i, o, b);
        let qkv = if fused {
            QkvProj::Fused(lin("qkv_proj", hidden, nq + 2 * nkv, qkv_bias)?)
        } else {
            QkvProj::Separate {
                q_proj: lin("q_proj", hidden, nq, qkv_bias)?,
                k_proj: lin("k_proj", hidden, nkv, qkv_bias)?,
                v_proj: lin("v_proj", hidden, nkv, qkv_bias)?,
            }
        };
        Ok(SelfAttention {
            qkv,
            o_proj: lin("o_proj", nq, hidden, false)?,
            q_norm: None,
            k_norm: None,
            dims,
            scale: (dims.head_dim as f32).powf(-0.5),
            options: AttentionOptions::default(),
        })
    }

    /// x [B, L, hidden] -> [B, L, hidden]
    pub fn forward(
        &self,
        x: &Array,
        rope: &RotaryEmbedding,
        layer: usize,
        cache: &mut dyn KvCache,
    ) -> Result<Array> {
        let d = self.dims;
        let (q, k, v) = self.qkv.forward(x, d)?;
        let norm = |n: &Option<RmsNorm>, a: Array| match n {
            Some(n) => n.forward(&a),
            None => Ok(a),
        };
        let inputs = AttentionInputs {
            q: norm(&self.q_norm, split_heads(&q, d.n_heads, d.head_dim)?)?,
            k: norm(&self.k_norm, split_heads(&k, d.n_kv_heads, d.head_dim)?)?,
            v: split_heads(&v, d.n_kv_heads, d.head_dim)?,
            rope,
            scale: self.scale,
            layer,
        };
        self.o_proj
            .forward(&attend_with(inputs, cache, self.options)?)
    }
}

/// The gate's nonlinearity in a gated MLP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// SwiGLU (Llama, Qwen, Phi-3).
    Silu,
    /// Exact, erf-based GELU (Gemma 1 as mlx-lm runs it).
    Gelu,
    /// Tanh-approximate GELU (Gemma 2 and 3).
    GeluApprox,
}

impl Activation {
    pub fn apply(self, x: &Array) -> Result<Array> {
        match self {
            Activation::Silu => silu(x),
            Activation::Gelu => gelu(x),
            Activation::GeluApprox => gelu_approx(x),
        }
    }
}

/// Gate and up projections: separate, or fused (Phi-3's gate_up_proj, gate first).
pub enum GateUpProj {
    Separate { gate_proj: Linear, up_proj: Linear },
    Fused(Linear),
}

/// down(act(gate(x)) * up(x)).
pub struct GatedMlp {
    pub gate_up: GateUpProj,
    pub down_proj: Linear,
    pub act: Activation,
}

impl GatedMlp {
    /// `{prefix}.{gate,up,down}_proj` (or a fused `gate_up_proj`), without biases.
    pub fn load(
        w: &Weights,
        prefix: &str,
        hidden: i32,
        intermediate: i32,
        act: Activation,
        fused: bool,
    ) -> Result<GatedMlp> {
        let lin = |name: &str, i, o| w.linear(&format!("{prefix}.{name}"), i, o, false);
        let gate_up = if fused {
            GateUpProj::Fused(lin("gate_up_proj", hidden, 2 * intermediate)?)
        } else {
            GateUpProj::Separate {
                gate_proj: lin("gate_proj", hidden, intermediate)?,
                up_proj: lin("up_proj", hidden, intermediate)?,
            }
        };
        Ok(GatedMlp {
            gate_up,
            down_proj: lin("down_proj", intermediate, hidden)?,
            act,
        })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (gate, up) = match &self.gate_up {
            GateUpProj::Separate { gate_proj, up_proj } => {
                (gate_proj.forward(x)?, up_proj.forward(x)?)
            }
            GateUpProj::Fused(gate_up) => {
                let y = gate_up.forward(x)?;
                let half = y.dim(-1) / 2;
                (
                    y.slice_axis(-1, 0, half)?,
                    y.slice_axis(-1, half, 2 * half)?,
                )
            }
        };
        self.down_proj
            .forward(&self.act.apply(&gate)?.multiply(&up)?)
    }
}

/// The untied output head, or None when the embedding table doubles as the head: tied when
/// the config says so or when the checkpoint has no lm_head.
pub fn load_lm_head(
    w: &Weights,
    tie_word_embeddings: Option<bool>,
    hidden: i32,
    vocab: i32,
) -> Result<Option<Linear>> {
    let has_head = w.has("lm_head.weight");
    if !has_head || tie_word_embeddings == Some(true) {
        return Ok(None);
    }
    Ok(Some(w.linear("lm_head", hidden, vocab, false)?))
}

/// Final hidden states -> logits through the untied head or the tied embedding.
pub fn lm_logits(h: &Array, head: Option<&Linear>, embed: &Embedding) -> Result<Array> {
    match head {
        Some(head) => head.forward(h),
        None => embed.as_linear(h),
    }
}

pub fn silu(x: &Array) -> Result<Array> {
    Ok(x.multiply(&x.sigmoid()?)?)
}

/// Exact GELU, x * (1 + erf(x / sqrt 2)) / 2.
pub fn gelu(x: &Array) -> Result<Array> {
    let sqrt2 = Array::full(&[], std::f64::consts::SQRT_2, x.dtype())?;
    let inner = x.divide(&sqrt2)?.erf()?.add_scalar(1.0)?;
    Ok(x.multiply(&inner)?.mul_scalar(0.5)?)
}

/// GELU with the tanh approximation (gemma's hidden_activation "gelu_pytorch_tanh").
pub fn gelu_approx(x: &Array) -> Result<Array> {
    let dt = x.dtype();
    let c = Array::full(&[], (2.0f64 / std::f64::consts::PI).sqrt(), dt)?;
    let x3 = x.multiply(&x.square()?)?.mul_scalar(0.044715)?;
    let inner = x.add(&x3)?.multiply(&c)?.tanh()?.add_scalar(1.0)?;
    Ok(x.multiply(&inner)?.mul_scalar(0.5)?)
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
