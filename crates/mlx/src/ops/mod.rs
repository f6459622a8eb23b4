//! Array operations: element-wise math, reductions, shape manipulation, indexing, sorting,
//! matmul and affine quantization, plus our CPU gemv kernels. Methods on [`Array`] so model
//! code reads as a chain.
use crate::array::{wrap, Array, Dtype};
use crate::error::{mlx_err, Error, Result};
use crate::ffi::bridge;
use cxx::UniquePtr;

mod attention;
pub use attention::*;

/// Codes shared with shim.cc's `unary` switch.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Unary {
    Exp = 0,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Negative,
    Abs,
    Square,
    Sin,
    Cos,
    Erf,
    Log1p,
    Floor,
    LogicalNot,
    StopGradient,
    Copy,
    Round,
}

/// Codes shared with shim.cc's `binary` switch.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Binary {
    Add = 0,
    Subtract,
    Multiply,
    Divide,
    Maximum,
    Minimum,
    Power,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    LogicalAnd,
    LogicalOr,
}

#[derive(Clone, Copy)]
#[repr(u8)]
enum Reduce {
    Sum = 0,
    Mean,
    Max,
    Min,
    LogSumExp,
    Prod,
}

pub(crate) fn ptr(a: Option<&Array>) -> *const bridge::Array {
    a.map_or(std::ptr::null(), |a| &*a.0 as *const bridge::Array)
}

pub(crate) fn opt_ptr(a: Option<&Array>) -> *const bridge::Array {
    ptr(a)
}

/// Builds the bridge's list type from Rust arrays.
pub(crate) fn to_list<'a>(
    arrays: impl IntoIterator<Item = &'a Array>,
) -> UniquePtr<bridge::ArrayList> {
    let mut list = bridge::list_new();
    for a in arrays {
        bridge::list_push(list.pin_mut(), &a.0, "");
    }
    list
}

pub(crate) fn from_list(
    op: &'static str,
    list: &bridge::ArrayList,
) -> Result<Vec<(String, Array)>> {
    (0..bridge::list_len(list))
        .map(|i| {
            let name = bridge::list_name(list, i).map_err(mlx_err(op))?;
            let a = wrap(op, bridge::list_get(list, i))?;
            Ok((name, a))
        })
        .collect()
}

/// Evaluates all arrays together (one graph walk).
pub fn eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    bridge::eval(&to_list(arrays)).map_err(mlx_err("eval"))
}

/// Starts evaluating in the background; a later `eval` or read waits for it.
pub fn async_eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    bridge::async_eval(&to_list(arrays)).map_err(mlx_err("async_eval"))
}

pub fn concatenate(arrays: &[Array], axis: i32) -> Result<Array> {
    wrap("concatenate", bridge::concatenate(&to_list(arrays), axis))
}

pub fn stack(arrays: &[Array], axis: i32) -> Result<Array> {
    wrap("stack", bridge::stack(&to_list(arrays), axis))
}

/// `cond ? a : b`, broadcasting.
pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
    wrap("where", bridge::where_(&cond.0, &a.0, &b.0))
}

/// Affine quantization along the last axis: returns (packed uint32 weight, scales, biases).
pub fn quantize(w: &Array, group_size: i32, bits: i32) -> Result<(Array, Array, Array)> {
    let list = bridge::quantize(&w.0, group_size, bits).map_err(mlx_err("quantize"))?;
    let mut parts = from_list("quantize", &list)?.into_iter().map(|(_, a)| a);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(w), Some(s), Some(b)) => Ok((w, s, b)),
        _ => Err(crate::Error::InvalidArgument {
            op: "quantize",
            message: "MLX returned no biases (non-affine mode?)".into(),
        }),
    }
}

/// Inverse of [`quantize`]; `dtype` picks the output type (default: the scales' dtype).
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    group_size: i32,
    bits: i32,
    dtype: Option<Dtype>,
) -> Result<Array> {
    let dt = dtype.map_or(-1, |d| d as i32);
    // Safety: the pointer is null or borrows an Array that outlives the call.
    wrap("dequantize", unsafe {
        bridge::dequantize(&w.0, &scales.0, ptr(biases), group_size, bits, dt)
    })
}

/// `x @ dequantize(w).T` (transpose = true, the Linear layout) without materializing w.
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    transpose: bool,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    // Safety: as in `dequantize`.
    wrap("quantized_matmul", unsafe {
        bridge::quantized_matmul(
            &x.0,
            &w.0,
            &scales.0,
            ptr(biases),
            transpose,
            group_size,
            bits,
        )
    })
}

/// `x @ dequantize(w).T` for 4- or 8-bit affine weights, computed by our own multi-threaded
/// SIMD CPU kernel (src/qgemv.cc): the decode path on CPUs, where MLX's generic quantized
/// matmul is the bottleneck. Inputs are cast to float32; the output is float32 [.., N].
pub fn qgemv_cpu(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    wrap(
        "qgemv",
        bridge::qgemv(&x.0, &w.0, &scales.0, &biases.0, group_size, bits),
    )
}

/// `x @ w.T` for a dense [N, K] weight by the same CPU kernel family: each weight row is read
/// once (BLAS sgemm packs the whole matrix even for one row of x). float32 [.., N] out.
pub fn gemv_cpu(x: &Array, w: &Array) -> Result<Array> {
    wrap("gemv", bridge::gemv_f32(&x.0, &w.0))
}

/// RMSNorm over the last axis as one CPU graph node (src/norm.cc), the numerics of MLX's
/// `fast::rms_norm` in float32: `(x * rsqrt(mean(x^2) + eps)) * weight`. Off the GPU, MLX's own
/// is about ten elementwise nodes. `weight` is [D] for `x` [.., D]; float32 out.
pub fn rms_norm_cpu(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    wrap("rms_norm_cpu", bridge::rms_norm_cpu(&x.0, &weight.0, eps))
}

/// SwiGLU's elementwise step, `silu(gate) * up`, as one CPU graph node (src/norm.cc): 16 lanes
/// where the CPU has AVX-512, else portable code giving the same bits (`set_scalar_kernels`),
/// the sigmoid from `exp(-|gate|)` so nothing overflows; the work split over the kernel pool.
/// Off Apple silicon MLX's own elementwise ops are scalar. float32 out, `gate`'s shape (`up`'s
/// must match).
pub fn silu_mul_cpu(gate: &Array, up: &Array) -> Result<Array> {
    wrap("silu_mul_cpu", bridge::silu_mul_cpu(&gate.0, &up.0))
}

/// The argmax over the last axis as one CPU graph node (src/norm.cc), uint32 [..]: the index
/// MLX's `argmax` gives (NaN counts as the largest, the first of equals wins), found in 16
/// lanes where the CPU has AVX-512 and rows split over the kernel pool.
/// MLX's own CPU argmax scans one value at a time. `x` is converted to float32 if it is not.
pub fn argmax_cpu(x: &Array) -> Result<Array> {
    wrap("argmax_cpu", bridge::argmax_cpu(&x.0))
}

/// A residual add and the RMSNorm after it, one CPU graph node: `(x + residual, rms_norm(x +
/// residual))`, each as [`rms_norm_cpu`] and an add would give them (float32).
pub fn add_rms_norm_cpu(
    x: &Array,
    residual: &Array,
    weight: &Array,
    eps: f32,
) -> Result<(Array, Array)> {
    let list = bridge::add_rms_norm_cpu(&x.0, &residual.0, &weight.0, eps)
        .map_err(mlx_err("add_rms_norm_cpu"))?;
    let mut parts = from_list("add_rms_norm_cpu", &list)?
        .into_iter()
        .map(|(_, a)| a);
    match (parts.next(), parts.next()) {
        (Some(sum), Some(normed)) => Ok((sum, normed)),
        _ => Err(Error::Mlx {
            op: "add_rms_norm_cpu",
            message: "expected two outputs".into(),
        }),
    }
}

/// The weights of one [`gemv_many`] node: all quantized alike (packed w, scales, biases), or all
/// dense [N, K].
#[derive(Clone, Copy)]
pub enum GemvWeights<'a> {
    Quantized {
        weights: &'a [(&'a Array, &'a Array, &'a Array)],
        /// Each weight's [`pack_rows16`] blocks, or empty: with int8 activations on, a node of
        /// up to 8 rows then runs the int8 kernels on them.
        packed: &'a [&'a Array],
        group_size: i32,
        bits: i32,
    },
    Dense(&'a [&'a Array]),
}

/// A quantized weight repacked for the int8 kernels (src/qdot.h, rows16): the 16 lanes of a
/// vector are 16 weight rows, so the per-group float work runs once per 16 rows and outputs
/// need no horizontal sums. uint8 [ceil(N / 16), block bytes], holding the weights again and
/// their scales and biases in float32. `None` where those kernels do not take the weight (bits
/// other than 4 and 8, groups not a multiple of 32). Evaluates its inputs.
pub fn pack_rows16(
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Option<Array>> {
    let out = bridge::pack_rows16(&w.0, &scales.0, &biases.0, group_size, bits)
        .map_err(mlx_err("pack_rows16"))?;
    Ok((!out.is_null()).then(|| Array(out)))
}

/// Several matmuls of the same x in one CPU node ([`qgemv_cpu`] / [`gemv_cpu`] each): x's
/// per-group sums are computed once and one pool dispatch covers every weight's rows. Returns
/// x @ W_i.T for each weight; with `swiglu`, two weights (gate, up) and the one array
/// silu(x @ gate.T) * (x @ up.T), the gated MLP's hidden state.
pub fn gemv_many(x: &Array, weights: GemvWeights<'_>, swiglu: bool) -> Result<Vec<Array>> {
    let (list, group_size, bits, with_packed) = match weights {
        GemvWeights::Quantized {
            weights,
            packed,
            group_size,
            bits,
        } => {
            if !packed.is_empty() && packed.len() != weights.len() {
                return Err(Error::InvalidArgument {
                    op: "qgemv",
                    message: "one packed array per weight, or none".into(),
                });
            }
            let list = if packed.is_empty() {
                to_list(weights.iter().flat_map(|(w, s, b)| [*w, *s, *b]))
            } else {
                to_list(
                    weights
                        .iter()
                        .zip(packed)
                        .flat_map(|((w, s, b), p)| [*w, *s, *b, *p]),
                )
            };
            (list, group_size, bits, !packed.is_empty())
        }
        GemvWeights::Dense(weights) => (to_list(weights.iter().copied()), 0, 32, false),
    };
    let out = bridge::gemv_many(&x.0, &list, group_size, bits, swiglu, with_packed)
        .map_err(mlx_err("qgemv"))?;
    Ok(from_list("qgemv", &out)?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// Makes the CPU kernels ([`qgemv_cpu`], [`gemv_cpu`], [`decode_attention`]) built on this
/// thread from now on run their portable code instead of AVX2/FMA (what a CPU without AVX2
/// runs), or again pick by CPU. The choice is fixed per graph node when it is built, so threads
/// building graphs at the same time do not affect each other.
pub fn set_scalar_kernels(scalar: bool) {
    bridge::set_scalar_kernels(scalar)
}

/// For tests: while `only`, the CPU kernels' thread pool gives every chunk of work to its
/// worker threads and none to the thread that asks for it (which waits), so a kernel whose
/// chunks would read that thread's own state fails every time rather than when a worker
/// happens to take a chunk. Process-wide; results are the same either way, only slower. No
/// effect on a one-core machine (there is no worker).
pub fn set_pool_workers_only(only: bool) {
    bridge::set_pool_workers_only(only)
}

/// Whether this CPU has the AVX2/FMA kernels (else every kernel runs the portable code).
pub fn cpu_has_avx2() -> bool {
    bridge::cpu_has_avx2()
}

/// Makes [`qgemv_cpu`] nodes built on this thread from now on quantize their activations to
/// int8 per weight group and compute each group's dot product in integers (src/qdot.h: VNNI
/// where the CPU has it), or again compute in float32 (exact up to float rounding). Only nodes
/// of up to 8 rows (decode; prefill stays float) with 4- or 8-bit weights in groups of a
/// multiple of 32 take the int8 kernels; fixed per node, like [`set_scalar_kernels`].
pub fn set_int8_activations(int8: bool) {
    bridge::set_int8_activations(int8)
}

/// The instruction set of the int8 kernels on this CPU: `avx512vnni`, `avxvnni`, `avx2` or
/// `scalar` (`CORTEX_QDOT_ISA` caps it, to test and time the slower ones).
pub fn int8_kernel_name() -> String {
    bridge::int8_kernel_name()
}

/// Whether the int8 path holds its quantized weights a second time, repacked 16 rows per
/// vector ([`pack_rows16`]): on every x86 CPU with SIMD int8 kernels (AVX-512 VNNI, AVX-VNNI
/// or AVX2), not where they run the portable code.
pub fn int8_repacks() -> bool {
    matches!(
        int8_kernel_name().as_str(),
        "avx512vnni" | "avxvnni" | "avx2"
    )
}

macro_rules! unary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(&self) -> Result<Array> {
            wrap(stringify!($name), bridge::unary(Unary::$op as u8, &self.0))
        })*
    };
}

macro_rules! binary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(&self, other: &Array) -> Result<Array> {
            wrap(stringify!($name), bridge::binary(Binary::$op as u8, &self.0, &other.0))
        })*
    };
}

macro_rules! reduce_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(&self, axes: &[i32], keepdims: bool) -> Result<Array> {
            wrap(stringify!($name), bridge::reduce(Reduce::$op as u8, &self.0, axes, keepdims))
        })*
    };
}

impl Array {
    unary_methods! {
        exp => Exp, log => Log, sqrt => Sqrt, rsqrt => Rsqrt, tanh => Tanh, sigmoid => Sigmoid,
        negative => Negative, abs => Abs, square => Square, sin => Sin, cos => Cos, erf => Erf,
        log1p => Log1p, floor => Floor, logical_not => LogicalNot, stop_gradient => StopGradient,
        copy => Copy, round => Round,
    }

    binary_methods! {
        add => Add, subtract => Subtract, multiply => Multiply, divide => Divide,
        maximum => Maximum, minimum => Minimum, power => Power, equal => Equal,
        not_equal => NotEqual, less => Less, less_equal => LessEqual, greater => Greater,
        greater_equal => GreaterEqual, logical_and => LogicalAnd, logical_or => LogicalOr,
    }

    reduce_methods! {
        sum => Sum, mean => Mean, max => Max, min => Min, logsumexp => LogSumExp, prod => Prod,
    }

    /// Multiplies by a scalar (in the array's dtype).
    pub fn mul_scalar(&self, v: f64) -> Result<Array> {
        self.multiply(&Array::full(&[], v, self.dtype())?)
    }

    pub fn add_scalar(&self, v: f64) -> Result<Array> {
        self.add(&Array::full(&[], v, self.dtype())?)
    }

    pub fn argmax(&self, axis: i32, keepdims: bool) -> Result<Array> {
        wrap("argmax", bridge::arg_reduce(0, &self.0, axis, keepdims))
    }

    pub fn argmin(&self, axis: i32, keepdims: bool) -> Result<Array> {
        wrap("argmin", bridge::arg_reduce(1, &self.0, axis, keepdims))
    }

    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        if self.dtype() == dtype {
            return Ok(self.clone());
        }
        wrap("astype", bridge::astype(&self.0, dtype as u8))
    }

    /// Reinterprets the bytes as another dtype (the last axis scales by the size ratio).
    pub fn view(&self, dtype: Dtype) -> Result<Array> {
        wrap("view", bridge::view(&self.0, dtype as u8))
    }

    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        wrap("reshape", bridge::reshape(&self.0, shape))
    }

    /// Permutes axes; an empty `axes` reverses them.
    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        wrap("transpose", bridge::transpose(&self.0, axes))
    }

    /// The transpose of the last two axes (a Linear weight's `.T`).
    pub fn t(&self) -> Result<Array> {
        self.swapaxes(-1, -2)
    }

    pub fn swapaxes(&self, a: i32, b: i32) -> Result<Array> {
        wrap("swapaxes", bridge::swapaxes(&self.0, a, b))
    }

    pub fn expand_dims(&self, axis: i32) -> Result<Array> {
        wrap("expand_dims", bridge::expand_dims(&self.0, axis))
    }

    /// Removes the given size-1 axes; empty removes all of them.
    pub fn squeeze(&self, axes: &[i32]) -> Result<Array> {
        wrap("squeeze", bridge::squeeze(&self.0, axes))
    }

    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        wrap("broadcast_to", bridge::broadcast_to(&self.0, shape))
    }

    /// `a[start:stop:strides]` on every axis.
    pub fn slice(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        wrap("slice", bridge::slice(&self.0, start, stop, strides))
    }

    /// `a[.., start:stop]` along one axis, stride 1.
    pub fn slice_axis(&self, axis: i32, start: i32, stop: i32) -> Result<Array> {
        let shape = self.shape();
        let nd = shape.len() as i32;
        let ax = if axis < 0 { nd + axis } else { axis } as usize;
        let mut lo = vec![0; shape.len()];
        let mut hi = shape.clone();
        if ax >= shape.len() {
            return Err(crate::Error::InvalidArgument {
                op: "slice_axis",
                message: format!("axis {axis} out of range for shape {shape:?}"),
            });
        }
        lo[ax] = start;
        hi[ax] = stop;
        self.slice(&lo, &hi, &vec![1; shape.len()])
    }

    /// Returns a copy of `self` with `update` written into `self[start:stop:strides]`.
    pub fn slice_update(
        &self,
        update: &Array,
        start: &[i32],
        stop: &[i32],
        strides: &[i32],
    ) -> Result<Array> {
        wrap(
            "slice_update",
            bridge::slice_update(&self.0, &update.0, start, stop, strides),
        )
    }

    /// Part `index` of `parts` equal pieces along `axis`.
    pub fn split_part(&self, parts: i32, axis: i32, index: usize) -> Result<Array> {
        wrap("split", bridge::split_equal(&self.0, parts, axis, index))
    }

    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        wrap("take", bridge::take(&self.0, &indices.0, axis))
    }

    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        wrap(
            "take_along_axis",
            bridge::take_along_axis(&self.0, &indices.0, axis),
        )
    }

    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        wrap(
            "put_along_axis",
            bridge::put_along_axis(&self.0, &indices.0, &values.0, axis),
        )
    }

    pub fn sort(&self, axis: i32) -> Result<Array> {
        wrap("sort", bridge::sort(&self.0, axis, false))
    }

    pub fn argsort(&self, axis: i32) -> Result<Array> {
        wrap("argsort", bridge::sort(&self.0, axis, true))
    }

    /// Elements before `kth` are <= it and after are >= it (along `axis`).
    pub fn partition(&self, kth: i32, axis: i32) -> Result<Array> {
        wrap("partition", bridge::partition(&self.0, kth, axis, false))
    }

    pub fn argpartition(&self, kth: i32, axis: i32) -> Result<Array> {
        wrap("argpartition", bridge::partition(&self.0, kth, axis, true))
    }

    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        wrap("softmax", bridge::softmax(&self.0, axes, precise))
    }

    pub fn cumsum(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        wrap("cumsum", bridge::cumsum(&self.0, axis, reverse, inclusive))
    }

    pub fn triu(&self, k: i32) -> Result<Array> {
        wrap("triu", bridge::tri_mask(&self.0, k, true))
    }

    pub fn tril(&self, k: i32) -> Result<Array> {
        wrap("tril", bridge::tri_mask(&self.0, k, false))
    }

    pub fn contiguous(&self) -> Result<Array> {
        wrap("contiguous", bridge::contiguous(&self.0))
    }

    pub fn repeat(&self, repeats: i32, axis: i32) -> Result<Array> {
        wrap("repeat", bridge::repeat(&self.0, repeats, axis))
    }

    pub fn clip(&self, lo: f64, hi: f64) -> Result<Array> {
        wrap("clip", bridge::clip(&self.0, lo, hi))
    }

    pub fn matmul(&self, other: &Array) -> Result<Array> {
        wrap("matmul", bridge::matmul(&self.0, &other.0))
    }

    /// `c + self @ b`.
    pub fn addmm(&self, c: &Array, b: &Array) -> Result<Array> {
        wrap("addmm", bridge::addmm(&c.0, &self.0, &b.0))
    }
}
