//! The per-sequence KV cache: one growing key/value buffer per layer, grown in steps of 256
//! positions so decode writes in place (slice_update) instead of concatenating every token.
//!
//! Models see only the [`KvCache`] trait; the paged, shared cache of the serving layer
//! implements the same trait.
use crate::error::Result;
use cortex_mlx::{ops, Array};

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
    /// With `decode_offsets`, where the cache can do it (the paged pool on the CPU): appends
    /// k/v ([B, Hkv, 1, D], RoPE applied) for `layer` and attends q ([B, Hq, 1, D]) straight
    /// from its storage. Some([B, Hq, 1, D]); None when the caller must attend over
    /// `update_and_fetch_padded` itself (nothing was written then).
    fn attend_decode_paged(
        &mut self,
        _layer: usize,
        _q: &Array,
        _k: Array,
        _v: Array,
        _scale: f32,
        _opts: crate::nn::AttentionOptions,
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

fn grow(buf: Option<Array>, used: i32, new: &Array) -> Result<Array> {
    let (b, h, l, d) = (new.dim(0), new.dim(1), new.dim(2), new.dim(3));
    let steps = (l + STEP - 1) / STEP;
    let fresh = Array::zeros(&[b, h, steps * STEP, d], new.dtype())?;
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

impl KvCache for SimpleKvCache {
    fn layer_offset(&self, layer: usize) -> i32 {
        self.layers.get(layer).map_or(0, |l| l.offset)
    }

    fn update_and_fetch(&mut self, layer: usize, k: Array, v: Array) -> Result<(Array, Array)> {
        if layer >= self.layers.len() {
            self.layers.resize_with(layer + 1, LayerKv::default);
        }
        let entry = &mut self.layers[layer];
        let prev = entry.offset;
        let l = k.dim(2);
        let capacity = entry.keys.as_ref().map_or(0, |a| a.dim(2));
        if prev + l > capacity {
            entry.keys = Some(grow(entry.keys.take(), prev, &k)?);
            entry.values = Some(grow(entry.values.take(), prev, &v)?);
        }
        let end = prev + l;
        let write = |buf: &Array, upd: &Array| -> Result<Array> {
            let (b, h, d) = (buf.dim(0), buf.dim(1), buf.dim(3));
            Ok(buf.slice_update(upd, &[0, 0, prev, 0], &[b, h, end, d], &[1, 1, 1, 1])?)
        };
        let keys = write(entry.keys.as_ref().expect("grown above"), &k)?;
        let values = write(entry.values.as_ref().expect("grown above"), &v)?;
        entry.offset = end;
        let view = |a: &Array| {
            if a.dim(2) == end {
                Ok(a.clone())
            } else {
                a.slice_axis(2, 0, end)
            }
        };
        let out = (view(&keys)?, view(&values)?);
        entry.keys = Some(keys);
        entry.values = Some(values);
        Ok(out)
    }
}
