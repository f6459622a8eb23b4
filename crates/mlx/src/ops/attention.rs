//! Attention on the CPU path as single MLX nodes (src/attention.cc): a prompt's attention, a
//! decode step's RoPE, cache write and attention, and the KV cache's storage formats (the int8
//! rows' layout, quantizing and widening them in MLX ops).
use super::{concatenate, from_list, ptr, where_};
use crate::array::{wrap, Array, Dtype};
use crate::error::{mlx_err, Error, Result};
use crate::ffi::bridge;

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
    if shape.is_empty() || d <= 0 {
        return Err(Error::InvalidArgument {
            op: "kv_quantize_rows",
            message: format!("rows [.., D] expected, got {shape:?}"),
        });
    }
    // x's leading axes, then `last`
    let lead = &shape[..shape.len() - 1];
    let dims = |last: &[i32]| [lead, last].concat();
    let (blocks, padded) = (kv_blocks(d), kv_blocks(d) * KV_BLOCK);
    let x = x.astype(f32)?.clip(-(f32::MAX as f64), f32::MAX as f64)?;
    // zeros up to whole blocks (they change no block's largest magnitude)
    let x = if padded > d {
        concatenate(&[x, Array::zeros(&dims(&[padded - d]), f32)?], -1)?
    } else {
        x
    };
    let x = x.reshape(&dims(&[blocks, KV_BLOCK]))?;
    let scale = x
        .abs()?
        .max(&[-1], true)?
        .divide(&Array::full(&[], 127.0, f32)?)?;
    let positive = scale.greater(&Array::full(&[], 0.0, f32)?)?;
    let divisor = where_(&positive, &scale, &Array::full(&[], 1.0, f32)?)?;
    let q = x
        .divide(&divisor)?
        .round()?
        .clip(-127.0, 127.0)?
        .astype(Dtype::Int8)?
        .reshape(&dims(&[padded]))?
        .slice_axis(-1, 0, d)?;
    let scale_bytes = scale.reshape(&dims(&[blocks]))?.view(Dtype::Int8)?;
    concatenate(&[q, scale_bytes], -1)
}

/// Int8 KV rows ([.., W], [`kv_quantize_rows`]) back as values in `dtype` ([.., D]): each
/// value times its block's scale, computed in float32.
pub fn kv_dequantize_rows(rows: &Array, dtype: Dtype) -> Result<Array> {
    let w = rows.dim(-1);
    // W = D + 4 x blocks: a whole block takes 36 bytes, a last one of k values k + 4 (5..=36),
    // so blocks = ceil((W - 4) / 36) = floor((W + 31) / 36)
    let blocks = (w + KV_BLOCK - 1) / (KV_BLOCK + KV_SCALE_BYTES);
    let d = w - blocks * KV_SCALE_BYTES;
    if rows.dtype() != Dtype::Int8 || d <= 0 || kv_row_width(Dtype::Int8, d) != w {
        return Err(Error::InvalidArgument {
            op: "kv_dequantize_rows",
            message: format!(
                "int8 KV rows [.., D + 4 x blocks] expected, got {:?} {:?}",
                rows.dtype(),
                rows.shape()
            ),
        });
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
