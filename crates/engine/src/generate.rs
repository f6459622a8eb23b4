//! The single-sequence generation loop: chunked prefill, then decode with step n+1 queued
//! (async_eval) before step n's token is read, so the device never waits on the host.
use crate::cache::{KvCache, SimpleKvCache};
use crate::error::{EngineError, Result};
use crate::models::Model;
use crate::sampler::{Sampler, SamplerParams};
use cortex_mlx::{ops, Array, Dtype};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation ends after emitting one of these (the EOS ids of the tokenizer).
    pub stop_token_ids: Vec<u32>,
    /// Prompt tokens per forward pass during prefill.
    pub prefill_step: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampler: SamplerParams::default(),
            stop_token_ids: vec![],
            prefill_step: 512,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub ttft_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub finish_reason: FinishReason,
}

/// What the token callback wants next.
pub enum Flow {
    Continue,
    Stop,
}

pub struct Generator<'m> {
    model: &'m dyn Model,
}

impl<'m> Generator<'m> {
    pub fn new(model: &'m dyn Model) -> Self {
        Generator { model }
    }

    /// Runs the prompt and samples until a stop token, `max_tokens`, or the callback says stop.
    /// Returns the generated ids (without the stop token that ended it) and timings.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_token: impl FnMut(u32) -> Flow,
    ) -> Result<(Vec<u32>, GenerationStats)> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the prompt has no tokens".into(),
            ));
        }
        let mut sampler = Sampler::with_prompt(params.sampler.clone(), prompt)?;
        // Penalties need each token before the next step is sampled: no queueing ahead then.
        let pipelined = !params.sampler.uses_history();
        let mut cache = SimpleKvCache::new(self.model.num_layers());
        let start = Instant::now();
        let logits = self.prefill(prompt, params.prefill_step.max(1), &mut cache)?;
        let mut y = sampler.sample(&logits)?;
        ops::async_eval([&y])?;

        let mut out = Vec::new();
        let mut first_token_at = None;
        let mut finish = FinishReason::Length;
        while out.len() < params.max_tokens {
            // queue the next step before reading this one
            let next = if pipelined && out.len() + 1 < params.max_tokens {
                let logits = self.step(&y, &mut cache)?;
                let n = sampler.sample(&logits)?;
                ops::async_eval([&n])?;
                Some(n)
            } else {
                None
            };
            let tok = y.item::<u32>()?;
            first_token_at.get_or_insert_with(Instant::now);
            if params.stop_token_ids.contains(&tok) {
                finish = FinishReason::Stop;
                break;
            }
            out.push(tok);
            sampler.observe(tok);
            if let Flow::Stop = on_token(tok) {
                finish = FinishReason::Cancelled;
                break;
            }
            match next {
                Some(n) => y = n,
                None if !pipelined && out.len() < params.max_tokens => {
                    let logits = self.step(&y, &mut cache)?;
                    y = sampler.sample(&logits)?;
                }
                None => break,
            }
        }
        let end = Instant::now();
        let first = first_token_at.unwrap_or(end);
        let ttft = first.duration_since(start).as_secs_f64();
        let decode_time = end.duration_since(first).as_secs_f64();
        let stats = GenerationStats {
            prompt_tokens: prompt.len(),
            completion_tokens: out.len(),
            ttft_ms: ttft * 1e3,
            prefill_tokens_per_s: prompt.len() as f64 / ttft.max(1e-9),
            decode_tokens_per_s: if out.len() > 1 {
                (out.len() - 1) as f64 / decode_time.max(1e-9)
            } else {
                0.0
            },
            finish_reason: finish,
        };
        Ok((out, stats))
    }

    /// Feeds the prompt through the model; returns the last position's logits [1, V].
    /// All but the last token go through in chunks whose logits are never evaluated (MLX is
    /// lazy, so the output head, a fifth of a small model's compute, runs for one position only).
    pub fn prefill(&self, prompt: &[u32], step: usize, cache: &mut SimpleKvCache) -> Result<Array> {
        let Some(split) = prompt.len().checked_sub(1) else {
            return Err(EngineError::InvalidRequest(
                "the prompt has no tokens".into(),
            ));
        };
        let (body, last) = prompt.split_at(split);
        for chunk in body.chunks(step) {
            self.model.forward(&tokens_array(chunk)?, cache)?;
            ops::eval(cache.arrays().iter())?;
        }
        let logits = self.model.forward(&tokens_array(last)?, cache)?;
        Ok(logits.squeeze(&[1])?)
    }

    fn step(&self, y: &Array, cache: &mut dyn KvCache) -> Result<Array> {
        let logits = self
            .model
            .forward(&y.astype(Dtype::Int32)?.reshape(&[1, 1])?, cache)?;
        Ok(logits.squeeze(&[1])?)
    }
}

pub fn tokens_array(ids: &[u32]) -> Result<Array> {
    let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Ok(Array::from_slice(&v, &[1, v.len() as i32])?)
}
