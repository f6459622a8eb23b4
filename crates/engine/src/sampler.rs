//! Token sampling on the device: greedy, temperature, top-k, top-p (nucleus) and min-p, with
//! an explicit PRNG key so a seed reproduces the same tokens; repetition, presence and
//! frequency penalties and logit bias applied to the logits first; log-probabilities with the
//! most likely alternatives.
use crate::error::{EngineError, Result};
use cortex_mlx::{ops, random, Array, Dtype};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
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
    /// Divides positive (multiplies negative) logits of tokens already in the prompt or the
    /// output (the Hugging Face/CTRL penalty); 1.0 disables.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already generated (OpenAI's); 0 disables.
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the output so far (OpenAI's); 0 disables.
    pub frequency_penalty: f32,
    /// Added to the logits of these token ids (-100..100; -100 practically bans a token).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
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
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        if let Some((t, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| !(-100.0..=100.0).contains(b))
        {
            return bad(format!(
                "logit_bias for token {t} must be in [-100, 100], got {b}"
            ));
        }
        Ok(())
    }

    /// Whether sampling depends on the tokens seen so far.
    pub fn uses_history(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

/// Each row's greedy token (uint32 [rows]) of logits [rows, vocab]: the index of the largest
/// value, the first of equals, NaN counting as the largest (as MLX's argmax).
pub fn greedy_pick(logits: &Array) -> Result<Array> {
    if crate::nn::cpu_kernels() {
        // one node, 16 lanes, rows on the pool (MLX's CPU argmax scans value by value)
        return Ok(ops::argmax_cpu(logits)?);
    }
    Ok(logits.argmax(-1, false)?.astype(Dtype::Uint32)?)
}

pub struct Sampler {
    params: SamplerParams,
    key: Array,
    /// Prompt tokens (for the repetition penalty), kept only when a penalty is on.
    prompt: std::collections::HashSet<u32>,
    /// Generated token -> count.
    counts: std::collections::HashMap<u32, u32>,
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
            prompt: Default::default(),
            counts: Default::default(),
        })
    }

    /// A sampler that knows the prompt (the repetition penalty covers prompt tokens too).
    pub fn with_prompt(params: SamplerParams, prompt: &[u32]) -> Result<Self> {
        let mut s = Sampler::new(params)?;
        if s.params.repetition_penalty != 1.0 {
            s.prompt = prompt.iter().copied().collect();
        }
        Ok(s)
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Records a generated token (penalties apply to it from the next step on).
    pub fn observe(&mut self, token: u32) {
        if self.params.uses_history() {
            *self.counts.entry(token).or_default() += 1;
        }
    }

    /// Logits [B, V] with penalties and bias applied, in float32; unchanged when none is on.
    pub fn process(&self, logits: &Array) -> Result<Array> {
        let p = &self.params;
        let logits = logits.astype(Dtype::Float32)?;
        let mut ids: std::collections::BTreeMap<u32, (bool, f32)> = Default::default();
        if p.uses_history() {
            let rep = p.repetition_penalty != 1.0;
            for &t in self.prompt.iter() {
                ids.entry(t).or_default().0 = rep;
            }
            for (&t, &c) in &self.counts {
                let e = ids.entry(t).or_default();
                e.0 = rep;
                e.1 -= c as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
        for &(t, b) in &p.logit_bias {
            ids.entry(t).or_default().1 += b;
        }
        if ids.is_empty() {
            return Ok(logits);
        }
        let n = ids.len() as i32;
        let b = logits.dim(0);
        let idx: Vec<i32> = ids.keys().map(|&t| t as i32).collect();
        let idx = Array::from_slice(&idx, &[1, n])?.broadcast_to(&[b, n])?;
        let add: Vec<f32> = ids.values().map(|v| v.1).collect();
        let mut g = logits.take_along_axis(&idx, -1)?;
        if p.repetition_penalty != 1.0 {
            let mask: Vec<u8> = ids.values().map(|v| v.0 as u8).collect();
            let mask = Array::from_slice(&mask, &[1, n])?.astype(Dtype::Bool)?;
            let r = p.repetition_penalty as f64;
            let zero = Array::full(&[], 0.0, Dtype::Float32)?;
            let penalized = ops::where_(
                &g.greater(&zero)?,
                &g.mul_scalar(1.0 / r)?,
                &g.mul_scalar(r)?,
            )?;
            g = ops::where_(&mask, &penalized, &g)?;
        }
        g = g.add(&Array::from_slice(&add, &[1, n])?)?;
        Ok(logits.put_along_axis(&idx, &g, -1)?)
    }

    /// logits [B, V] -> token ids uint32 [B] (lazy: evaluate when needed).
    pub fn sample(&mut self, logits: &Array) -> Result<Array> {
        let processed = self.process(logits)?;
        self.pick(&processed)
    }

    /// Whether this sampler takes the largest logit of the raw logits: greedy, with nothing
    /// that [`Sampler::process`] would change. Rows of such samplers can be picked together
    /// ([`greedy_pick`]) with the same result as one by one.
    pub fn is_plain_greedy(&self) -> bool {
        let p = &self.params;
        p.temperature == 0.0 && !p.uses_history() && p.logit_bias.is_empty()
    }

    /// Samples from logits that already went through [`Sampler::process`].
    pub fn pick(&mut self, logits: &Array) -> Result<Array> {
        let p = &self.params;
        if p.temperature == 0.0 {
            return greedy_pick(logits);
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

/// Log-probabilities of one row of logits ([1, V], float32): the chosen token's ([1]) and the
/// `n` most likely tokens' ids and log-probabilities ([n] each, unordered; sort on the host).
pub fn logprobs(logits: &Array, chosen: &Array, n: usize) -> Result<(Array, Array, Array)> {
    let lse = logits.logsumexp(&[-1], true)?;
    let lp = logits.subtract(&lse)?;
    let chosen_lp = lp
        .take_along_axis(&chosen.astype(Dtype::Int32)?.reshape(&[1, 1])?, -1)?
        .reshape(&[1])?;
    let vocab = lp.dim(-1);
    let n = (n as i32).clamp(1, vocab);
    let top = lp
        .negative()?
        .argpartition(n - 1, -1)?
        .slice_axis(-1, 0, n)?
        .reshape(&[n])?;
    let top_lp = lp.reshape(&[vocab])?.take(&top, 0)?;
    Ok((chosen_lp, top, top_lp))
}
