//! The engine thread: takes submissions, runs scheduler steps as batched forward passes,
//! samples each request's next token with its own sampler, detokenizes, matches stop strings
//! and sends events.
use super::api::*;
use super::scheduler::{Plan, Scheduler, SchedulerConfig, Sequence};
use super::stop::StopMatcher;
use super::{Command, Submission};
use crate::cache::Segment;
use crate::error::{EngineError, Result};
use crate::generate::tokens_array;
use crate::kv::{BatchView, KvPool};
use crate::loader::LoadedModel;
use crate::models::Model;
use crate::sampler::{self, Sampler};
use cortex_mlx::{ops, Array, Dtype};
use cortex_tokenizer::{IncrementalDecoder, Tokenizer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// Checks a request before it is queued.
pub(crate) fn validate(
    prompt: &[u32],
    params: &RequestParams,
    max_context: usize,
    vocab: usize,
) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidRequest(m));
    if prompt.is_empty() {
        return bad("the prompt has no tokens".into());
    }
    if prompt.len() >= max_context {
        return Err(EngineError::ContextLength {
            prompt_tokens: prompt.len(),
            max_context,
        });
    }
    if let Some(t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return bad(format!(
            "prompt token {t} is outside the vocabulary ({vocab})"
        ));
    }
    if params.max_tokens == 0 {
        return bad("max_tokens must be at least 1".into());
    }
    params.sampler.validate()?;
    if let Some((t, _)) = params
        .sampler
        .logit_bias
        .iter()
        .find(|(t, _)| *t as usize >= vocab)
    {
        return bad(format!(
            "logit_bias token {t} is outside the vocabulary ({vocab})"
        ));
    }
    if params.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
        return bad(format!("top logprobs must be at most {MAX_TOP_LOGPROBS}"));
    }
    Ok(())
}

/// A request in flight: its own sampler, detokenizer and stop matcher.
struct Active {
    id: u64,
    params: RequestParams,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    submitted: Instant,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    eos: HashSet<u32>,
    /// Completion tokens allowed (max_tokens clipped to the context).
    max_new: usize,
    generated: usize,
    scheduled: Option<Instant>,
    first_token: Option<Instant>,
}

pub(crate) struct Worker {
    model: Box<dyn Model>,
    tokenizer: Tokenizer,
    scheduler: Scheduler,
    pool: KvPool,
    active: HashMap<u64, Active>,
    max_context: usize,
    stats: Arc<Mutex<EngineStats>>,
    kv_bytes_per_token: usize,
    finished: usize,
    preemptions: usize,
    steps: usize,
}

/// The KV budget in bytes: the configured size, else a fraction of this machine's memory.
fn kv_budget(config: &EngineConfig) -> usize {
    config.kv_memory_bytes.unwrap_or_else(|| {
        let total = crate::device::system_memory().unwrap_or(8 << 30) as f64;
        (total * config.kv_memory_fraction.clamp(0.01, 0.9)) as usize
    })
}

impl Worker {
    /// Sizes the pool; returns the worker and the context it can serve (the model's, or less
    /// when the pool is smaller).
    pub fn new(
        model: LoadedModel,
        config: EngineConfig,
        max_context: usize,
        stats: Arc<Mutex<EngineStats>>,
    ) -> Result<(Worker, usize)> {
        let info = model.model.info();
        let bs = config.block_size.max(1);
        let per_block = info.kv_bytes_per_token.max(1) * bs;
        let num_blocks = kv_budget(&config) / per_block;
        if num_blocks < 2 {
            return Err(EngineError::InvalidRequest(format!(
                "the KV memory budget ({} bytes) holds fewer than 2 blocks of {bs} tokens ({per_block} bytes each)",
                kv_budget(&config)
            )));
        }
        let max_context = max_context.min(num_blocks * bs);
        let scheduler = Scheduler::new(SchedulerConfig {
            block_size: bs,
            num_blocks,
            max_batch_tokens: config.max_batch_tokens.max(1),
            max_running: config.max_running.max(1),
            prefix_caching: config.prefix_caching,
        });
        tracing::info!(
            num_blocks,
            block_size = bs,
            kv_mib = (num_blocks * per_block) >> 20,
            max_context,
            "engine started"
        );
        let w = Worker {
            pool: KvPool::new(info.num_layers, num_blocks * bs),
            model: model.model,
            tokenizer: model.tokenizer,
            scheduler,
            active: HashMap::new(),
            max_context,
            stats,
            kv_bytes_per_token: info.kv_bytes_per_token,
            finished: 0,
            preemptions: 0,
            steps: 0,
        };
        w.publish_stats();
        Ok((w, max_context))
    }

    pub fn run(&mut self, commands: mpsc::Receiver<Command>) {
        loop {
            // block only when there is nothing to do
            let first = if self.scheduler.is_idle() {
                match commands.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            } else {
                None
            };
            for c in first
                .into_iter()
                .chain(std::iter::from_fn(|| commands.try_recv().ok()))
            {
                match c {
                    Command::Submit(s) => self.admit(*s),
                    Command::Shutdown => {
                        let ids: Vec<u64> = self.active.keys().copied().collect();
                        for id in ids {
                            self.end(id, FinishReason::Cancelled, None, None);
                        }
                        self.publish_stats();
                        return;
                    }
                }
            }
            self.drop_cancelled();
            if self.scheduler.is_idle() {
                self.publish_stats();
                continue;
            }
            let plan = self.scheduler.schedule();
            self.preemptions += plan.preempted.len();
            if let Err(e) = self.step(plan) {
                tracing::error!("engine step failed: {e}");
            }
            self.steps += 1;
            self.publish_stats();
        }
    }

    fn admit(&mut self, sub: Submission) {
        let Submission {
            id,
            prompt,
            params,
            events,
            cancelled,
            submitted,
        } = sub;
        let mut eos: HashSet<u32> = params.stop_token_ids.iter().copied().collect();
        if !params.ignore_eos {
            eos.extend(self.tokenizer.eos_token_ids().iter().copied());
        }
        let sampler = match Sampler::with_prompt(params.sampler.clone(), &prompt) {
            Ok(s) => s,
            Err(e) => {
                let _ = events.send(Event::Done(error_completion(&e.to_string(), prompt.len())));
                return;
            }
        };
        // submit() checked prompt.len() < max_context
        let max_new = params
            .max_tokens
            .min(self.max_context.saturating_sub(prompt.len()));
        self.active.insert(
            id,
            Active {
                id,
                stop: StopMatcher::new(&params.stop),
                decoder: self.tokenizer.incremental_decoder(true),
                params,
                events,
                cancelled,
                submitted,
                sampler,
                eos,
                max_new,
                generated: 0,
                scheduled: None,
                first_token: None,
            },
        );
        self.scheduler.add(Sequence::new(id, prompt));
    }

    fn drop_cancelled(&mut self) {
        let gone: Vec<u64> = self
            .active
            .values()
            .filter(|a| a.cancelled.load(Ordering::Acquire) || a.events.is_closed())
            .map(|a| a.id)
            .collect();
        for id in gone {
            self.end(id, FinishReason::Cancelled, None, None);
        }
    }

    fn step(&mut self, plan: Plan) -> Result<()> {
        for (id, reason) in &plan.failed {
            self.end(*id, FinishReason::Error, None, Some(reason.clone()));
        }
        if plan.work.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for w in &plan.work {
            if let Some(a) = self.active.get_mut(&w.id) {
                a.scheduled.get_or_insert(now);
            }
        }
        match self.forward_and_sample(&plan) {
            Ok(sampled) => {
                for (w, tok) in plan.work.iter().zip(sampled) {
                    self.scheduler.commit(w, tok.as_ref().map(|t| t.0));
                    if let Some((t, lp)) = tok {
                        self.on_token(w.id, t, lp);
                    }
                }
                Ok(())
            }
            Err(e) => {
                // the pass failed as a whole: its requests end with the error, the rest go on
                for w in &plan.work {
                    self.end(w.id, FinishReason::Error, None, Some(e.to_string()));
                }
                Err(e)
            }
        }
    }

    /// One forward pass over the plan; returns, per work item, the sampled token (and its
    /// log-probabilities when asked for).
    #[allow(clippy::type_complexity)]
    fn forward_and_sample(
        &mut self,
        plan: &Plan,
    ) -> Result<Vec<Option<(u32, Option<TokenLogprob>)>>> {
        let t_start = Instant::now();
        let bs = self.scheduler.config().block_size;
        let mut tokens = Vec::new();
        let mut segments = Vec::new();
        let mut slots = Vec::new();
        let mut rows = Vec::new();
        for w in &plan.work {
            let seq = self
                .scheduler
                .get(w.id)
                .ok_or_else(|| EngineError::InvalidRequest(format!("no sequence {}", w.id)))?;
            tokens.extend_from_slice(&seq.tokens[w.start..w.start + w.len]);
            if w.sample {
                rows.push(tokens.len() as i32 - 1);
            }
            segments.push(Segment {
                offset: w.start as i32,
                len: w.len as i32,
            });
            slots.push(
                (0..w.start + w.len)
                    .map(|p| seq.blocks.slot(p, bs))
                    .collect::<Vec<i32>>(),
            );
        }
        self.pool.copy_blocks(&plan.copies, bs)?;
        let logits = {
            let mut view = BatchView::new(&mut self.pool, segments, &slots, &rows)?;
            self.model.forward(&tokens_array(&tokens)?, &mut view)?
        };
        let logits = logits.squeeze(&[0])?;
        let mut picks = Vec::new();
        let mut lps = Vec::new();
        for (row, w) in plan.work.iter().filter(|w| w.sample).enumerate() {
            let row = row as i32;
            let a = self
                .active
                .get_mut(&w.id)
                .ok_or_else(|| EngineError::InvalidRequest(format!("no request {}", w.id)))?;
            let l = logits.slice_axis(0, row, row + 1)?;
            let processed = a.sampler.process(&l)?;
            let tok = a.sampler.pick(&processed)?.reshape(&[1])?;
            lps.push(match a.params.logprobs {
                Some(n) => Some(sampler::logprobs(&processed, &tok, n)?),
                None => None,
            });
            picks.push(tok);
        }
        let picked = if picks.is_empty() {
            None
        } else {
            Some(ops::concatenate(&picks, 0)?.astype(Dtype::Uint32)?)
        };
        let mut to_eval: Vec<Array> = self.pool.arrays();
        to_eval.extend(picked.iter().cloned());
        for (a, b, c) in lps.iter().flatten() {
            to_eval.extend([a.clone(), b.clone(), c.clone()]);
        }
        let t_built = Instant::now();
        ops::eval(to_eval.iter())?;
        tracing::debug!(
            rows = picks.len(),
            tokens = tokens.len(),
            build_ms = t_built.duration_since(t_start).as_secs_f64() * 1e3,
            eval_ms = t_built.elapsed().as_secs_f64() * 1e3,
            "engine step"
        );
        let ids: Vec<u32> = match &picked {
            Some(p) => p.to_vec()?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(plan.work.len());
        let mut k = 0;
        for w in &plan.work {
            if !w.sample {
                out.push(None);
                continue;
            }
            let t = ids[k];
            let lp = match &lps[k] {
                Some((chosen, top, top_lp)) => Some(self.token_logprob(t, chosen, top, top_lp)?),
                None => None,
            };
            out.push(Some((t, lp)));
            k += 1;
        }
        Ok(out)
    }

    fn token_logprob(
        &self,
        token: u32,
        chosen: &Array,
        top: &Array,
        top_lp: &Array,
    ) -> Result<TokenLogprob> {
        let text = |t: u32| self.tokenizer.decode(&[t], false).unwrap_or_default();
        let ids: Vec<u32> = top.astype(Dtype::Uint32)?.to_vec()?;
        let lps: Vec<f32> = top_lp.to_f32_vec()?;
        let mut top: Vec<TopLogprob> = ids
            .into_iter()
            .zip(lps)
            .map(|(t, lp)| TopLogprob {
                token: t,
                text: text(t),
                logprob: lp,
            })
            .collect();
        top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        Ok(TokenLogprob {
            token,
            text: text(token),
            logprob: chosen.to_f32_vec()?.first().copied().unwrap_or(f32::NAN),
            top,
        })
    }

    /// Handles one sampled token: EOS, detokenization, stop strings, length.
    fn on_token(&mut self, id: u64, token: u32, logprob: Option<TokenLogprob>) {
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        a.first_token.get_or_insert_with(Instant::now);
        if a.eos.contains(&token) {
            let tail = flush_text(a);
            send_delta(a, tail, Vec::new(), Vec::new());
            self.end(id, FinishReason::Stop, None, None);
            return;
        }
        a.generated += 1;
        a.sampler.observe(token);
        let text = match a.decoder.push(token) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                self.end(id, FinishReason::Error, None, Some(e.to_string()));
                return;
            }
        };
        let r = a.stop.push(&text);
        let lps: Vec<TokenLogprob> = logprob.into_iter().collect();
        if let Some(m) = r.matched {
            send_delta(a, r.emit, vec![token], lps);
            self.end(id, FinishReason::Stop, Some(m), None);
            return;
        }
        let done = a.generated >= a.max_new;
        let mut text = r.emit;
        if done {
            let tail = flush_text(a);
            text.push_str(&tail);
        }
        send_delta(a, text, vec![token], lps);
        if done {
            self.end(id, FinishReason::Length, None, None);
        }
    }

    /// Ends a request: releases its blocks and sends the final record.
    fn end(
        &mut self,
        id: u64,
        reason: FinishReason,
        matched_stop: Option<String>,
        error: Option<String>,
    ) {
        let seq = self.scheduler.finish(id);
        let Some(a) = self.active.remove(&id) else {
            return;
        };
        self.finished += 1;
        let now = Instant::now();
        let ms = |t: Instant| t.duration_since(a.submitted).as_secs_f64() * 1e3;
        let decode_s = a
            .first_token
            .map_or(0.0, |f| now.duration_since(f).as_secs_f64());
        let completion = Completion {
            finish_reason: reason,
            matched_stop,
            usage: Usage {
                prompt_tokens: seq.as_ref().map_or(0, |s| s.prompt_len),
                completion_tokens: a.generated,
                cached_tokens: seq.as_ref().map_or(0, |s| s.cached_tokens),
            },
            timings: Timings {
                queue_ms: a.scheduled.map_or(0.0, ms),
                ttft_ms: a.first_token.map_or(0.0, ms),
                total_ms: ms(now),
                decode_tokens_per_s: if a.generated > 1 && decode_s > 0.0 {
                    (a.generated - 1) as f64 / decode_s
                } else {
                    0.0
                },
                preemptions: seq.as_ref().map_or(0, |s| s.preemptions),
            },
            error,
        };
        let _ = a.events.send(Event::Done(completion));
    }

    fn publish_stats(&self) {
        let alloc = self.scheduler.allocator();
        let s = EngineStats {
            running: self.scheduler.num_running(),
            waiting: self.scheduler.num_waiting(),
            total_blocks: alloc.total(),
            free_blocks: alloc.available(),
            cached_blocks: alloc.cached(),
            block_size: alloc.block_size(),
            kv_bytes_per_token: self.kv_bytes_per_token,
            finished: self.finished,
            preemptions: self.preemptions,
            steps: self.steps,
            kv_utilization: self.scheduler.utilization(),
            kv_capacity_tokens: self.pool.capacity(),
        };
        if let Ok(mut g) = self.stats.lock() {
            *g = s;
        }
    }
}

fn flush_text(a: &mut Active) -> String {
    let rest = a.decoder.flush().ok().flatten().unwrap_or_default();
    let mut text = a.stop.push(&rest).emit;
    text.push_str(&a.stop.flush());
    text
}

fn send_delta(a: &Active, text: String, tokens: Vec<u32>, logprobs: Vec<TokenLogprob>) {
    if text.is_empty() && tokens.is_empty() {
        return;
    }
    let _ = a.events.send(Event::Delta {
        text,
        tokens,
        logprobs,
    });
}

fn error_completion(message: &str, prompt_tokens: usize) -> Completion {
    Completion {
        finish_reason: FinishReason::Error,
        matched_stop: None,
        usage: Usage {
            prompt_tokens,
            ..Default::default()
        },
        timings: Timings::default(),
        error: Some(message.to_string()),
    }
}
