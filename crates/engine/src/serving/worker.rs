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

/// A forward pass queued on the device whose tokens are not read yet.
struct Pass {
    plan: Plan,
    /// uint32 [sampled items]: each sampled work item's token, in plan order.
    picked: Option<Array>,
    lps: Vec<Option<(Array, Array, Array)>>,
    /// Its work was committed with [`Scheduler::PENDING`] tokens so that the next pass could be
    /// scheduled before they were read: reading resolves them instead of committing.
    committed: bool,
    started: Instant,
    built: Instant,
}

impl Pass {
    /// The row of sequence `id`'s token in `picked`.
    fn row_of(&self, id: u64) -> Option<i32> {
        let row = self
            .plan
            .work
            .iter()
            .filter(|w| w.sample)
            .position(|w| w.id == id)?;
        Some(row as i32)
    }
}

/// The input ids [1, T]: `tokens`, but with each `(index, row)` of `pending` taken from row
/// `row` of `picked` (tokens still being computed by the pass before).
fn with_pending(tokens: &[u32], pending: &[(i32, i32)], picked: &Array) -> Result<Array> {
    let n = tokens.len() as i32;
    let in_order = pending.iter().zip(0..).all(|(p, i)| *p == (i, i));
    if pending.len() == tokens.len() && picked.dim(0) == n && in_order {
        return Ok(picked.astype(Dtype::Int32)?.reshape(&[1, n])?);
    }
    // one gather over [host tokens..., picked...]
    let mut index: Vec<i32> = (0..n).collect();
    for &(i, row) in pending {
        index[i as usize] = n + row;
    }
    let all = ops::concatenate(
        &[
            tokens_array(tokens)?.reshape(&[n])?,
            picked.astype(Dtype::Int32)?,
        ],
        0,
    )?;
    Ok(all
        .take(&Array::from_slice(&index, &[n])?, 0)?
        .reshape(&[1, n])?)
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
    steps_ahead: usize,
    /// [`EngineConfig::run_ahead`], decided.
    run_ahead: bool,
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
        let run_ahead = config.run_ahead.unwrap_or_else(|| {
            match std::env::var("CORTEX_RUN_AHEAD").as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => true,
            }
        });
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
            run_ahead,
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
            steps_ahead: 0,
            run_ahead,
        };
        w.publish_stats();
        Ok((w, max_context))
    }

    pub fn run(&mut self, commands: mpsc::Receiver<Command>) {
        // a pass already queued on the device (run ahead of the one read before it)
        let mut queued: Option<Pass> = None;
        loop {
            // block only when there is nothing to do
            let first = if queued.is_none() && self.scheduler.is_idle() {
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
            let mut pass = match queued.take() {
                Some(p) => p,
                None if self.scheduler.is_idle() => {
                    self.publish_stats();
                    continue;
                }
                None => {
                    let plan = self.scheduler.schedule();
                    match self.launch(plan, None) {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            self.steps += 1;
                            self.publish_stats();
                            continue;
                        }
                        Err((plan, e)) => {
                            self.fail(&plan, &e);
                            continue;
                        }
                    }
                }
            };
            // Queue the next pass before reading this one's tokens (the device never waits on
            // the host between steps, as in `generate`), when reading them cannot change the
            // next plan but for sequences that end: those waste one row of one pass.
            let ahead = if self.can_run_ahead(&pass.plan) {
                for w in &pass.plan.work {
                    let token = w.sample.then_some(Scheduler::PENDING);
                    self.scheduler.commit(w, token);
                }
                pass.committed = true;
                self.steps_ahead += 1;
                let plan = self.scheduler.schedule();
                Some(self.launch(plan, Some(&pass)))
            } else {
                None
            };
            self.finish(pass);
            match ahead {
                Some(Ok(next)) => queued = next,
                Some(Err((plan, e))) => self.fail(&plan, &e),
                None => {}
            }
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

    /// Whether the pass after `plan` can be scheduled before `plan`'s tokens are read: run-ahead
    /// is on, no request waits for admission, the next plan cannot preempt (a free block per
    /// running sequence and one more for copy-on-write), and no sampled request needs its token
    /// on the host first (penalties read the history) or ends by length with it.
    fn can_run_ahead(&self, plan: &Plan) -> bool {
        let running = self.scheduler.num_running();
        self.run_ahead
            && self.scheduler.num_waiting() == 0
            && running > 0
            && self.scheduler.allocator().available() >= 2 * running
            && plan.work.iter().filter(|w| w.sample).all(|w| {
                // (a request that ended meanwhile has no next pass to worry about)
                self.active
                    .get(&w.id)
                    .is_none_or(|a| !a.params.sampler.uses_history() && a.generated + 1 < a.max_new)
            })
    }

    /// Builds one forward pass over `plan` and queues it on the device. Tokens not read yet
    /// ([`Scheduler::PENDING`]) come from `previous`'s sampled tokens. Ok(None): nothing to run.
    #[allow(clippy::result_large_err)]
    fn launch(
        &mut self,
        plan: Plan,
        previous: Option<&Pass>,
    ) -> std::result::Result<Option<Pass>, (Plan, EngineError)> {
        self.preemptions += plan.preempted.len();
        for (id, reason) in &plan.failed {
            self.end(*id, FinishReason::Error, None, Some(reason.clone()));
        }
        if plan.work.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        for w in &plan.work {
            if let Some(a) = self.active.get_mut(&w.id) {
                a.scheduled.get_or_insert(now);
            }
        }
        match self.build(&plan, previous) {
            Ok((picked, lps)) => Ok(Some(Pass {
                plan,
                picked,
                lps,
                committed: false,
                started: now,
                built: Instant::now(),
            })),
            Err(e) => Err((plan, e)),
        }
    }

    /// Ends every request of a pass that failed as a whole; the rest go on.
    fn fail(&mut self, plan: &Plan, e: &EngineError) {
        tracing::error!("engine step failed: {e}");
        for w in &plan.work {
            self.end(w.id, FinishReason::Error, None, Some(e.to_string()));
        }
        self.steps += 1;
        self.publish_stats();
    }

    /// Reads a queued pass's tokens and hands them on: commits them (or fills in the pending
    /// ones when the next pass was scheduled ahead), then EOS, text, stop strings, length.
    fn finish(&mut self, pass: Pass) {
        match self.read(&pass) {
            Ok(sampled) => {
                for (w, tok) in pass.plan.work.iter().zip(sampled) {
                    if !pass.committed {
                        self.scheduler.commit(w, tok.as_ref().map(|t| t.0));
                    } else if let Some((t, _)) = &tok {
                        self.scheduler.resolve(w.id, *t);
                    }
                    if let Some((t, lp)) = tok {
                        self.on_token(w.id, t, lp);
                    }
                }
                self.steps += 1;
                self.publish_stats();
            }
            Err(e) => self.fail(&pass.plan, &e),
        }
    }

    /// The graph of one forward pass over the plan and each sampled item's token, queued on
    /// the device (not waited for).
    #[allow(clippy::type_complexity)]
    fn build(
        &mut self,
        plan: &Plan,
        previous: Option<&Pass>,
    ) -> Result<(Option<Array>, Vec<Option<(Array, Array, Array)>>)> {
        let bs = self.scheduler.config().block_size;
        let mut tokens = Vec::new();
        // (index in `tokens`, row of `previous`'s sampled tokens) of every pending token
        let mut pending = Vec::new();
        let mut segments = Vec::new();
        let mut slots = Vec::new();
        let mut rows = Vec::new();
        for w in &plan.work {
            let seq = self
                .scheduler
                .get(w.id)
                .ok_or_else(|| EngineError::InvalidRequest(format!("no sequence {}", w.id)))?;
            for &t in &seq.tokens[w.start..w.start + w.len] {
                if t == Scheduler::PENDING {
                    let row = previous.and_then(|p| p.row_of(w.id)).ok_or_else(|| {
                        EngineError::InvalidRequest(format!(
                            "sequence {} has a token that is not computed",
                            w.id
                        ))
                    })?;
                    pending.push((tokens.len() as i32, row));
                }
                tokens.push(t);
            }
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
        let input = match previous.and_then(|p| p.picked.as_ref()) {
            Some(picked) if !pending.is_empty() => with_pending(&tokens, &pending, picked)?,
            _ => tokens_array(&tokens)?,
        };
        self.pool.copy_blocks(&plan.copies, bs)?;
        let logits = {
            let mut view = BatchView::new(&mut self.pool, segments, &slots, &rows)?;
            self.model.forward(&input, &mut view)?
        };
        let logits = logits.squeeze(&[0])?;
        let sampled = || plan.work.iter().filter(|w| w.sample);
        // Every row plain greedy (the benchmarks' and many scripts' case): one pick for all of
        // them, not a slice, a pick and a reshape per row and then a concatenation.
        let plain_greedy = sampled().next().is_some()
            && sampled().all(|w| {
                self.active
                    .get(&w.id)
                    .is_some_and(|a| a.sampler.is_plain_greedy() && a.params.logprobs.is_none())
            });
        let (picked, lps) = if plain_greedy {
            let picked = sampler::greedy_pick(&logits.astype(Dtype::Float32)?)?;
            (Some(picked), vec![None; sampled().count()])
        } else {
            self.pick_rows(plan, &logits)?
        };
        let mut to_eval: Vec<Array> = self.pool.arrays();
        to_eval.extend(picked.iter().cloned());
        for (a, b, c) in lps.iter().flatten() {
            to_eval.extend([a.clone(), b.clone(), c.clone()]);
        }
        ops::async_eval(to_eval.iter())?;
        Ok((picked, lps))
    }

    /// Each sampled row's token through its own sampler (and its log-probabilities when
    /// asked for).
    #[allow(clippy::type_complexity)]
    fn pick_rows(
        &mut self,
        plan: &Plan,
        logits: &Array,
    ) -> Result<(Option<Array>, Vec<Option<(Array, Array, Array)>>)> {
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
        Ok((picked, lps))
    }

    /// Waits for a queued pass; returns, per work item, the sampled token (and its
    /// log-probabilities when asked for).
    #[allow(clippy::type_complexity)]
    fn read(&mut self, pass: &Pass) -> Result<Vec<Option<(u32, Option<TokenLogprob>)>>> {
        let ids: Vec<u32> = match &pass.picked {
            Some(p) => p.to_vec()?,
            None => Vec::new(),
        };
        tracing::debug!(
            rows = ids.len(),
            ahead = pass.committed,
            build_ms = pass.built.duration_since(pass.started).as_secs_f64() * 1e3,
            wait_ms = pass.built.elapsed().as_secs_f64() * 1e3,
            "engine step"
        );
        let mut out = Vec::with_capacity(pass.plan.work.len());
        let mut k = 0;
        for w in &pass.plan.work {
            if !w.sample {
                out.push(None);
                continue;
            }
            let t = ids[k];
            let lp = match &pass.lps[k] {
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
            steps_ahead: self.steps_ahead,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(a: &Array) -> (Vec<i32>, Vec<i32>) {
        (a.shape().to_vec(), a.to_vec::<i32>().unwrap())
    }

    #[test]
    fn pending_tokens_come_from_the_previous_pass_rows() {
        let picked = Array::from_slice(&[70u32, 71, 72], &[3]).unwrap();
        let p = Scheduler::PENDING;
        // every token pending, rows in order: the previous pass's tokens as they are
        let all = with_pending(&[p, p, p], &[(0, 0), (1, 1), (2, 2)], &picked).unwrap();
        assert_eq!(ids(&all), (vec![1, 3], vec![70, 71, 72]));
        // rows out of order, and host tokens (a prefill chunk) between pending ones
        let mixed = with_pending(&[p, 5, 6, p], &[(0, 2), (3, 0)], &picked).unwrap();
        assert_eq!(ids(&mixed), (vec![1, 4], vec![72, 5, 6, 70]));
        // a subset of the rows, in order or not
        let some = with_pending(&[p, p], &[(0, 1), (1, 2)], &picked).unwrap();
        assert_eq!(ids(&some), (vec![1, 2], vec![71, 72]));
        let first = with_pending(&[p, p], &[(0, 0), (1, 1)], &picked).unwrap();
        assert_eq!(ids(&first), (vec![1, 2], vec![70, 71]));
    }
}
