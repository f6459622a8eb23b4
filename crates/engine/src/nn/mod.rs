//! Layers shared by every architecture: dense or affine-quantized Linear and Embedding,
//! RMSNorm, rotary embeddings (plain, linear-scaled, llama3, explicit tables), the attention
//! core ([`attention`]), and the standard self-attention and gated MLP blocks. Layers own
//! weights only, never KV state.
mod attention;

use crate::cache::KvCache;
use crate::config::RopeScaling;
use crate::error::Result;
use crate::weights::Weights;
pub use attention::*;
use cortex_mlx::fast::{self, Rope};
use cortex_mlx::{ops, Array, Dtype};

pub enum LinearWeight {
    /// [out, in]
    Dense(Array),
    /// MLX affine form: packed uint32 [out, in*bits/32], scales/biases [out, in/group].
    /// Scales and biases are in the compute dtype, except where the CPU kernels read them:
    /// there 16-bit ones stay as stored ([`Weights`]'s `layer_weight`), and the MLX paths
    /// widen them to `dtype` per call.
    Quantized {
        w: Array,
        scales: Array,
        biases: Option<Array>,
        group_size: i32,
        bits: i32,
        /// The compute dtype.
        dtype: Dtype,
        /// The weight repacked for the int8 kernels ([`ops::pack_rows16`]): kept when the
        /// model runs with int8 activations on an x86 CPU with SIMD int8 kernels.
        packed: Option<Array>,
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
            dtype,
            packed,
        } = self
        else {
            let LinearWeight::Dense(w) = self else {
                unreachable!()
            };
            if cpu_kernels() && rows <= cpu_gemv_max_rows(false) && w.dtype() == Dtype::Float32 {
                return Ok(ops::gemv_cpu(x, w)?.astype(x.dtype())?);
            }
            return Ok(x.matmul(&w.t()?)?);
        };
        let (g, b) = (*group_size, *bits);
        let path = quantized_path(rows, b, g);
        if let (QuantPath::CpuGemv, Some(bias)) = (path, biases) {
            let y = match packed {
                Some(p) => {
                    let weights = ops::GemvWeights::Quantized {
                        weights: &[(w, scales, bias)],
                        packed: &[p],
                        group_size: g,
                        bits: b,
                    };
                    ops::gemv_many(x, weights, false)?.remove(0)
                }
                None => ops::qgemv_cpu(x, w, scales, bias, g, b)?,
            };
            return Ok(y.astype(x.dtype())?);
        }
        let (scales, biases) = widened(scales, biases.as_ref(), *dtype)?;
        Ok(match path {
            QuantPath::Dequantize => {
                let dense = ops::dequantize(w, &scales, biases.as_ref(), g, b, Some(x.dtype()))?;
                x.matmul(&dense.t()?)?
            }
            _ => ops::quantized_matmul(x, w, &scales, biases.as_ref(), true, g, b)?,
        })
    }
}

/// Scales and biases in `dtype` for MLX's quantized ops (a no-op where they already are).
fn widened(scales: &Array, biases: Option<&Array>, dtype: Dtype) -> Result<(Array, Option<Array>)> {
    Ok((
        scales.astype(dtype)?,
        biases.map(|b| b.astype(dtype)).transpose()?,
    ))
}

/// How a quantized matmul runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantPath {
    /// MLX's own quantized kernel (GPUs, and bit widths our CPU kernel lacks).
    Mlx,
    /// Our multi-threaded SIMD kernel for up to `cpu_gemv_max_rows` rows on the CPU: decode,
    /// and prefill in chunks of up to 512 tokens (the rows go through in blocks of 4 with AVX2,
    /// 8 with AVX-512, each block reading the weights once).
    CpuGemv,
    /// Many rows on the CPU (long prefill chunks): dequantize, then one BLAS sgemm, which beats
    /// the quantized kernel once the weights are reused across enough rows.
    Dequantize,
}

/// Rows at or below this go through the gemv kernels on the CPU; above it, BLAS sgemm (after
/// dequantizing, for quantized layers). Where the two cross, measured on the 2-core reference
/// machine (`cortex bench MODEL --prompt-tokens N`, `CORTEX_GEMV_MAX_ROWS=8` against a large
/// value): at 64-128 rows the kernel prefilled 3x faster on a 1.1B 4-bit llama and faster on
/// SmolLM2, at 256 the two were even on both, at 512 sgemm was 10-15% faster on SmolLM2.
/// Dequantizing is what makes sgemm slow for short prompts: every layer is written out in
/// float32 on every call. Since the AVX2 kernel's blocks of rows ran 2.5x faster (issue 13,
/// twenty-first session, Zen 2), quantized layers take the kernel up to 512 rows, a whole
/// chunk of prefill (`prefill_step`, the serving engine's `max_batch_tokens`): 512-token
/// prompts prefilled 34% faster on the 1.1B llama (38.9 -> 52.1 tok/s) and 6% on SmolLM2, 1024
/// tokens 30% faster on the llama, 2048 even on SmolLM2. Dense float32 layers have no
/// dequantizing to save and keep 256. `CORTEX_GEMV_MAX_ROWS` overrides both (A/B benchmarks).
fn cpu_gemv_max_rows(quantized: bool) -> usize {
    static ROWS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let set = *ROWS.get_or_init(|| {
        std::env::var("CORTEX_GEMV_MAX_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    set.unwrap_or(if quantized { 512 } else { 256 })
}

/// Whether our CPU kernels are used: on the CPU path ([`crate::compute`]) of the model whose
/// graph this thread is building.
pub(crate) fn cpu_kernels() -> bool {
    crate::compute::current_path() == crate::compute::ComputePath::Cpu
}

/// The path for `rows` rows of input on this device.
pub fn quantized_path(rows: usize, bits: i32, group_size: i32) -> QuantPath {
    if !cpu_kernels() {
        QuantPath::Mlx
    } else if rows > cpu_gemv_max_rows(true) {
        QuantPath::Dequantize
    } else if (bits == 4 || bits == 8) && group_size % 8 == 0 {
        QuantPath::CpuGemv
    } else {
        QuantPath::Mlx
    }
}

/// Several linears of the same x as one CPU node (`ops::gemv_many`) wherever they take the gemv
/// kernels (decode, short prefill): q/k/v, or gate/up with `swiglu` (then one output,
/// silu(gate) * up). None when the path or the weights do not allow it (not the CPU kernels,
/// too many rows, weights of different kinds, linear biases under SwiGLU); the caller then
/// runs them one by one.
fn fused_linears(x: &Array, linears: &[&Linear], swiglu: bool) -> Result<Option<Vec<Array>>> {
    let rows = x.size() / x.dim(-1).max(1) as usize;
    let has_bias = linears.iter().any(|l| l.bias.is_some());
    if !cpu_kernels() || (swiglu && has_bias) {
        return Ok(None);
    }
    let mut dense = Vec::new();
    let mut quantized = Vec::new();
    let mut packed = Vec::new();
    let mut shape = None;
    for l in linears {
        match &l.weight {
            LinearWeight::Dense(w)
                if w.dtype() == Dtype::Float32 && rows <= cpu_gemv_max_rows(false) =>
            {
                dense.push(w)
            }
            LinearWeight::Quantized {
                w,
                scales,
                biases: Some(b),
                group_size,
                bits,
                packed: p,
                ..
            } if quantized_path(rows, *bits, *group_size) == QuantPath::CpuGemv
                && shape.is_none_or(|s| s == (*group_size, *bits)) =>
            {
                shape = Some((*group_size, *bits));
                quantized.push((w, scales, b));
                packed.extend(p.as_ref());
            }
            _ => return Ok(None),
        }
    }
    let weights = match shape {
        Some(_) if !dense.is_empty() => return Ok(None),
        Some((group_size, bits)) => ops::GemvWeights::Quantized {
            weights: &quantized,
            // the repacked blocks only when every weight has them
            packed: if packed.len() == quantized.len() {
                &packed
            } else {
                &[]
            },
            group_size,
            bits,
        },
        None => ops::GemvWeights::Dense(&dense),
    };
    let outs = ops::gemv_many(x, weights, swiglu)?;
    let outs = outs
        .into_iter()
        .zip(linears)
        .map(|(y, l)| {
            let y = y.astype(x.dtype())?;
            Ok(match &l.bias {
                Some(b) => y.add(b)?,
                None => y,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(outs))
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
                dtype,
                ..
            } => {
                let rows = w.take(ids, 0)?;
                let b = biases.as_ref().map(|b| b.take(ids, 0)).transpose()?;
                let (s, b) = widened(&scales.take(ids, 0)?, b.as_ref(), *dtype)?;
                ops::dequantize(&rows, &s, b.as_ref(), *group_size, *bits, Some(*dtype))?
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
        if self.cpu_node(x) {
            return Ok(ops::rms_norm_cpu(x, &self.weight, self.eps)?);
        }
        Ok(fast::rms_norm(x, Some(&self.weight), self.eps)?)
    }

    /// `(x + residual, norm(x + residual))`: a decoder's residual add and the norm after it, one
    /// graph node on the CPU path.
    pub fn forward_residual(&self, x: &Array, residual: &Array) -> Result<(Array, Array)> {
        if self.cpu_node(x) && residual.dtype() == Dtype::Float32 && residual.shape() == x.shape() {
            return Ok(ops::add_rms_norm_cpu(x, residual, &self.weight, self.eps)?);
        }
        let sum = x.add(residual)?;
        let normed = self.forward(&sum)?;
        Ok((sum, normed))
    }

    /// Whether the CPU path's one-node norm takes x: MLX's `fast::rms_norm` is about ten
    /// elementwise nodes off the GPU (`ops::rms_norm_cpu`).
    fn cpu_node(&self, x: &Array) -> bool {
        cpu_kernels() && x.dtype() == Dtype::Float32 && self.weight.dtype() == Dtype::Float32
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
    /// float32 [dims / 2]: the angle per position of each rotated pair, as MLX's RoPE derives
    /// it (base^(-i / (dims/2)), or 1 / freqs), for the CPU decode kernel.
    inv_freq: Array,
}

impl RotaryEmbedding {
    pub fn new(
        dims: i32,
        base: f32,
        traditional: bool,
        scaling: Option<&RopeScaling>,
    ) -> Result<Self> {
        let plain = |scale| -> Result<RotaryEmbedding> {
            let half = dims / 2;
            let step = base.ln() / half.max(1) as f32;
            let inv: Vec<f32> = (0..half).map(|i| (-(i as f32) * step).exp()).collect();
            Ok(RotaryEmbedding {
                dims,
                traditional,
                base: Some(base),
                scale,
                freqs: None,
                input_scale: 1.0,
                inv_freq: Array::from_slice(&inv, &[half])?,
            })
        };
        let Some(s) = scaling else {
            return plain(1.0);
        };
        match s.rope_type.as_deref().unwrap_or("default") {
            "linear" => plain(1.0 / s.factor.unwrap_or(1.0)),
            "llama3" => Self::with_freqs(dims, traditional, llama3_freqs(dims, base, s)?, 1.0),
            // "default" and types whose effect at our context lengths is nil
            _ => plain(1.0),
        }
    }

    /// RoPE over the first `dims` features with an explicit inverse-frequency table ([dims/2]),
    /// the rotated features first multiplied by `input_scale` (Phi-3's "su"/"longrope").
    pub fn with_freqs(
        dims: i32,
        traditional: bool,
        freqs: Array,
        input_scale: f32,
    ) -> Result<Self> {
        let inv_freq =
            Array::full(&[], 1.0, Dtype::Float32)?.divide(&freqs.astype(Dtype::Float32)?)?;
        // evaluated now: models are shared across threads, and an array is evaluated once
        inv_freq.eval()?;
        Ok(RotaryEmbedding {
            dims,
            traditional,
            base: None,
            scale: 1.0,
            freqs: Some(freqs),
            input_scale,
            inv_freq,
        })
    }

    /// The same rotation as the CPU decode kernel takes it.
    pub fn table(&self) -> cortex_mlx::ops::RopeTable<'_> {
        cortex_mlx::ops::RopeTable {
            inv_freq: &self.inv_freq,
            dims: self.dims,
            traditional: self.traditional,
            scale: self.scale,
            input_scale: self.input_scale,
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
            } => match fused_linears(x, &[q_proj, k_proj, v_proj], false)? {
                Some(mut qkv) if qkv.len() == 3 => {
                    let v = qkv.pop().expect("three");
                    let k = qkv.pop().expect("three");
                    (qkv.pop().expect("three"), k, v)
                }
                _ => (q_proj.forward(x)?, k_proj.forward(x)?, v_proj.forward(x)?),
            },
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
        if cpu_kernels() {
            // q/k norms per head on [.., H, D] views; the kernel takes heads unsplit
            let per_head = |n: &Option<RmsNorm>, a: &Array, heads: i32| -> Result<Array> {
                let Some(n) = n else {
                    return Ok(a.clone());
                };
                let (b, l) = (a.dim(0), a.dim(1));
                let normed = n.forward(&a.reshape(&[b, l, heads, d.head_dim])?)?;
                Ok(normed.reshape(&[b, l, heads * d.head_dim])?)
            };
            let step = FusedDecode {
                q: &per_head(&self.q_norm, &q, d.n_heads)?,
                k: &per_head(&self.k_norm, &k, d.n_kv_heads)?,
                v: &v,
                rope,
                dims: d,
                scale: self.scale,
                opts: self.options,
            };
            if let Some(out) = cache.attend_decode_fused(layer, &step)? {
                return self.o_proj.forward(&out);
            }
        }
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
                if self.act == Activation::Silu {
                    if let Some(mut h) = fused_linears(x, &[gate_proj, up_proj], true)? {
                        if let Some(h) = h.pop() {
                            return self.down_proj.forward(&h);
                        }
                    }
                }
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
        let h = if self.act == Activation::Silu && cpu_kernels() && gate.dtype() == Dtype::Float32 {
            // one node in 16 lanes (MLX's CPU sigmoid is scalar off Apple silicon)
            ops::silu_mul_cpu(&gate, &up)?
        } else {
            self.act.apply(&gate)?.multiply(&up)?
        };
        self.down_proj.forward(&h)
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
