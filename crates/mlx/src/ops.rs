//! Array operations: element-wise math, reductions, shape manipulation, indexing, sorting,
//! matmul and affine quantization, plus our CPU gemv kernels. Methods on [`Array`] so model
//! code reads as a chain.
use crate::array::{wrap, Array, Dtype};
use crate::error::{mlx_err, Error, Result};
use crate::ffi::bridge;
use cxx::UniquePtr;

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

fn ptr(a: Option<&Array>) -> *const bridge::Array {
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

/// RoPE for [`decode_attention`], as [`crate::fast::rope`] applies it: over the first `dims`
/// features of each head, angle (position x `scale`) x `inv_freq[i]` (float32 [dims / 2]),
/// pairs (i, i + dims/2) or, when `traditional`, (2i, 2i + 1); the rotated features are first
/// multiplied by `input_scale`.
#[derive(Clone, Copy)]
pub struct RopeTable<'a> {
    pub inv_freq: &'a Array,
    pub dims: i32,
    pub traditional: bool,
    pub scale: f32,
    pub input_scale: f32,
}

/// A prompt's attention on the CPU as one node (src/attention.cc): queries q [1, Hq, L, D]
/// (float32, RoPE applied) at positions `q_start..q_start + L` of one sequence whose keys and
/// values ([1, Hkv, S, D], float32 or float16, views welcome) hold positions 0..S; each query
/// sees the keys up to its own position (its last `window`, when > 0), scores scaled by
/// `scale` and capped as cap x tanh(s / cap) when `softcap` > 0. Returns [1, L, Hq * D], the
/// heads merged. The kernels and arithmetic are [`decode_attention`]'s, a row per query.
pub fn prefill_attention(
    q: &Array,
    keys: &Array,
    values: &Array,
    q_start: i32,
    scale: f32,
    softcap: f32,
    window: i32,
) -> Result<Array> {
    wrap(
        "prefill_attention",
        bridge::prefill_attention(&q.0, &keys.0, &values.0, q_start, scale, softcap, window),
    )
}

/// Elements a KV cache of `dtype` stores per row of `head_dim` values: `head_dim`, or for int8
/// rows ([`kv_quantize_rows`]) `head_dim` and four bytes per block of [`KV_BLOCK`] values (its
/// float32 scale).
pub fn kv_row_width(dtype: Dtype, head_dim: i32) -> i32 {
    if dtype == Dtype::Int8 {
        head_dim + kv_blocks(head_dim) * KV_SCALE_BYTES
    } else {
        head_dim
    }
}

/// Values per scale in an int8 KV row. A row of 64 under one scale flipped 1.4% of SmolLM2's
/// greedy tokens against the float path (bench/accuracy.sh); blocks of 32 about half as many,
/// and a row's error then does not grow with the head dimension.
pub const KV_BLOCK: i32 = 32;

/// The bytes of an int8 KV block's scale.
const KV_SCALE_BYTES: i32 = std::mem::size_of::<f32>() as i32;

/// Blocks of an int8 KV row of `head_dim` values (the last may be short).
fn kv_blocks(head_dim: i32) -> i32 {
    (head_dim + KV_BLOCK - 1) / KV_BLOCK
}

/// Rows of `x` ([.., D], float) as an int8 KV cache stores them: [.., W] int8
/// ([`kv_row_width`]). Per block of [`KV_BLOCK`] values (the last may be short), each value is
/// divided by the block's scale (its largest magnitude / 127, infinities taken as the largest
/// finite float), rounded to nearest even and clamped to +-127; after the D values come the
/// blocks' scales (float32, native byte order). An all-zero block has scale 0.
/// [`decode_attention`] writes its new rows with the same arithmetic: a row stored either way
/// is the same bytes.
pub fn kv_quantize_rows(x: &Array) -> Result<Array> {
    let f32 = Dtype::Float32;
    let shape = x.shape();
    let d = x.dim(-1);
    let blocks = kv_blocks(d);
    if shape.is_empty() || d <= 0 {
        return Err(invalid(format!("rows [.., D] expected, got {shape:?}")));
    }
    let x = x.astype(f32)?.clip(-(f32::MAX as f64), f32::MAX as f64)?;
    // zeros up to whole blocks (they change no block's largest magnitude)
    let padded = blocks * KV_BLOCK;
    let x = if padded > d {
        let mut pad = shape.clone();
        *pad.last_mut().expect("not empty") = padded - d;
        concatenate(&[x, Array::zeros(&pad, f32)?], -1)?
    } else {
        x
    };
    let mut blocked = shape.clone();
    blocked.pop();
    let lead = blocked.clone();
    blocked.extend([blocks, KV_BLOCK]);
    let x = x.reshape(&blocked)?;
    let scale = x
        .abs()?
        .max(&[-1], true)?
        .divide(&Array::full(&[], 127.0, f32)?)?;
    let positive = scale.greater(&Array::full(&[], 0.0, f32)?)?;
    let divisor = where_(&positive, &scale, &Array::full(&[], 1.0, f32)?)?;
    let mut flat = lead.clone();
    flat.push(padded);
    let q = x
        .divide(&divisor)?
        .round()?
        .clip(-127.0, 127.0)?
        .astype(Dtype::Int8)?
        .reshape(&flat)?
        .slice_axis(-1, 0, d)?;
    let mut scales = lead;
    scales.push(blocks);
    let scale_bytes = scale.reshape(&scales)?.view(Dtype::Int8)?;
    concatenate(&[q, scale_bytes], -1)
}

/// Int8 KV rows ([.., W], [`kv_quantize_rows`]) back as values in `dtype` ([.., D]): each
/// value times its block's scale, computed in float32.
pub fn kv_dequantize_rows(rows: &Array, dtype: Dtype) -> Result<Array> {
    let w = rows.dim(-1);
    // W = D + 4 x blocks, a whole block taking 36 bytes and a last one of k values k + 4
    let blocks = (w - KV_SCALE_BYTES + KV_BLOCK + KV_SCALE_BYTES - 1) / (KV_BLOCK + KV_SCALE_BYTES);
    let d = w - blocks * KV_SCALE_BYTES;
    if rows.dtype() != Dtype::Int8 || d <= 0 || kv_row_width(Dtype::Int8, d) != w {
        return Err(invalid(format!(
            "int8 KV rows [.., D + 4 x blocks] expected, got {:?} {:?}",
            rows.dtype(),
            rows.shape()
        )));
    }
    let values = rows.slice_axis(-1, 0, d)?.astype(Dtype::Float32)?;
    let scale = rows
        .slice_axis(-1, d, w)?
        .contiguous()?
        .view(Dtype::Float32)?
        .repeat(KV_BLOCK, -1)?
        .slice_axis(-1, 0, d)?;
    values.multiply(&scale)?.astype(dtype)
}

/// Where [`decode_attention`] keeps keys and values: float32 arrays, float16 (half the bytes for
/// attention to read), or int8 rows ([`kv_quantize_rows`]: 72 bytes for 64 values, against
/// float32's 256). Into float16 the new rows are rounded to nearest even, as `astype`
/// rounds, but saturate at +-65504 instead of becoming infinite; reads widen them exactly.
/// Into int8 rows they are quantized as [`kv_quantize_rows`] does; reads take each value as
/// its int8 value times its block's scale, the bits [`kv_dequantize_rows`] gives, so attention
/// over int8 rows equals attention over their dequantized copy exactly. A stored row is
/// W = [`kv_row_width`] elements.
#[derive(Clone, Copy)]
pub enum KvStorage<'a> {
    /// One sequence: keys and values [1, Hkv, capacity, W]; the new token's row goes to its
    /// position.
    Sequence { keys: &'a Array, values: &'a Array },
    /// A pool shared by sequences: keys and values [slots, Hkv, W]; `write` int32 [R] is the
    /// slot of each row's new token and `table` int32 [R, S] the slot of each of its positions
    /// (padding past a row's length is never read).
    Paged {
        keys: &'a Array,
        values: &'a Array,
        write: &'a Array,
        table: &'a Array,
    },
}

/// A decode step's attention, one new token per row: q [.., Hq * D] and k, v [.., Hkv * D]
/// (float32, R rows), each row's token at `positions[r]` (int32 [R]); it sees positions
/// 0..=positions[r] (or its last `window`; 0 = all) and its scores are capped as
/// cap x tanh(s / cap) when `softcap` > 0.
#[derive(Clone, Copy)]
pub struct DecodeStep<'a> {
    pub q: &'a Array,
    pub k: &'a Array,
    pub v: &'a Array,
    pub positions: &'a Array,
    pub head_dim: i32,
    pub rope: RopeTable<'a>,
    pub scale: f32,
    pub softcap: f32,
    pub window: i32,
}

/// RoPE on each row's query and key, the key and value written into `storage`, attention over
/// the row's cached positions: one CPU primitive (src/attention.cc) for what is otherwise about
/// twenty MLX nodes per layer. Returns the attention output (q's shape, heads merged) and the
/// keys and values storage after the write.
///
/// The write is in place: the returned storage shares the given arrays' memory (a view or a
/// broadcast is copied first), so a holder of the old arrays sees the new rows appear. That is
/// sound for a cache, where the rows written are ones no earlier reader was shown. The kernel
/// indexes the storage unchecked, so this reads `positions`, `write` and `table` back (small
/// int32 arrays) and refuses a position or slot outside the storage.
pub fn decode_attention(
    step: &DecodeStep<'_>,
    storage: KvStorage<'_>,
) -> Result<(Array, Array, Array)> {
    let (keys, values, paged) = match storage {
        KvStorage::Sequence { keys, values } => {
            check_sequence_positions(keys, step.positions)?;
            (keys, values, None)
        }
        KvStorage::Paged {
            keys,
            values,
            write,
            table,
        } => {
            check_paged_table(keys, write, table, step.positions, step.window)?;
            (keys, values, Some((write, table)))
        }
    };
    let r = step.rope;
    // Safety: the pointers are null or borrow Arrays that outlive the call.
    let list = unsafe {
        bridge::decode_attention(
            &step.q.0,
            &step.k.0,
            &step.v.0,
            &keys.0,
            &values.0,
            &step.positions.0,
            &r.inv_freq.0,
            ptr(paged.map(|p| p.0)),
            ptr(paged.map(|p| p.1)),
            step.head_dim,
            r.dims,
            r.traditional,
            r.scale,
            r.input_scale,
            step.scale,
            step.softcap,
            step.window,
        )
    }
    .map_err(mlx_err("decode_attention"))?;
    let mut parts = from_list("decode_attention", &list)?
        .into_iter()
        .map(|(_, a)| a);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(out), Some(k), Some(v)) => Ok((out, k, v)),
        _ => Err(invalid(
            "the kernel returned fewer than three arrays".into(),
        )),
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument {
        op: "decode_attention",
        message,
    }
}

/// An index array's values on the host, without a conversion node when it is int32 already
/// (reading data already on the host needs no eval; see `to_bytes`).
fn host_i32(a: &Array) -> Result<Vec<i32>> {
    if a.dtype() == Dtype::Int32 {
        a.to_vec::<i32>()
    } else {
        a.astype(Dtype::Int32)?.to_vec::<i32>()
    }
}

/// One sequence's new token lies within its cache buffer [1, Hkv, capacity, D].
fn check_sequence_positions(keys: &Array, positions: &Array) -> Result<()> {
    if keys.ndim() != 4 || positions.size() != 1 {
        return Err(invalid(
            "one sequence's cache [1, Hkv, capacity, D] and one position expected".into(),
        ));
    }
    let p = host_i32(positions)?[0];
    if !(0..keys.dim(2)).contains(&p) {
        return Err(invalid(format!(
            "position {p} is outside the cache's {} positions",
            keys.dim(2)
        )));
    }
    Ok(())
}

/// Every slot a row writes or reads (its positions 0..=positions[r], or the last `window` of
/// them) lies in the pool, and every length within the table.
fn check_paged_table(
    keys: &Array,
    write: &Array,
    table: &Array,
    positions: &Array,
    window: i32,
) -> Result<()> {
    if keys.ndim() != 3
        || table.ndim() != 2
        || positions.ndim() != 1
        || write.size() != positions.size()
        || positions.dim(0) != table.dim(0)
    {
        return Err(invalid(
            "a pool [slots, Hkv, D], write slots [R], table [R, S] and positions [R] expected"
                .into(),
        ));
    }
    let (width, slots) = (table.dim(1), keys.dim(0));
    let table = host_i32(table)?;
    let positions = host_i32(positions)?;
    let write = host_i32(write)?;
    for (row, (&pos, &slot)) in positions.iter().zip(&write).enumerate() {
        if !(0..width).contains(&pos) {
            return Err(invalid(format!(
                "row {row} is at position {pos}; the table holds {width} positions"
            )));
        }
        let len = pos + 1;
        let start = if window > 0 { (len - window).max(0) } else { 0 };
        let seen = &table[row * width as usize..][start as usize..len as usize];
        if let Some(bad) = std::iter::once(&slot)
            .chain(seen)
            .find(|s| !(0..slots).contains(*s))
        {
            return Err(invalid(format!(
                "row {row} uses slot {bad}; the pool has {slots}"
            )));
        }
    }
    Ok(())
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
