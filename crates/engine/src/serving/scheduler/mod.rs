//! Which sequences run in the next engine step.
//!
//! ## The scheduling contract
//! Every step, [`Scheduler::schedule`] returns a [`Plan`]: a list of [`Work`] items, at most
//! `max_batch_tokens` tokens in all, that the worker runs as one forward pass, in this order:
//! 1. **Decode**: every running sequence whose prompt is done gets its one new token. It
//!    must have a slot: when the allocator is out of blocks, the most recently admitted
//!    running sequence is *preempted* (its blocks are released and it goes back to the front
//!    of the waiting queue, keeping the tokens generated so far; on readmission it recomputes
//!    them, mostly from the prefix cache) until the slot fits.
//! 2. **Continuing prefills**: running sequences still feeding their prompt get the next
//!    chunk, as much as the token budget left allows.
//! 3. **Admission**: waiting sequences, first come first served, while the budget,
//!    `max_running` and free KV memory allow. A sequence is admitted only when blocks for its
//!    whole prompt are free (after taking the blocks of its longest cached prefix), so a
//!    started prefill never stalls for memory. The queue head that does not fit blocks the
//!    ones behind it (no overtaking). A sequence larger than the whole pool fails.
//!
//! A work item with `sample` set ends at the sequence's last token: the worker samples one
//! token from its logits and reports it with [`Scheduler::commit`]; items without it only fill
//! the cache. [`Scheduler::finish`] and [`Scheduler::abort`] release a sequence's blocks at
//! once; its full blocks stay in the prefix cache for the next request that shares them.
use crate::kv::{BlockAllocator, BlockId, SeqBlocks};
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    pub block_size: usize,
    pub num_blocks: usize,
    pub max_batch_tokens: usize,
    pub max_running: usize,
    pub prefix_caching: bool,
}

/// One sequence as the scheduler sees it.
#[derive(Debug)]
pub struct Sequence {
    pub id: u64,
    /// Prompt, then every generated token.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Positions whose K/V are in the cache.
    pub computed: usize,
    pub blocks: SeqBlocks,
    /// Prompt tokens taken from the prefix cache at first admission.
    pub cached_tokens: usize,
    pub preemptions: usize,
    admitted_before: bool,
}

impl Sequence {
    pub fn new(id: u64, prompt: Vec<u32>) -> Self {
        Sequence {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            blocks: SeqBlocks::default(),
            cached_tokens: 0,
            preemptions: 0,
            admitted_before: false,
        }
    }

    fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// The next slice of this sequence to run, at most `budget` tokens (>= 1).
    fn next_work(&self, budget: usize) -> Work {
        let len = self.pending().min(budget);
        Work {
            id: self.id,
            start: self.computed,
            len,
            sample: self.computed + len == self.tokens.len(),
        }
    }
}

/// A slice of one sequence's tokens to run: positions `start..start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub id: u64,
    pub start: usize,
    pub len: usize,
    /// The slice ends at the sequence's last token: sample the next one.
    pub sample: bool,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub work: Vec<Work>,
    /// Blocks to copy before the pass (copy-on-write): (source, destination).
    pub copies: Vec<(BlockId, BlockId)>,
    /// Sequences preempted in this step (they wait again).
    pub preempted: Vec<u64>,
    /// Sequences removed because they can never fit, with the reason.
    pub failed: Vec<(u64, String)>,
}

pub struct Scheduler {
    config: SchedulerConfig,
    alloc: BlockAllocator,
    waiting: VecDeque<Sequence>,
    /// In admission order: the last one is preempted first.
    running: Vec<Sequence>,
}

impl Scheduler {
    pub fn new(mut config: SchedulerConfig) -> Self {
        config.max_running = config.max_running.max(1);
        // every running sequence's decode token must fit in one step
        config.max_batch_tokens = config.max_batch_tokens.max(config.max_running);
        Scheduler {
            alloc: BlockAllocator::new(config.num_blocks, config.block_size),
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn allocator(&self) -> &BlockAllocator {
        &self.alloc
    }

    pub fn add(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn get(&self, id: u64) -> Option<&Sequence> {
        self.running
            .iter()
            .chain(self.waiting.iter())
            .find(|s| s.id == id)
    }

    /// Tokens cached by running sequences / tokens their blocks hold.
    pub fn utilization(&self) -> f64 {
        let bs = self.config.block_size;
        let (used, held) = self.running.iter().fold((0, 0), |(u, h), s| {
            (u + s.computed, h + s.blocks.capacity(bs))
        });
        if held == 0 {
            1.0
        } else {
            used as f64 / held as f64
        }
    }

    pub fn schedule(&mut self) -> Plan {
        let mut plan = Plan::default();
        let mut budget = self.config.max_batch_tokens;
        // 1. decode
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].pending() != 1 {
                i += 1;
                continue;
            }
            if !self.make_room(i, &mut plan) {
                // this very sequence was preempted; the next one slid into index i
                continue;
            }
            plan.work.push(self.running[i].next_work(1));
            budget -= 1;
            i += 1;
        }
        // 2. prefills already under way
        for s in &self.running {
            if budget == 0 {
                break;
            }
            if s.pending() > 1 {
                let w = s.next_work(budget);
                budget -= w.len;
                plan.work.push(w);
            }
        }
        // 3. admission
        while budget > 0 && self.running.len() < self.config.max_running {
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            let bs = self.config.block_size;
            let total_blocks = s.tokens.len().div_ceil(bs);
            if total_blocks > self.alloc.total() {
                plan.failed.push((
                    s.id,
                    format!(
                        "{} tokens need {total_blocks} KV blocks; the pool has {}",
                        s.tokens.len(),
                        self.alloc.total()
                    ),
                ));
                continue;
            }
            if self.config.prefix_caching {
                // leave at least the last token to compute: its logits start the answer
                let max = (s.tokens.len() - 1) / bs;
                s.blocks = SeqBlocks::match_prefix(&mut self.alloc, &s.tokens, max);
                s.computed = s.blocks.blocks.len() * bs;
            }
            if s.blocks.blocks_needed(s.tokens.len(), bs) > self.alloc.available() {
                s.blocks.release(&mut self.alloc);
                s.computed = 0;
                self.waiting.push_front(s);
                break;
            }
            let ok = s.blocks.reserve(&mut self.alloc, s.tokens.len());
            debug_assert!(ok, "checked available blocks");
            if !s.admitted_before {
                s.cached_tokens = s.computed;
                s.admitted_before = true;
            }
            let w = s.next_work(budget);
            budget -= w.len;
            plan.work.push(w);
            self.running.push(s);
        }
        plan
    }

    /// Makes sure running[i] can write its next position, preempting from the back. False
    /// when running[i] itself had to go.
    fn make_room(&mut self, i: usize, plan: &mut Plan) -> bool {
        loop {
            let bs = self.config.block_size;
            let s = &mut self.running[i];
            let pos = s.computed;
            if s.blocks.capacity(bs) > pos || s.blocks.reserve(&mut self.alloc, pos + 1) {
                if let Some(copies) = s.blocks.make_writable(&mut self.alloc, pos, pos + 1) {
                    plan.copies.extend(copies);
                    return true;
                }
            }
            let victim = self.running.len() - 1;
            let id = self.running[victim].id;
            self.preempt(victim);
            plan.preempted.push(id);
            if victim == i {
                return false;
            }
        }
    }

    fn preempt(&mut self, index: usize) {
        let mut s = self.running.remove(index);
        s.blocks.release(&mut self.alloc);
        s.computed = 0;
        s.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// Reports a run work item: its positions are cached now, and `sampled` (for items with
    /// `sample`) is appended to the sequence.
    pub fn commit(&mut self, work: &Work, sampled: Option<u32>) {
        let Some(s) = self.running.iter_mut().find(|s| s.id == work.id) else {
            return;
        };
        s.computed = s.computed.max(work.start + work.len);
        if self.config.prefix_caching {
            let computed = s.computed;
            s.blocks
                .register_full(&mut self.alloc, &s.tokens[..computed]);
        }
        if let Some(t) = sampled {
            s.tokens.push(t);
        }
    }

    /// Stands for a sampled token that is not read yet: a pass whose token is still being
    /// computed is committed with it so the next pass can be scheduled (and queued with the
    /// token as an array) before it is known; [`Scheduler::resolve`] fills it in.
    pub const PENDING: u32 = u32::MAX;

    /// Replaces sequence `id`'s trailing [`Scheduler::PENDING`] token with `token`, wherever
    /// the sequence is (running or waiting). False when there is none to replace.
    pub fn resolve(&mut self, id: u64, token: u32) -> bool {
        let seq = self
            .running
            .iter_mut()
            .chain(self.waiting.iter_mut())
            .find(|s| s.id == id);
        match seq.and_then(|s| s.tokens.last_mut()) {
            Some(t) if *t == Self::PENDING => {
                *t = token;
                true
            }
            _ => false,
        }
    }

    /// Ends a sequence normally; returns it.
    pub fn finish(&mut self, id: u64) -> Option<Sequence> {
        self.abort(id)
    }

    /// Removes a sequence wherever it is and releases its blocks.
    pub fn abort(&mut self, id: u64) -> Option<Sequence> {
        let mut s = if let Some(i) = self.running.iter().position(|s| s.id == id) {
            self.running.remove(i)
        } else {
            let i = self.waiting.iter().position(|s| s.id == id)?;
            self.waiting.remove(i)?
        };
        s.blocks.release(&mut self.alloc);
        Some(s)
    }
}

#[cfg(test)]
mod tests;
