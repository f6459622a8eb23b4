//! The serving core: many requests at once on one model.
//!
//! [`EngineHandle::load`] loads a model on its own engine thread, which owns every
//! MLX array (MLX is used from one thread only). Callers on any thread `submit` token ids and
//! read an [`Event`] stream back; dropping the stream or calling `cancel` ends the request at the
//! next step and frees its KV blocks.
//!
//! - [`crate::kv`]: the paged KV cache (block allocator, prefix cache, copy-on-write).
//! - [`scheduler`]: which sequences run in the next step (continuous batching, chunked
//!   prefill, admission by free KV memory, preemption by recompute).
//! - [`worker`]: the engine thread's loop: batch forward, per-request sampling, stop strings,
//!   detokenization, events.
pub mod api;
pub mod scheduler;
pub mod stop;
mod worker;

pub use api::*;

use crate::error::{EngineError, Result};
use cortex_tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::mpsc as tmpsc;

/// What the engine thread receives.
pub(crate) enum Command {
    Submit(Box<Submission>),
    Shutdown,
}

pub(crate) struct Submission {
    pub id: u64,
    pub prompt: Vec<u32>,
    pub params: RequestParams,
    pub events: tmpsc::UnboundedSender<Event>,
    pub cancelled: Arc<AtomicBool>,
    pub submitted: std::time::Instant,
}

struct Shared {
    commands: Mutex<mpsc::Sender<Command>>,
    tokenizer: Tokenizer,
    dir: PathBuf,
    model_type: String,
    max_context: usize,
    vocab_size: usize,
    next_id: AtomicU64,
    stats: Arc<Mutex<EngineStats>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn stop(&self) {
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// What the caller's side keeps of a model loaded on the engine thread.
struct Loaded {
    tokenizer: Tokenizer,
    dir: PathBuf,
    model_type: String,
    vocab_size: usize,
}

/// A running engine. Cheap to clone; the engine thread stops when the last clone is dropped
/// or on [`EngineHandle::shutdown`].
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

impl EngineHandle {
    /// Starts an engine thread and loads the model folder `dir` on it (MLX arrays belong to
    /// the thread that made them, so the model is loaded where it runs); sizes the KV pool from
    /// `config` and the model's KV bytes per token. Returns once the model is loaded: load
    /// errors come back here.
    pub fn load(dir: &Path, config: EngineConfig) -> Result<EngineHandle> {
        let dir = dir.to_path_buf();
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("cortex-engine".into())
                .spawn(move || {
                    let setup = crate::loader::load_with(&dir, &config.compute).and_then(|model| {
                        let info = Loaded {
                            tokenizer: model.tokenizer.clone(),
                            dir: model.dir.clone(),
                            model_type: model.model_type.clone(),
                            vocab_size: model.model.vocab_size() as usize,
                        };
                        let context = config.max_context.or(model.context_length).unwrap_or(4096);
                        let (w, max_context) =
                            worker::Worker::new(model, config, context.max(2), stats)?;
                        Ok((w, max_context, info))
                    });
                    match setup {
                        Ok((mut w, max_context, info)) => {
                            let _ = ready_tx.send(Ok((max_context, info)));
                            w.run(rx);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| {
                    EngineError::InvalidRequest(format!("cannot start the engine thread: {e}"))
                })?
        };
        let (max_context, info) = match ready_rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(EngineError::EngineStopped);
            }
        };
        Ok(EngineHandle {
            shared: Arc::new(Shared {
                commands: Mutex::new(tx),
                tokenizer: info.tokenizer,
                dir: info.dir,
                model_type: info.model_type,
                max_context,
                vocab_size: info.vocab_size,
                next_id: AtomicU64::new(1),
                stats,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// The model folder this engine serves.
    pub fn model_dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn model_type(&self) -> &str {
        &self.shared.model_type
    }

    /// Prompt plus completion tokens one request may use.
    pub fn max_context(&self) -> usize {
        self.shared.max_context
    }

    /// Queues a request. Fails at once (nothing queued) when the prompt is empty, is longer
    /// than the context allows, or a parameter is out of range; `max_tokens` is clipped to the
    /// room the context leaves.
    pub fn submit(&self, prompt: Vec<u32>, params: RequestParams) -> Result<RequestStream> {
        worker::validate(
            &prompt,
            &params,
            self.shared.max_context,
            self.shared.vocab_size,
        )?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (etx, erx) = tmpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let sub = Submission {
            id,
            prompt,
            params,
            events: etx,
            cancelled: cancelled.clone(),
            submitted: std::time::Instant::now(),
        };
        self.shared
            .commands
            .lock()
            .map_err(|_| EngineError::EngineStopped)?
            .send(Command::Submit(Box::new(sub)))
            .map_err(|_| EngineError::EngineStopped)?;
        Ok(RequestStream {
            id,
            events: erx,
            cancelled,
        })
    }

    /// The latest snapshot (updated after every engine step).
    pub fn stats(&self) -> EngineStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Stops the engine thread: running requests end with finish reason `cancelled`.
    pub fn shutdown(&self) {
        self.shared.stop();
    }
}

/// A request's events. Dropping it cancels the request.
pub struct RequestStream {
    id: u64,
    events: tmpsc::UnboundedReceiver<Event>,
    cancelled: Arc<AtomicBool>,
}

/// Cancels a request from anywhere (e.g. an HTTP handler that saw its client go away); the
/// engine drops it before its next step.
#[derive(Clone)]
pub struct Canceller {
    cancelled: Arc<AtomicBool>,
}

impl Canceller {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

impl RequestStream {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event; None after `Done` (or if the engine stopped).
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is ready: Ok(None) when none is yet, Err when the stream has
    /// ended (after `Done`, or the engine stopped).
    pub fn try_recv(&mut self) -> std::result::Result<Option<Event>, EngineError> {
        match self.events.try_recv() {
            Ok(ev) => Ok(Some(ev)),
            Err(tmpsc::error::TryRecvError::Empty) => Ok(None),
            Err(tmpsc::error::TryRecvError::Disconnected) => Err(EngineError::EngineStopped),
        }
    }

    /// The next event, blocking this (non-async) thread.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.events.blocking_recv()
    }

    pub fn canceller(&self) -> Canceller {
        Canceller {
            cancelled: self.cancelled.clone(),
        }
    }

    pub fn cancel(&self) {
        self.canceller().cancel();
    }

    /// Reads the stream to the end: the whole text, every event's ids and the final record.
    pub fn collect_blocking(mut self) -> Result<(String, Vec<u32>, Completion)> {
        let (mut text, mut ids) = (String::new(), Vec::new());
        while let Some(ev) = self.blocking_recv() {
            match ev {
                Event::Delta {
                    text: t, tokens, ..
                } => {
                    text.push_str(&t);
                    ids.extend(tokens);
                }
                Event::Done(c) => return Ok((text, ids, c)),
            }
        }
        Err(EngineError::EngineStopped)
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        self.cancel();
    }
}
