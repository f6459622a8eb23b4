//! POST /v1/chat/completions and /v1/completions: validate, take the model, tokenize, submit,
//! then answer whole or as a stream ([`super::stream`]).
//!
//! A request's [`RequestStream`] lives in the handler future (whole answers) or the SSE body
//! (streams); either is dropped when the client goes away, and dropping the stream cancels the
//! request in the engine. The [`ModelLease`] travels with it so the model stays loaded.
//!
//! Until its first token a request is queued: it holds a [`WaitTicket`] (at most
//! `max_queue` per model, beyond that 503 `queue_full`) and waits at most `queue_timeout`
//! (then it is cancelled with 503 `queue_timeout`). Once tokens flow, nothing cuts it.
use super::error::{model_error, ApiError};
use super::extract::JsonBody;
use super::openai::*;
use super::params::{self, Plan};
use super::{prompt, stream, AppState, Limits};
use crate::service::registry::WaitTicket;
use crate::service::ModelLease;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_engine::serving::{Completion, Event, FinishReason, RequestStream, TokenLogprob};
use std::collections::HashMap;
use tokio::time::Instant;

/// Seconds a refused client is told to wait before it tries again.
const RETRY_AFTER_S: u64 = 1;

/// Which endpoint a generation answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completion,
}

/// A submitted request and what its answer needs.
pub struct Job {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub logprobs: bool,
    pub include_usage: bool,
    pub events: RequestStream,
    /// Counts the request against the model's queue until its first event.
    pub waiting: Option<WaitTicket>,
    /// When a request that has not started by then is dropped.
    pub deadline: Option<Instant>,
    /// Keeps the model loaded until the answer is complete.
    #[allow(dead_code)] // held, never read: dropped after `events`
    pub lease: ModelLease,
}

impl Job {
    /// The request's next event. Before the first one the request is queued: past its
    /// deadline it is cancelled and answers `queue_timeout`; from the first one on it leaves
    /// the queue and waits as long as generation takes.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ApiError> {
        let event = match self.deadline {
            None => self.events.recv().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    self.events.cancel();
                    self.waiting = None;
                    return Err(queue_timeout());
                }
            },
        };
        self.deadline = None;
        self.waiting = None;
        Ok(event)
    }
}

fn queue_full() -> ApiError {
    ApiError::unavailable(
        "too many requests are waiting for this model; try again shortly (see --max-queue)",
    )
    .with_code("queue_full")
    .with_retry_after(RETRY_AFTER_S)
}

fn queue_timeout() -> ApiError {
    ApiError::unavailable(
        "the request waited too long for the model to start it; try again shortly \
         (see --queue-timeout)",
    )
    .with_code("queue_timeout")
    .with_retry_after(RETRY_AFTER_S)
}

pub async fn chat(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let logprobs = params::chat_logprobs(req.logprobs, req.top_logprobs)?;
    let plan = params::plan(&req.sampling, req.max_completion_tokens, logprobs)?;
    let lease = app
        .registry
        .acquire_from(&req.model, app.sources)
        .await
        .map_err(|e| model_error(&req.model, e))?;
    let engine = lease.engine().clone();
    let messages = req.messages;
    let ids =
        tokio::task::spawn_blocking(move || prompt::chat_prompt(engine.tokenizer(), messages))
            .await??;
    start(Api::Chat, req.model, lease, ids, plan, app.limits).await
}

pub async fn completions(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    if req.echo == Some(true) {
        return Err(ApiError::invalid_param("echo", "echo is not supported"));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
    }
    let logprobs = params::completion_logprobs(req.logprobs)?;
    let plan = params::plan(&req.sampling, None, logprobs)?;
    let lease = app
        .registry
        .acquire_from(&req.model, app.sources)
        .await
        .map_err(|e| model_error(&req.model, e))?;
    let engine = lease.engine().clone();
    let p = req.prompt;
    let ids = tokio::task::spawn_blocking(move || prompt::completion_prompt(engine.tokenizer(), p))
        .await??;
    start(Api::Completion, req.model, lease, ids, plan, app.limits).await
}

async fn start(
    api: Api,
    model: String,
    lease: ModelLease,
    ids: Vec<u32>,
    plan: Plan,
    limits: Limits,
) -> Result<Response, ApiError> {
    let waiting = lease.wait_ticket(limits.max_queue).ok_or_else(queue_full)?;
    let deadline = limits.queue_timeout.map(|t| Instant::now() + t);
    let engine = lease.engine();
    let params = plan.params_for(ids.len(), engine.max_context());
    let prompt_param = if api == Api::Chat {
        "messages"
    } else {
        "prompt"
    };
    let events = engine.submit(ids, params).map_err(|e| {
        let e = ApiError::from(e);
        if e.code == Some("context_length_exceeded") {
            e.with_param(prompt_param)
        } else {
            e
        }
    })?;
    let job = Job {
        api,
        id: super::random_id(if api == Api::Chat {
            "chatcmpl-"
        } else {
            "cmpl-"
        }),
        created: super::unix_now(),
        model,
        logprobs: plan.params.logprobs.is_some(),
        include_usage: plan.include_usage,
        events,
        waiting: Some(waiting),
        deadline,
        lease,
    };
    if plan.stream {
        return Ok(stream::respond(job));
    }
    whole(job).await
}

/// Reads the whole answer and shapes it as the endpoint's response object.
async fn whole(mut job: Job) -> Result<Response, ApiError> {
    let (mut text, mut lps) = (String::new(), Vec::new());
    let done = loop {
        match job.next_event().await? {
            Some(Event::Delta {
                text: t, logprobs, ..
            }) => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            Some(Event::Done(c)) => break c,
            None => return Err(ApiError::unavailable("the engine stopped")),
        }
    };
    let finish = finish_reason(&done)?;
    log_done(&job, &done);
    let usage = usage_of(&done);
    let timings = timings_of(&done);
    let body = match job.api {
        Api::Chat => Json(ChatCompletion {
            id: job.id,
            object: "chat.completion",
            created: job.created,
            model: job.model,
            choices: vec![ChatChoice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: text,
                },
                logprobs: job.logprobs.then(|| chat_logprobs(&lps)),
                finish_reason: finish,
            }],
            usage,
            timings,
        })
        .into_response(),
        Api::Completion => {
            let mut offset = 0;
            Json(TextCompletion {
                id: job.id,
                object: "text_completion",
                created: job.created,
                model: job.model,
                choices: vec![TextChoice {
                    index: 0,
                    text,
                    logprobs: job.logprobs.then(|| text_logprobs(&lps, &mut offset)),
                    finish_reason: Some(finish),
                }],
                usage: Some(usage),
                timings: Some(timings),
            })
            .into_response()
        }
    };
    Ok(body)
}

/// OpenAI's finish_reason, or the error a cancelled or failed request answers with.
pub fn finish_reason(c: &Completion) -> Result<&'static str, ApiError> {
    match c.finish_reason {
        FinishReason::Stop => Ok("stop"),
        FinishReason::Length => Ok("length"),
        FinishReason::Cancelled => Err(ApiError::unavailable(
            "the request was cancelled (the server is shutting down)",
        )),
        FinishReason::Error => Err(ApiError::internal(format!(
            "generation failed: {}",
            c.error.as_deref().unwrap_or("unknown engine error")
        ))),
    }
}

pub fn log_done(job: &Job, c: &Completion) {
    tracing::info!(
        id = %job.id,
        model = %job.model,
        finish = ?c.finish_reason,
        prompt_tokens = c.usage.prompt_tokens,
        cached_tokens = c.usage.cached_tokens,
        completion_tokens = c.usage.completion_tokens,
        ttft_ms = c.timings.ttft_ms,
        decode_tps = c.timings.decode_tokens_per_s,
        "completed"
    );
}

pub fn usage_of(c: &Completion) -> UsageOut {
    let u = c.usage;
    UsageOut {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: u.cached_tokens,
        },
    }
}

pub fn timings_of(c: &Completion) -> TimingsOut {
    let t = c.timings;
    TimingsOut {
        queue_ms: t.queue_ms,
        ttft_ms: t.ttft_ms,
        total_ms: t.total_ms,
        decode_tokens_per_s: t.decode_tokens_per_s,
        preemptions: t.preemptions,
    }
}

pub fn chat_logprobs(lps: &[TokenLogprob]) -> ChatLogprobs {
    ChatLogprobs {
        content: lps
            .iter()
            .map(|t| ChatTokenLogprob {
                token: t.text.clone(),
                logprob: t.logprob,
                bytes: t.text.as_bytes().to_vec(),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|a| ChatTopLogprob {
                        token: a.text.clone(),
                        logprob: a.logprob,
                        bytes: a.text.as_bytes().to_vec(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Legacy completions logprobs; `offset` is the completion's length in characters so far.
pub fn text_logprobs(lps: &[TokenLogprob], offset: &mut usize) -> TextLogprobs {
    let mut out = TextLogprobs::default();
    for t in lps {
        out.tokens.push(t.text.clone());
        out.token_logprobs.push(t.logprob);
        out.top_logprobs.push(
            t.top
                .iter()
                .map(|a| (a.text.clone(), a.logprob))
                .collect::<HashMap<_, _>>(),
        );
        out.text_offset.push(*offset);
        *offset += t.text.chars().count();
    }
    out
}
