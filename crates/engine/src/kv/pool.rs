//! The KV pool's MLX arrays and the per-step view models write through.
use super::BlockId;
use crate::cache::{from_stored, kernel_storage, to_stored, KvCache, Segment};
use crate::error::{EngineError, Result};
use cortex_mlx::{Array, Dtype};

/// Per layer, keys and values of shape [capacity, kv_heads, head_dim], created on first write
/// (their head layout comes from the model's k/v). The budget is `slots`; the buffers start
/// small and double when a pass touches a slot beyond them (the allocator hands out low block
/// ids first), so memory follows the peak number of tokens cached, not the budget.
pub struct KvPool {
    slots: i32,
    /// Rows the buffers have now.
    capacity: i32,
    keys: Vec<Option<Array>>,
    values: Vec<Option<Array>>,
}

/// The smallest buffer the pool starts with (rows).
const MIN_CAPACITY: i32 = 1024;

impl KvPool {
    pub fn new(num_layers: usize, slots: usize) -> Self {
        KvPool {
            slots: slots as i32,
            capacity: 0,
            keys: vec![None; num_layers],
            values: vec![None; num_layers],
        }
    }

    /// Rows allocated per layer now (<= the budget).
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Grows every buffer to hold slot `needed - 1` (doubling, capped at the budget).
    fn reserve(&mut self, needed: i32) -> Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let target = needed
            .max(self.capacity.saturating_mul(2))
            .max(MIN_CAPACITY)
            .min(self.slots)
            .max(needed);
        for buf in self.keys.iter_mut().chain(self.values.iter_mut()).flatten() {
            let extra = Array::zeros(&[target - buf.dim(0), buf.dim(1), buf.dim(2)], buf.dtype())?;
            *buf = cortex_mlx::ops::concatenate(&[buf.clone(), extra], 0)?;
        }
        self.capacity = target;
        Ok(())
    }

    /// Every layer's buffers (evaluate them with each step's output so the pool never grows
    /// a graph).
    pub fn arrays(&self) -> Vec<Array> {
        self.keys
            .iter()
            .chain(&self.values)
            .flatten()
            .cloned()
            .collect()
    }

    /// Copies whole blocks (copy-on-write) in every layer: `(source, destination)` pairs.
    pub fn copy_blocks(&mut self, copies: &[(BlockId, BlockId)], block_size: usize) -> Result<()> {
        if copies.is_empty() {
            return Ok(());
        }
        let slots = |pick: fn(&(BlockId, BlockId)) -> BlockId| -> Result<Array> {
            let v: Vec<i32> = copies
                .iter()
                .flat_map(|c| {
                    let b = pick(c) as usize * block_size;
                    (b..b + block_size).map(|s| s as i32)
                })
                .collect();
            Ok(Array::from_slice(&v, &[v.len() as i32])?)
        };
        let top = copies.iter().map(|c| c.1 as usize + 1).max().unwrap_or(0) * block_size;
        self.reserve(top as i32)?;
        let (src, dst) = (slots(|c| c.0)?, slots(|c| c.1)?);
        let dst_idx = dst.reshape(&[-1, 1, 1])?;
        for buf in self.keys.iter_mut().chain(self.values.iter_mut()).flatten() {
            let rows = buf.take(&src, 0)?;
            *buf = buf.put_along_axis(&dst_idx, &rows, 0)?;
        }
        Ok(())
    }

    /// A layer's buffer; a new one holds `like`'s rows ([_, H, D]) as the cache stores them
    /// (`compute::kv_dtype`: [rows, H, W]).
    fn buffer(slot: &mut Option<Array>, rows: i32, like: &Array) -> Result<Array> {
        Ok(match slot.take() {
            Some(a) => a,
            None => new_buffer(
                rows,
                like.dim(1),
                like.dim(2),
                crate::compute::kv_dtype(like.dtype()),
            )?,
        })
    }
}

/// A zeroed layer buffer of `rows` slots for `heads` rows of `head_dim` values stored in
/// `dtype` ([rows, heads, W], W: `ops::kv_row_width`).
fn new_buffer(rows: i32, heads: i32, head_dim: i32, dtype: Dtype) -> Result<Array> {
    let width = cortex_mlx::ops::kv_row_width(dtype, head_dim);
    Ok(Array::zeros(&[rows, heads, width], dtype)?)
}

/// A pure decode step's index arrays, made in the shapes the attention kernel takes: the
/// kernel checks them on the host, and an array still to be computed (a reshape of one of
/// these) would be evaluated there, which waits behind everything queued on the stream: the
/// whole previous step, when the serving engine builds the next one ahead.
#[derive(Clone)]
struct DecodeBatch {
    /// int32 [B]: the position of each sequence's new token.
    offsets: Array,
    /// int32 [B]: the slot each sequence's new token is written to.
    write: Array,
    /// int32 [B, S]: every sequence's slots padded to the longest (padding repeats a valid
    /// slot; it is masked or never read).
    padded: Array,
    longest: i32,
}

/// One forward pass over several sequences: where each new token's K/V goes, which slots each
/// sequence reads, and which rows need logits.
pub struct BatchView<'a> {
    pool: &'a mut KvPool,
    segments: Vec<Segment>,
    /// int32 [T, 1, 1]: the slot of every new token, in input order.
    write: Array,
    /// int32 [sum of offset + len]: every segment's slots, its positions in order, segment
    /// after segment (one gather per layer serves them all).
    read: Array,
    /// Per segment, where its slots start in `read` and how many.
    read_spans: Vec<(i32, i32)>,
    logit_rows: Option<Array>,
    /// For a pure decode step: positions, write slots and the padded slot table.
    decode: Option<DecodeBatch>,
    /// Keep-masks of this decode step by attention window (the same for every layer).
    masks: Vec<(Option<i32>, Array)>,
}

impl<'a> BatchView<'a> {
    /// `slots[i]` lists segment i's slots for positions 0..offset+len (the last `len` are the
    /// new tokens'); `logit_rows` are input rows whose logits are wanted.
    pub fn new(
        pool: &'a mut KvPool,
        segments: Vec<Segment>,
        slots: &[Vec<i32>],
        logit_rows: &[i32],
    ) -> Result<Self> {
        if segments.len() != slots.len() || segments.is_empty() {
            return Err(EngineError::InvalidRequest(
                "a batch needs one slot list per segment".into(),
            ));
        }
        let mut write = Vec::new();
        let mut read = Vec::new();
        let mut read_spans = Vec::with_capacity(slots.len());
        for (s, sl) in segments.iter().zip(slots) {
            if sl.len() != (s.offset + s.len) as usize {
                return Err(EngineError::InvalidRequest(format!(
                    "segment {s:?} has {} slots",
                    sl.len()
                )));
            }
            write.extend_from_slice(&sl[s.offset as usize..]);
            read_spans.push((read.len() as i32, sl.len() as i32));
            read.extend_from_slice(sl);
        }
        let top = slots.iter().flatten().copied().max().unwrap_or(0);
        pool.reserve(top + 1)?;
        let logit_rows = Some(Array::from_slice(logit_rows, &[logit_rows.len() as i32])?);
        let decode = if segments.iter().all(|s| s.len == 1) {
            let longest = slots.iter().map(Vec::len).max().unwrap_or(1);
            let mut padded = Vec::with_capacity(longest * slots.len());
            for sl in slots {
                padded.extend_from_slice(sl);
                padded.extend(std::iter::repeat_n(sl[0], longest - sl.len()));
            }
            let offsets: Vec<i32> = segments.iter().map(|s| s.offset).collect();
            let b = offsets.len() as i32;
            Some(DecodeBatch {
                offsets: Array::from_slice(&offsets, &[b])?,
                write: Array::from_slice(&write, &[b])?,
                padded: Array::from_slice(&padded, &[b, longest as i32])?,
                longest: longest as i32,
            })
        } else {
            None
        };
        let write = Array::from_slice(&write, &[write.len() as i32, 1, 1])?;
        Ok(BatchView {
            pool,
            segments,
            write,
            read: Array::from_slice(&read, &[read.len() as i32])?,
            read_spans,
            logit_rows,
            decode,
            masks: Vec::new(),
        })
    }

    /// Writes new rows ([T, H, D], in input order) into `layer`'s buffers; returns them.
    fn write(&mut self, layer: usize, k: &Array, v: &Array) -> Result<(Array, Array)> {
        if layer >= self.pool.keys.len() {
            return Err(EngineError::InvalidRequest(format!(
                "layer {layer} is beyond the pool's {} layers",
                self.pool.keys.len()
            )));
        }
        let rows = self.pool.capacity;
        let keys = KvPool::buffer(&mut self.pool.keys[layer], rows, k)?;
        let keys = keys.put_along_axis(&self.write, &to_stored(k, keys.dtype())?, 0)?;
        let values = KvPool::buffer(&mut self.pool.values[layer], rows, v)?;
        let values = values.put_along_axis(&self.write, &to_stored(v, values.dtype())?, 0)?;
        self.pool.keys[layer] = Some(keys.clone());
        self.pool.values[layer] = Some(values.clone());
        Ok((keys, values))
    }
}

impl KvCache for BatchView<'_> {
    fn layer_offset(&self, _layer: usize) -> i32 {
        self.segments[0].offset
    }

    fn update_and_fetch(&mut self, layer: usize, _k: Array, _v: Array) -> Result<(Array, Array)> {
        Err(EngineError::InvalidRequest(format!(
            "layer {layer}: a batch view is written through update_and_fetch_segments"
        )))
    }

    fn segments(&self) -> Option<&[Segment]> {
        Some(&self.segments)
    }

    fn update_and_fetch_segments(
        &mut self,
        layer: usize,
        k: Array,
        v: Array,
    ) -> Result<Vec<(Array, Array)>> {
        // [1, H, T, D] -> [T, H, D]
        let rows = |a: &Array| -> Result<Array> { Ok(a.squeeze(&[0])?.transpose(&[1, 0, 2])?) };
        let (keys, values) = self.write(layer, &rows(&k)?, &rows(&v)?)?;
        // every segment's rows in one gather (and one conversion from the stored type: int8
        // rows take several MLX nodes to widen), then each segment's [S, H, D] ->
        // [1, H, S, D], in k's dtype
        let computed = k.dtype();
        let gather =
            |buf: &Array| -> Result<Array> { from_stored(buf.take(&self.read, 0)?, computed) };
        let (keys, values) = (gather(&keys)?, gather(&values)?);
        let part = |all: &Array, (start, len): (i32, i32)| -> Result<Array> {
            Ok(all
                .slice_axis(0, start, start + len)?
                .transpose(&[1, 0, 2])?
                .expand_dims(0)?)
        };
        self.read_spans
            .iter()
            .map(|&span| Ok((part(&keys, span)?, part(&values, span)?)))
            .collect()
    }

    fn decode_offsets(&self) -> Option<&Array> {
        self.decode.as_ref().map(|d| &d.offsets)
    }

    fn attend_decode_fused(
        &mut self,
        layer: usize,
        step: &crate::nn::FusedDecode<'_>,
    ) -> Result<Option<Array>> {
        let Some(d) = self.decode.clone() else {
            return Ok(None);
        };
        let f32 = Dtype::Float32;
        let stored = self.pool.keys.get(layer).and_then(Option::as_ref);
        if step.q.dtype() != f32 || stored.is_some_and(|k| !kernel_storage(k.dtype())) {
            return Ok(None);
        }
        if layer >= self.pool.keys.len() {
            return Err(EngineError::InvalidRequest(format!(
                "layer {layer} is beyond the pool's {} layers",
                self.pool.keys.len()
            )));
        }
        let storage = |buf: &Option<Array>| -> Result<Array> {
            Ok(match buf {
                Some(a) => a.clone(),
                None => new_buffer(
                    self.pool.capacity,
                    step.dims.n_kv_heads,
                    step.dims.head_dim,
                    crate::compute::kv_dtype(f32),
                )?,
            })
        };
        let (keys, values) = (
            storage(&self.pool.keys[layer])?,
            storage(&self.pool.values[layer])?,
        );
        let (out, keys, values) = cortex_mlx::ops::decode_attention(
            &step.kernel_step(&d.offsets),
            cortex_mlx::ops::KvStorage::Paged {
                keys: &keys,
                values: &values,
                write: &d.write,
                table: &d.padded,
            },
        )?;
        self.pool.keys[layer] = Some(keys);
        self.pool.values[layer] = Some(values);
        Ok(Some(out))
    }

    fn decode_keep_mask(&mut self, window: Option<i32>) -> Result<Array> {
        if let Some((_, m)) = self.masks.iter().find(|(w, _)| *w == window) {
            return Ok(m.clone());
        }
        let Some(d) = &self.decode else {
            return Err(EngineError::InvalidRequest("not a decode step".into()));
        };
        let m = crate::nn::decode_keep_mask(&d.offsets, d.longest, window)?;
        self.masks.push((window, m.clone()));
        Ok(m)
    }

    fn update_and_fetch_padded(
        &mut self,
        layer: usize,
        k: Array,
        v: Array,
    ) -> Result<(Array, Array)> {
        let Some(DecodeBatch { padded, .. }) = self.decode.clone() else {
            return Err(EngineError::InvalidRequest("not a decode step".into()));
        };
        // [B, H, 1, D] -> [B, H, D]
        let computed = k.dtype();
        let (keys, values) = self.write(layer, &k.squeeze(&[2])?, &v.squeeze(&[2])?)?;
        // [B, S, H, D] -> [B, H, S, D], in k's dtype
        let gather = |buf: &Array| -> Result<Array> {
            Ok(from_stored(buf.take(&padded, 0)?, computed)?.transpose(&[0, 2, 1, 3])?)
        };
        Ok((gather(&keys)?, gather(&values)?))
    }

    fn logit_rows(&self) -> Option<&Array> {
        self.logit_rows.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decode kernel checks its index arrays on the host; an array still to be computed
    /// would be evaluated there, waiting behind the whole previous step queued on the stream
    /// (the engine's run-ahead then does nothing). They must be computed when made.
    #[test]
    fn a_decode_steps_index_arrays_are_computed_when_made() {
        let mut pool = KvPool::new(2, 64);
        let segments = vec![Segment { offset: 2, len: 1 }, Segment { offset: 0, len: 1 }];
        let slots = vec![vec![16, 17, 18], vec![32]];
        let view = BatchView::new(&mut pool, segments, &slots, &[0, 1]).unwrap();
        let d = view.decode.as_ref().expect("a pure decode step");
        for (name, a, shape) in [
            ("offsets", &d.offsets, vec![2]),
            ("write", &d.write, vec![2]),
            ("table", &d.padded, vec![2, 3]),
        ] {
            assert!(a.is_available(), "{name} is not computed");
            assert_eq!(a.shape(), shape, "{name}");
        }
        assert_eq!(d.write.to_vec::<i32>().unwrap(), vec![18, 32]);
        assert_eq!(
            d.padded.to_vec::<i32>().unwrap(),
            vec![16, 17, 18, 32, 32, 32]
        );
    }
}
