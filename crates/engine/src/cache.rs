//! The per-sequence KV cache: one growing key/value buffer per layer, grown in steps of 256
//! positions so decode writes in place (slice_update) instead of concatenating every token.
//!
//! Models see only the [`KvCache`] trait; the paged, shared cache of the serving layer
//! implements the same trait.
use crate::error::Result;
use cortex_mlx::{ops, Array, Dtype};

pub trait KvCache {
    /// Positions already cached for `layer` before the current forward pass.
    fn layer_offset(&self, layer: usize) -> i32;
    /// Appends k/v ([B, H, L, D]) for `layer`; returns all cached keys and values so far.
    fn update_and_fetch(&mut self, layer: usize, k: Array, v: Array) -> Result<(Array, Array)>;
    /// Total positions cached (layer 0).
    fn offset(&self) -> i32 {
        self.layer_offset(0)
    }
    /// Several sequences in one forward pass (continuous batching): the input holds their
    /// tokens back to back ([1, sum of lens]) and each attends only to its own cache. None:
    /// the input is one sequence continuing at `layer_offset`.
    fn segments(&self) -> Option<&[Segment]> {
        None
    }
    /// With segments: appends every segment's new k/v ([1, H, T, D], RoPE applied, in input
    /// order) for `layer`; returns each segment's cached keys and values ([1, H, S_i, D]).
    fn update_and_fetch_segments(
        &mut self,
        layer: usize,
        _k: Array,
        _v: Array,
    ) -> Result<Vec<(Array, Array)>> {
        Err(crate::error::EngineError::InvalidRequest(format!(
            "layer {layer}: this cache holds one sequence"
        )))
    }
    /// Some(int32 [B]) when the pass is a decode step of B sequences with one new token
    /// each: the position of each one's token. Attention then runs batched through
    /// `update_and_fetch_padded`.
    fn decode_offsets(&self) -> Option<&Array> {
        None
    }
    /// With `decode_offsets`: appends k/v ([B, Hkv, 1, D], RoPE applied) for `layer`; returns
    /// every sequence's keys and values padded to the longest ([B, Hkv, S, D]).
    fn update_and_fetch_padded(
        &mut self,
        layer: usize,
        _k: Array,
        _v: Array,
    ) -> Result<(Array, Array)> {
        Err(crate::error::EngineError::InvalidRequest(format!(
            "layer {layer}: this cache has no batched decode"
        )))
    }
    /// On the CPU path, for a step of one new token per sequence, where the cache can do it:
    /// RoPE, the cache write and attention in one kernel (`cortex_mlx::ops::decode_attention`).
    /// Some(output [.., Hq * D], heads merged); None when this cache or step cannot, and then
    /// nothing was written (the caller attends the general way).
    fn attend_decode_fused(
        &mut self,
        _layer: usize,
        _step: &crate::nn::FusedDecode<'_>,
    ) -> Result<Option<Array>> {
        Ok(None)
    }
    /// With `decode_offsets`: the keep-mask [B, S] over the padded keys (see
    /// `nn::decode_keep_mask`); caches may compute it once per pass instead of per layer.
    fn decode_keep_mask(&mut self, _window: Option<i32>) -> Result<Array> {
        Err(crate::error::EngineError::InvalidRequest(
            "this cache has no batched decode".into(),
        ))
    }
    /// Rows of the input whose logits are wanted (int32 [R]); None: every row. Models apply
    /// the output head to these rows only.
    fn logit_rows(&self) -> Option<&Array> {
        None
    }
}

/// One sequence's part of a batched forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Positions already cached for this sequence (where its new tokens start).
    pub offset: i32,
    /// New tokens in this pass.
    pub len: i32,
}

/// `a` (new keys or values, [.., D]) as a cache of `dtype` stores it. Int8 (the int8 path's
/// cache, `compute::kv_dtype`): rows of D values and their blocks' scales ([.., W],
/// `ops::kv_quantize_rows`, the decode kernel's own arithmetic). Into float16 values saturate
/// at +-65504 as the decode kernel's write does: an infinite key would make every score of
/// its head NaN.
pub(crate) fn to_stored(a: &Array, dtype: Dtype) -> Result<Array> {
    if a.dtype() == dtype {
        return Ok(a.clone());
    }
    if dtype == Dtype::Int8 {
        return Ok(ops::kv_quantize_rows(a)?);
    }
    let a = if dtype == Dtype::Float16 {
        a.clip(-65504.0, 65504.0)?
    } else {
        a.clone()
    };
    Ok(a.astype(dtype)?)
}

/// Whether the CPU decode attention kernel reads a cache of `dtype`: float32, float16, or
/// int8 rows (the int8 path's).
pub(crate) fn kernel_storage(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Int8)
}

/// Cached keys or values ([.., W]) as [.., D] in `dtype`, the one attention computes in (the
/// conversion from float16 is exact; int8 rows are their values times their scale).
pub(crate) fn from_stored(a: Array, dtype: Dtype) -> Result<Array> {
    Ok(if a.dtype() == dtype {
        a
    } else if a.dtype() == Dtype::Int8 {
        ops::kv_dequantize_rows(&a, dtype)?
    } else {
        a.astype(dtype)?
    })
}

/// The shape [B, H, W] of a cache's rows of `head_dim` values stored in `dtype` (W:
/// `ops::kv_row_width`).
fn stored_rows(b: i32, heads: i32, head_dim: i32, dtype: Dtype) -> [i32; 3] {
    [b, heads, ops::kv_row_width(dtype, head_dim)]
}

#[derive(Default)]
struct LayerKv {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

pub struct SimpleKvCache {
    layers: Vec<LayerKv>,
}

const STEP: i32 = 256;

impl SimpleKvCache {
    pub fn new(num_layers: usize) -> Self {
        SimpleKvCache {
            layers: (0..num_layers).map(|_| LayerKv::default()).collect(),
        }
    }

    /// Every live buffer (to evaluate together with a step's output).
    pub fn arrays(&self) -> Vec<Array> {
        self.layers
            .iter()
            .flat_map(|l| l.keys.iter().chain(l.values.iter()).cloned())
            .collect()
    }

    /// Drops the last `n` positions (e.g. to re-run a prompt suffix).
    pub fn trim(&mut self, n: i32) {
        for l in &mut self.layers {
            l.offset = (l.offset - n).max(0);
        }
    }
}

/// A buffer [B, H, capacity, D] with room for `more` positions after the first `used` of
/// `buf` (kept), in steps of [`STEP`].
fn grow(buf: Option<Array>, used: i32, more: i32, shape: [i32; 3], dtype: Dtype) -> Result<Array> {
    let [b, h, d] = shape;
    let steps = (more + STEP - 1) / STEP;
    let fresh = Array::zeros(&[b, h, steps * STEP, d], dtype)?;
    Ok(match buf {
        None => fresh,
        Some(old) => {
            let kept = if old.dim(2) != used {
                old.slice_axis(2, 0, used)?
            } else {
                old
            };
            ops::concatenate(&[kept, fresh], 2)?
        }
    })
}

impl SimpleKvCache {
    /// Layer `layer`'s entry, with room for `more` positions past its offset; `like` gives the
    /// shape ([B, H, _, W], `stored_rows`) and `dtype` the element type of a layer's first
    /// buffers (a grown buffer keeps its own).
    fn reserve(
        &mut self,
        layer: usize,
        more: i32,
        like: [i32; 3],
        dtype: Dtype,
    ) -> Result<&mut LayerKv> {
        if layer >= self.layers.len() {
            self.layers.resize_with(layer + 1, LayerKv::default);
        }
        let entry = &mut self.layers[layer];
        let capacity = entry.keys.as_ref().map_or(0, |a| a.dim(2));
        let dtype = entry.keys.as_ref().map_or(dtype, Array::dtype);
        if entry.offset + more > capacity {
            entry.keys = Some(grow(entry.keys.take(), entry.offset, more, like, dtype)?);
            entry.values = Some(grow(entry.values.take(), entry.offset, more, like, dtype)?);
        }
        Ok(entry)
    }
}

impl KvCache for SimpleKvCache {
    fn layer_offset(&self, layer: usize) -> i32 {
        self.layers.get(layer).map_or(0, |l| l.offset)
    }

    fn update_and_fetch(&mut self, layer: usize, k: Array, v: Array) -> Result<(Array, Array)> {
        let l = k.dim(2);
        let computed = k.dtype();
        let stored = crate::compute::kv_dtype(computed);
        let like = stored_rows(k.dim(0), k.dim(1), k.dim(3), stored);
        let entry = self.reserve(layer, l, like, stored)?;
        let prev = entry.offset;
        let end = prev + l;
        let write = |buf: &Array, upd: &Array| -> Result<Array> {
            let (b, h, d) = (buf.dim(0), buf.dim(1), buf.dim(3));
            let upd = to_stored(upd, buf.dtype())?;
            Ok(buf.slice_update(&upd, &[0, 0, prev, 0], &[b, h, end, d], &[1, 1, 1, 1])?)
        };
        let keys = write(entry.keys.as_ref().expect("grown above"), &k)?;
        let values = write(entry.values.as_ref().expect("grown above"), &v)?;
        entry.offset = end;
        let view = |a: &Array| -> Result<Array> {
            let part = if a.dim(2) == end {
                a.clone()
            } else {
                a.slice_axis(2, 0, end)?
            };
            from_stored(part, computed)
        };
        let out = (view(&keys)?, view(&values)?);
        entry.keys = Some(keys);
        entry.values = Some(values);
        Ok(out)
    }

    fn attend_decode_fused(
        &mut self,
        layer: usize,
        step: &crate::nn::FusedDecode<'_>,
    ) -> Result<Option<Array>> {
        let (q, dims) = (step.q, step.dims);
        let f32 = Dtype::Float32;
        let cached = self.layers.get(layer).and_then(|l| l.keys.as_ref());
        let other = |k: &Array| !kernel_storage(k.dtype()) || k.dim(0) != 1;
        if q.ndim() != 3
            || q.dim(0) != 1
            || q.dim(1) != 1
            || q.dtype() != f32
            || cached.is_some_and(other)
        {
            return Ok(None);
        }
        let stored = crate::compute::kv_dtype(f32);
        let like = stored_rows(1, dims.n_kv_heads, dims.head_dim, stored);
        let entry = self.reserve(layer, 1, like, stored)?;
        let position = Array::from_slice(&[entry.offset], &[1])?;
        let (out, keys, values) = ops::decode_attention(
            &step.kernel_step(&position),
            ops::KvStorage::Sequence {
                keys: entry.keys.as_ref().expect("reserved"),
                values: entry.values.as_ref().expect("reserved"),
            },
        )?;
        entry.keys = Some(keys);
        entry.values = Some(values);
        entry.offset += 1;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::{scoped, Compute, ComputePath};

    /// What each path's cache keeps, and hands attention back as float32. The int8 path: int8
    /// rows (`ops::kv_quantize_rows`: per position and head, D values over their scale, the
    /// largest magnitude / 127, then the scale), so each value comes back as its int8 value
    /// times its row's scale and a value far below its row's largest becomes 0. The float
    /// path's default: float16, each value rounded to nearest even (a subnormal too) and
    /// saturated at 65504. The exact path: float32, as they were.
    #[test]
    fn each_paths_cache_stores_its_rows() {
        // two positions of one head, D = 4
        let x = [0.1f32, 1.0e6, -3.0, 2.5e-7, 1.0, -0.5, 0.25, 0.0];
        let k = Array::from_slice(&x, &[1, 1, 2, 4]).unwrap();
        let (big, one) = (1.0e6f32 / 127.0, 1.0f32 / 127.0);
        let cases = [
            // -0.5 * 127 = -63.5 rounds to even
            (
                (true, false),
                vec![
                    0.0,
                    127.0 * big,
                    0.0,
                    0.0,
                    127.0 * one,
                    -64.0 * one,
                    32.0 * one,
                    0.0,
                ],
                (Dtype::Int8, 8),
            ),
            // 0.1 = 1.6 * 2^-4: 1 + 614 / 1024; 2.5e-7 = 4.19 * 2^-24, float16's least step
            (
                (false, true),
                vec![
                    0.099975586,
                    65504.0,
                    -3.0,
                    2.3841858e-7,
                    1.0,
                    -0.5,
                    0.25,
                    0.0,
                ],
                (Dtype::Float16, 4),
            ),
            ((false, false), x.to_vec(), (Dtype::Float32, 4)),
        ];
        for ((int8, half_kv), want, stored) in cases {
            let compute = Compute {
                path: ComputePath::Cpu,
                scalar_kernels: false,
                int8_activations: int8,
                half_kv,
            };
            let mut cache = SimpleKvCache::new(1);
            let (keys, values) =
                scoped(compute, || cache.update_and_fetch(0, k.clone(), k.clone())).unwrap();
            assert_eq!(keys.dtype(), Dtype::Float32);
            assert_eq!(keys.shape(), vec![1, 1, 2, 4]);
            assert_eq!(
                keys.to_vec::<f32>().unwrap(),
                want,
                "int8 {int8}, half {half_kv}"
            );
            assert_eq!(
                values.to_vec::<f32>().unwrap(),
                want,
                "int8 {int8}, half {half_kv}"
            );
            for a in cache.arrays() {
                assert_eq!((a.dtype(), a.dim(3)), stored, "int8 {int8}, half {half_kv}");
            }
        }
    }
}
