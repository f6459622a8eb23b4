//! Streamed answers as server-sent events, in OpenAI's order: (chat) a chunk with the role,
//! content chunks, a chunk with finish_reason, (with stream_options.include_usage) a chunk with
//! empty choices and the usage, then `data: [DONE]`. A request that fails midway gets one
//! `data: {"error": ...}` event and the stream ends without [DONE]; so does one that waits
//! past the queue timeout before its first token (`queue_timeout`).
//!
//! The [`Job`] (engine stream and model lease) lives inside the body stream: when the client
//! disconnects, hyper drops the body, which drops the request stream and so cancels it.
use super::error::ApiError;
use super::generate::{self, Api, Job};
use super::openai::*;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cortex_engine::serving::{Completion, Event, TokenLogprob};
use std::convert::Infallible;
use std::time::Duration;

enum Phase {
    Start,
    Body,
    Usage(Box<Completion>),
    Done,
    End,
}

struct Streaming {
    job: Job,
    phase: Phase,
    /// Characters sent so far (completions logprobs' text_offset).
    offset: usize,
}

pub fn respond(job: Job) -> Response {
    let state = Streaming {
        job,
        phase: Phase::Start,
        offset: 0,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let ev = s.next().await?;
        Some((Ok::<_, Infallible>(ev), s))
    });
    // comments every few seconds keep proxies from closing a stream during a long prefill,
    // and surface a vanished client even while no token is produced
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)));
    ([("cache-control", "no-cache")], sse).into_response()
}

fn json_event<T: serde::Serialize>(v: &T) -> SseEvent {
    let data = serde_json::to_string(v).unwrap_or_else(|e| {
        ApiError::internal(format!("serializing a chunk: {e}"))
            .to_json()
            .to_string()
    });
    SseEvent::default().data(data)
}

impl Streaming {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::End) {
                Phase::Start => {
                    self.phase = Phase::Body;
                    if self.job.api == Api::Chat {
                        let delta = Delta {
                            role: Some("assistant"),
                            content: Some(String::new()),
                        };
                        return Some(self.chat_chunk(delta, None, None));
                    }
                }
                Phase::Body => match self.job.next_event().await {
                    Err(e) => return Some(json_event(&e.to_json())),
                    Ok(Some(Event::Delta { text, logprobs, .. })) => {
                        self.phase = Phase::Body;
                        if text.is_empty() && logprobs.is_empty() {
                            continue;
                        }
                        return Some(self.delta(text, &logprobs));
                    }
                    Ok(Some(Event::Done(c))) => {
                        generate::log_done(&self.job, &c);
                        let finish = match generate::finish_reason(&c) {
                            Ok(f) => f,
                            Err(e) => return Some(json_event(&e.to_json())),
                        };
                        self.phase = if self.job.include_usage {
                            Phase::Usage(Box::new(c))
                        } else {
                            Phase::Done
                        };
                        return Some(self.finish(finish));
                    }
                    Ok(None) => {
                        let e = ApiError::unavailable("the engine stopped");
                        return Some(json_event(&e.to_json()));
                    }
                },
                Phase::Usage(c) => {
                    self.phase = Phase::Done;
                    return Some(self.usage(&c));
                }
                Phase::Done => return Some(SseEvent::default().data("[DONE]")),
                Phase::End => return None,
            }
        }
    }

    fn chat_chunk(
        &self,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<&'static str>,
    ) -> SseEvent {
        json_event(&ChatChunk {
            id: self.job.id.clone(),
            object: "chat.completion.chunk",
            created: self.job.created,
            model: self.job.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: None,
            timings: None,
        })
    }

    fn text_chunk(
        &self,
        text: String,
        logprobs: Option<TextLogprobs>,
        finish: Option<&'static str>,
    ) -> SseEvent {
        json_event(&TextCompletion {
            id: self.job.id.clone(),
            object: "text_completion",
            created: self.job.created,
            model: self.job.model.clone(),
            choices: vec![TextChoice {
                index: 0,
                text,
                logprobs,
                finish_reason: finish,
            }],
            usage: None,
            timings: None,
        })
    }

    fn delta(&mut self, text: String, lps: &[TokenLogprob]) -> SseEvent {
        match self.job.api {
            Api::Chat => {
                let logprobs = self.job.logprobs.then(|| generate::chat_logprobs(lps));
                let delta = Delta {
                    role: None,
                    content: Some(text),
                };
                self.chat_chunk(delta, logprobs, None)
            }
            Api::Completion => {
                let logprobs = self
                    .job
                    .logprobs
                    .then(|| generate::text_logprobs(lps, &mut self.offset));
                self.text_chunk(text, logprobs, None)
            }
        }
    }

    fn finish(&self, reason: &'static str) -> SseEvent {
        match self.job.api {
            Api::Chat => self.chat_chunk(Delta::default(), None, Some(reason)),
            Api::Completion => self.text_chunk(String::new(), None, Some(reason)),
        }
    }

    fn usage(&self, c: &Completion) -> SseEvent {
        let (usage, timings) = (Some(generate::usage_of(c)), Some(generate::timings_of(c)));
        match self.job.api {
            Api::Chat => json_event(&ChatChunk {
                id: self.job.id.clone(),
                object: "chat.completion.chunk",
                created: self.job.created,
                model: self.job.model.clone(),
                choices: Vec::new(),
                usage,
                timings,
            }),
            Api::Completion => json_event(&TextCompletion {
                id: self.job.id.clone(),
                object: "text_completion",
                created: self.job.created,
                model: self.job.model.clone(),
                choices: Vec::new(),
                usage,
                timings,
            }),
        }
    }
}
