//! Token sampling on the device: greedy, temperature, top-k, top-p (nucleus) and min-p, with
//! an explicit PRNG key so a seed reproduces the same tokens.
use crate::error::{EngineError, Result};
use cortex_mlx::{ops, random, Array, Dtype};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    pub seed: Option<u64>,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
        }
    }
}

impl SamplerParams {
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidRequest(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplerParams,
    key: Array,
}

const NEG_INF: f64 = f64::NEG_INFINITY;

impl Sampler {
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Sampler {
            params,
            key: random::key(seed)?,
        })
    }

    /// logits [B, V] -> token ids uint32 [B] (lazy: evaluate when needed).
    pub fn sample(&mut self, logits: &Array) -> Result<Array> {
        let p = &self.params;
        if p.temperature == 0.0 {
            return Ok(logits.argmax(-1, false)?);
        }
        let mut l = logits
            .astype(Dtype::Float32)?
            .mul_scalar(1.0 / p.temperature as f64)?;
        let vocab = l.dim(-1);
        if p.top_k > 0 && (p.top_k as i32) < vocab {
            // The k-th largest value is the threshold: partition puts it at index vocab-k.
            let kth = vocab - p.top_k as i32;
            let thr = l.partition(kth, -1)?.slice_axis(-1, kth, kth + 1)?;
            l = mask_below(&l, &thr)?;
        }
        if p.min_p > 0.0 {
            let probs = l.softmax(&[-1], true)?;
            let thr = probs.max(&[-1], true)?.mul_scalar(p.min_p as f64)?;
            l = ops::where_(
                &probs.less(&thr)?,
                &Array::full(&[], NEG_INF, Dtype::Float32)?,
                &l,
            )?;
        }
        if p.top_p < 1.0 {
            let probs = l.softmax(&[-1], true)?;
            let order = probs.negative()?.argsort(-1)?;
            let sorted = probs.take_along_axis(&order, -1)?;
            let before = sorted.cumsum(-1, false, false)?;
            // keep a token while the mass before it is < top_p (the top token always stays)
            let keep = before.less(&Array::full(&[], p.top_p as f64, Dtype::Float32)?)?;
            let inf = Array::full(&[], f64::INFINITY, Dtype::Float32)?;
            let thr = ops::where_(&keep, &sorted, &inf)?.min(&[-1], true)?;
            l = ops::where_(
                &probs.less(&thr)?,
                &Array::full(&[], NEG_INF, Dtype::Float32)?,
                &l,
            )?;
        }
        let keys = random::split(&self.key, 2)?;
        self.key = keys.slice_axis(0, 0, 1)?.squeeze(&[0])?;
        let sub = keys.slice_axis(0, 1, 2)?.squeeze(&[0])?;
        Ok(random::categorical(&l, -1, Some(&sub))?.astype(Dtype::Uint32)?)
    }
}

fn mask_below(l: &Array, thr: &Array) -> Result<Array> {
    Ok(ops::where_(
        &l.less(thr)?,
        &Array::full(&[], NEG_INF, Dtype::Float32)?,
        l,
    )?)
}
