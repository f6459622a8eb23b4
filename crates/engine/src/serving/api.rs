//! The serving API: what a front end (HTTP server, desktop app, `cortex bench`) hands the engine
//! and what it gets back. A request is token ids plus [`RequestParams`]; the answer is a stream
//! of [`Event`]s: text deltas, then exactly one [`Event::Done`] with the finish reason, usage
//! and timings.
use crate::sampler::SamplerParams;
use serde::{Deserialize, Serialize};

/// Per-request generation settings. Every request in a batch keeps its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestParams {
    /// Generated tokens at most (the stop token that ends a sequence is not counted).
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Stop strings: generation ends when the text contains one; the text returned ends before
    /// it. Matched on the decoded text, so a stop string split across tokens is still found.
    pub stop: Vec<String>,
    /// Token ids that end generation besides the tokenizer's EOS ids.
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past EOS (benchmarks).
    pub ignore_eos: bool,
    /// Some(n): report each generated token's log-probability and the n most likely
    /// alternatives (n <= 20).
    pub logprobs: Option<usize>,
}

impl Default for RequestParams {
    fn default() -> Self {
        RequestParams {
            max_tokens: 256,
            sampler: SamplerParams::default(),
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logprobs: None,
        }
    }
}

/// The most log-probabilities a request may ask for per token.
pub const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: u32,
    /// The token's own text (may be a partial character).
    pub text: String,
    pub logprob: f32,
}

/// One generated token's log-probability under the model (before temperature and filters).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub text: String,
    pub logprob: f32,
    /// The most likely tokens at this position, best first.
    pub top: Vec<TopLogprob>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An EOS/stop token or a stop string.
    Stop,
    /// max_tokens reached (or the model's context is full).
    Length,
    /// The caller cancelled (or went away).
    Cancelled,
    /// The engine failed while running this request; see `Completion::error`.
    Error,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Submitted -> first scheduled.
    pub queue_ms: f64,
    /// Submitted -> first generated token.
    pub ttft_ms: f64,
    /// Submitted -> done.
    pub total_ms: f64,
    /// Generated tokens after the first / time after the first.
    pub decode_tokens_per_s: f64,
    /// Times the request was preempted (its KV dropped and recomputed later).
    pub preemptions: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub finish_reason: FinishReason,
    /// The stop string that ended generation, if one did.
    pub matched_stop: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
    /// Set when finish_reason is Error.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Event {
    /// New text (may be empty while a multi-token character or a possible stop string is held
    /// back), the ids that produced it and, when asked for, their log-probabilities.
    Delta {
        text: String,
        tokens: Vec<u32>,
        logprobs: Vec<TokenLogprob>,
    },
    /// Always the last event of a stream.
    Done(Completion),
}

/// The engine's knobs; `Default` suits a desktop machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// KV memory for the whole process in bytes; None: `kv_memory_fraction` of device memory.
    pub kv_memory_bytes: Option<usize>,
    pub kv_memory_fraction: f64,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Tokens per forward pass (decode tokens + prefill chunks): bounds how long one step can
    /// take, so a long prompt never freezes other streams.
    pub max_batch_tokens: usize,
    /// Sequences running at once.
    pub max_running: usize,
    /// Reuse KV blocks of identical prompt prefixes.
    pub prefix_caching: bool,
    /// Longest prompt + completion; None: the model's max_position_embeddings.
    pub max_context: Option<usize>,
    /// Code path and dtype; the default follows the device ([`crate::compute`]).
    pub compute: crate::compute::ComputeOptions,
    /// Queue each pass before the previous pass's tokens are read (the worker's run-ahead).
    /// None: on, unless `CORTEX_RUN_AHEAD=0`. On a GPU the device computes while the host
    /// builds the next pass; on the CPU it measured 4-9% faster for one stream and even for
    /// eight once the host's per-layer evals were gone (docs/ARCHITECTURE.md).
    pub run_ahead: Option<bool>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kv_memory_bytes: None,
            kv_memory_fraction: 0.15,
            block_size: 16,
            max_batch_tokens: 512,
            max_running: 64,
            prefix_caching: true,
            max_context: None,
            compute: Default::default(),
            run_ahead: None,
        }
    }
}

/// A snapshot of the engine's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    pub total_blocks: usize,
    pub free_blocks: usize,
    /// Free blocks that still hold a cached prefix (reusable until evicted).
    pub cached_blocks: usize,
    pub block_size: usize,
    pub kv_bytes_per_token: usize,
    /// Requests finished so far, and preemptions.
    pub finished: usize,
    pub preemptions: usize,
    pub steps: usize,
    /// Passes queued before the previous pass's tokens were read ([`EngineConfig::run_ahead`]).
    pub steps_ahead: usize,
    /// Tokens held by running sequences / tokens their blocks can hold.
    pub kv_utilization: f64,
    /// Token slots allocated in memory now (the pool grows up to total_blocks * block_size).
    pub kv_capacity_tokens: usize,
}
