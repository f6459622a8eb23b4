//! Conversations and streamed replies. A conversation is a tree of messages (catalog): sending
//! a message adds a user message under a parent (editing = a sibling under the same parent)
//! and an assistant reply under it; regenerating adds an assistant sibling. The branch sent to
//! the model is the path from the root to the user message, with the conversation's (else the
//! model's) system prompt, through the model's own chat template. Consecutive turns share
//! their prefix, so the engine's prefix cache makes a branch or a next turn cheap (the reply's
//! `cached_tokens` shows it).
//!
//! A reply runs in its own task and streams [`ChatEvent`]s; it ends when the engine is done,
//! when [`App::stop_reply`] is called, or when the receiver is dropped (a closed HTTP stream or
//! window): in every case what was generated is saved, with its finish reason. Messages are
//! saved one by one (the user message at once, the reply when it ends), never the whole tree.
use crate::app::App;
use crate::{ErrorBody, Result, ServiceError};
use cortex_catalog::{
    Conversation, ConversationPatch, ErrorInfo, FinishReason, Message, MessageStats, MessageUpdate,
    ModelSettings, NewConversation, NewMessage, Role,
};
use cortex_engine::sampler::SamplerParams;
use cortex_engine::serving::{Completion, Event, RequestParams};
use cortex_tokenizer::{ChatMessage, ChatOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Default title until the first message names the conversation.
pub const NEW_TITLE: &str = "New chat";
/// Longest message accepted (characters).
pub const MAX_MESSAGE_CHARS: usize = 200_000;
const DEFAULT_MAX_TOKENS: usize = 1024;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    UserMessage {
        message: Message,
    },
    AssistantStarted {
        message: Message,
    },
    Delta {
        text: String,
    },
    Done {
        message: Message,
    },
    Error {
        error: ErrorBody,
        message: Option<Message>,
    },
}

impl ChatEvent {
    pub fn is_last(&self) -> bool {
        matches!(self, ChatEvent::Done { .. } | ChatEvent::Error { .. })
    }
}

/// The events of one reply; dropping it stops the reply (what was generated is kept).
pub struct ReplyStream {
    rx: mpsc::Receiver<ChatEvent>,
}

impl ReplyStream {
    pub async fn recv(&mut self) -> Option<ChatEvent> {
        self.rx.recv().await
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChat {
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub settings: Option<ModelSettings>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatPatch {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "crate::error::present")]
    pub model_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::error::present")]
    pub system_prompt: Option<Option<String>>,
    #[serde(default)]
    pub settings: Option<ModelSettings>,
    #[serde(default)]
    pub current_leaf_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    #[serde(default)]
    pub parent_id: Option<String>,
    pub content: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConversationTree {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

/// The running replies, by conversation: one at a time per conversation.
#[derive(Default)]
pub(crate) struct Replies {
    running: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Replies {
    pub fn stop_all(&self) {
        for n in crate::registry::lock(&self.running).values() {
            n.notify_one();
        }
    }
}

/// Removes the conversation's entry when the reply task ends, however it ends.
struct RunningGuard {
    app: App,
    conversation: String,
    stop: Arc<Notify>,
}

impl RunningGuard {
    /// Frees the conversation for its next reply (once this reply's text is saved, before its
    /// last event goes out: a client that sees the end may send again at once). Idempotent, and
    /// never frees a newer reply's claim.
    fn release(&self) {
        let mut running = crate::registry::lock(&self.app.inner.replies.running);
        if running
            .get(&self.conversation)
            .is_some_and(|n| Arc::ptr_eq(n, &self.stop))
        {
            running.remove(&self.conversation);
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.release();
    }
}

fn title_from(content: &str) -> String {
    let line = content
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut title: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    if title.is_empty() {
        NEW_TITLE.into()
    } else {
        title
    }
}

/// Conversation settings win over the model's; the engine's defaults fill the rest.
fn request_params(conv: &ModelSettings, model: &ModelSettings) -> RequestParams {
    let temperature = conv.temperature.or(model.temperature).unwrap_or(0.7);
    let top_p = conv.top_p.or(model.top_p).unwrap_or(1.0);
    let top_k = conv.top_k.or(model.top_k).unwrap_or(0);
    let max_tokens = conv.max_tokens.or(model.max_tokens);
    RequestParams {
        max_tokens: max_tokens.map_or(DEFAULT_MAX_TOKENS, |n| n.max(1) as usize),
        sampler: SamplerParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k: top_k.max(0) as usize,
            ..SamplerParams::default()
        },
        ..RequestParams::default()
    }
}

impl App {
    pub async fn create_conversation(&self, c: NewChat) -> Result<Conversation> {
        if let Some(id) = &c.model_id {
            self.catalog().get_model(id).await?;
        }
        Ok(self
            .catalog()
            .create_conversation(&NewConversation {
                title: c
                    .title
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| NEW_TITLE.into()),
                model_id: c.model_id,
                system_prompt: c.system_prompt.filter(|s| !s.trim().is_empty()),
                settings: c.settings.unwrap_or_default(),
            })
            .await?)
    }

    pub async fn list_conversations(&self, query: Option<&str>) -> Result<Vec<Conversation>> {
        let q = query.map(str::trim).filter(|q| !q.is_empty());
        Ok(self.catalog().list_conversations(q).await?)
    }

    pub async fn get_conversation(&self, id: &str) -> Result<ConversationTree> {
        let conversation = self.catalog().get_conversation(id).await?;
        let messages = self.catalog().list_messages(id).await?;
        Ok(ConversationTree {
            conversation,
            messages,
        })
    }

    pub async fn update_conversation(&self, id: &str, p: ChatPatch) -> Result<Conversation> {
        if let Some(Some(m)) = &p.model_id {
            self.catalog().get_model(m).await?;
        }
        let patch = ConversationPatch {
            title: p.title,
            model_id: p.model_id,
            system_prompt: p.system_prompt.map(|s| s.filter(|s| !s.trim().is_empty())),
            settings: p.settings,
            current_leaf_id: p.current_leaf_id.map(Some),
        };
        Ok(self.catalog().update_conversation(id, &patch).await?)
    }

    pub async fn delete_conversation(&self, id: &str) -> Result<()> {
        self.stop_reply(id);
        Ok(self.catalog().delete_conversation(id).await?)
    }

    /// Stops the conversation's running reply, if any; true if one was running.
    pub fn stop_reply(&self, conversation_id: &str) -> bool {
        match crate::registry::lock(&self.inner.replies.running).get(conversation_id) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Adds a user message under `parent_id` and streams the reply to it.
    pub async fn send_message(&self, conversation_id: &str, m: SendMessage) -> Result<ReplyStream> {
        let content = m.content.trim_end().to_string();
        if content.trim().is_empty() {
            return Err(ServiceError::invalid("content", "the message is empty"));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ServiceError::invalid(
                "content",
                format!("longer than {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        let conv = self.catalog().get_conversation(conversation_id).await?;
        let parent = m.parent_id.filter(|p| !p.is_empty());
        if let Some(p) = &parent {
            let pm = self.catalog().get_message(p).await?;
            if pm.conversation_id != conv.id || pm.role != Role::Assistant {
                return Err(ServiceError::invalid(
                    "parent_id",
                    "must be an assistant message of this conversation (or empty for the first message)",
                ));
            }
        }
        let stop = self.claim_reply(&conv.id)?;
        let user = self
            .catalog()
            .add_message(
                &conv.id,
                &NewMessage::new(parent.as_deref(), Role::User, content.clone()),
            )
            .await;
        let user = match user {
            Ok(u) => u,
            Err(e) => {
                crate::registry::lock(&self.inner.replies.running).remove(&conv.id);
                return Err(e.into());
            }
        };
        if conv.title == NEW_TITLE && parent.is_none() {
            let patch = ConversationPatch {
                title: Some(title_from(&content)),
                ..Default::default()
            };
            self.catalog().update_conversation(&conv.id, &patch).await?;
        }
        Ok(self.spawn_reply(conv, user, true, stop))
    }

    /// Generates a new reply to the user message that `message_id` (an assistant message)
    /// answers, as its sibling; given a user message, a (new) reply to it.
    pub async fn regenerate(&self, conversation_id: &str, message_id: &str) -> Result<ReplyStream> {
        let conv = self.catalog().get_conversation(conversation_id).await?;
        let old = self.catalog().get_message(message_id).await?;
        if old.conversation_id != conv.id {
            return Err(ServiceError::invalid(
                "message_id",
                "must be a message of this conversation",
            ));
        }
        // an assistant message gets a sibling; a user message (whose reply failed before it
        // was written) gets a reply
        let user = match old.role {
            Role::Assistant => {
                let parent = old.parent_id.ok_or_else(|| {
                    ServiceError::invalid("message_id", "the message answers nothing")
                })?;
                self.catalog().get_message(&parent).await?
            }
            Role::User => old,
            Role::System => {
                return Err(ServiceError::invalid(
                    "message_id",
                    "a system message has no reply to regenerate",
                ))
            }
        };
        let stop = self.claim_reply(&conv.id)?;
        Ok(self.spawn_reply(conv, user, false, stop))
    }

    fn claim_reply(&self, conversation_id: &str) -> Result<Arc<Notify>> {
        let mut running = crate::registry::lock(&self.inner.replies.running);
        if running.contains_key(conversation_id) {
            return Err(ServiceError::Conflict(
                "a reply is still being written in this conversation; stop it first".into(),
            ));
        }
        let stop = Arc::new(Notify::new());
        running.insert(conversation_id.to_string(), stop.clone());
        Ok(stop)
    }

    fn spawn_reply(
        &self,
        conv: Conversation,
        user: Message,
        announce_user: bool,
        stop: Arc<Notify>,
    ) -> ReplyStream {
        let (tx, rx) = mpsc::channel(256);
        let guard = RunningGuard {
            app: self.clone(),
            conversation: conv.id.clone(),
            stop: stop.clone(),
        };
        let app = self.clone();
        tokio::spawn(async move {
            let guard = guard;
            if announce_user {
                let _ = tx
                    .send(ChatEvent::UserMessage {
                        message: user.clone(),
                    })
                    .await;
            }
            let mut reply = Reply {
                app: &app,
                tx: &tx,
                conv: &conv,
                user: &user,
                stop: &stop,
                running: &guard,
            };
            reply.run().await;
        });
        ReplyStream { rx }
    }
}

/// One reply being written.
struct Reply<'a> {
    app: &'a App,
    tx: &'a mpsc::Sender<ChatEvent>,
    conv: &'a Conversation,
    user: &'a Message,
    stop: &'a Notify,
    running: &'a RunningGuard,
}

impl Reply<'_> {
    async fn run(&mut self) {
        let catalog = self.app.catalog();
        let model = match self.model().await {
            Ok(m) => m,
            Err(e) => return self.fail(None, e).await,
        };
        let mut new = NewMessage::new(Some(&self.user.id), Role::Assistant, "");
        new.model_id = Some(model.id.clone());
        let msg = match catalog.add_message(&self.conv.id, &new).await {
            Ok(m) => m,
            Err(e) => return self.fail(None, e.into()).await,
        };
        let _ = self
            .tx
            .send(ChatEvent::AssistantStarted {
                message: msg.clone(),
            })
            .await;
        match self.generate(&model).await {
            Ok((text, completion)) => {
                let stats = stats_of(&completion);
                let error = completion
                    .error
                    .as_ref()
                    .map(|e| ErrorInfo::new("internal", e.clone()));
                let update = MessageUpdate {
                    content: Some(text),
                    stats: Some(Some(stats)),
                    error: Some(error),
                };
                match catalog.update_message(&msg.id, &update).await {
                    Ok(saved) => {
                        let _ = catalog.touch_model(&model.id).await;
                        self.running.release();
                        let _ = self.tx.send(ChatEvent::Done { message: saved }).await;
                    }
                    Err(e) => self.fail(Some(msg), e.into()).await,
                }
            }
            Err(e) => self.fail(Some(msg), e).await,
        }
    }

    async fn model(&self) -> Result<cortex_catalog::LocalModel> {
        let id = match &self.conv.model_id {
            Some(id) => id.clone(),
            None => self.app.ensure_default_model().await?,
        };
        Ok(self.app.catalog().get_model(&id).await?)
    }

    /// Runs the engine; returns the text and the engine's record (a stop or a vanished
    /// receiver ends it as cancelled, keeping the text).
    async fn generate(&self, model: &cortex_catalog::LocalModel) -> Result<(String, Completion)> {
        let lease = self
            .app
            .registry()
            .acquire(&model.path.to_string_lossy())
            .await?;
        let branch = self.app.catalog().path_to_root(&self.user.id).await?;
        let system = self
            .conv
            .system_prompt
            .clone()
            .or_else(|| model.settings.system_prompt.clone())
            .filter(|s| !s.trim().is_empty());
        let mut chat: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
        chat.extend(
            branch
                .iter()
                .map(|m| ChatMessage::new(m.role.as_str(), m.content.clone())),
        );
        let engine = lease.engine().clone();
        let ids = tokio::task::spawn_blocking(move || {
            let tok = engine.tokenizer();
            let opts = ChatOptions {
                add_generation_prompt: true,
                ..Default::default()
            };
            let text = tok.apply_chat_template(&chat, &opts)?;
            tok.encode(&text, false)
        })
        .await?
        .map_err(|e| ServiceError::invalid("content", format!("chat template: {e}")))?;
        let mut params = request_params(&self.conv.settings, &model.settings);
        let room = lease.engine().max_context().saturating_sub(ids.len());
        if room == 0 {
            return Err(ServiceError::invalid(
                "content",
                format!(
                    "the conversation ({} tokens) fills the model's context of {}; start a new chat or edit an earlier message",
                    ids.len(),
                    lease.engine().max_context()
                ),
            ));
        }
        params.max_tokens = params.max_tokens.min(room);
        let mut stream = lease.engine().submit(ids, params)?;
        let mut text = String::new();
        loop {
            tokio::select! {
                ev = stream.recv() => match ev {
                    Some(Event::Delta { text: t, .. }) => {
                        if t.is_empty() {
                            continue;
                        }
                        text.push_str(&t);
                        if self.tx.send(ChatEvent::Delta { text: t }).await.is_err() {
                            stream.cancel();
                        }
                    }
                    Some(Event::Done(c)) => return Ok((text, c)),
                    None => return Err(ServiceError::Engine(cortex_engine::EngineError::EngineStopped)),
                },
                _ = self.stop.notified() => stream.cancel(),
                _ = self.tx.closed() => stream.cancel(),
            }
        }
    }

    async fn fail(&self, msg: Option<Message>, e: ServiceError) {
        let body = e.body();
        tracing::warn!(conversation = self.conv.id, "reply failed: {e}");
        let mut saved = None;
        if let Some(m) = msg {
            let update = MessageUpdate {
                error: Some(Some(e.info())),
                stats: Some(Some(MessageStats {
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cached_tokens: 0,
                    ttft_ms: 0,
                    tokens_per_s: 0.0,
                    finish_reason: FinishReason::Error,
                })),
                ..Default::default()
            };
            saved = self.app.catalog().update_message(&m.id, &update).await.ok();
        }
        self.running.release();
        let _ = self
            .tx
            .send(ChatEvent::Error {
                error: body,
                message: saved,
            })
            .await;
    }
}

fn stats_of(c: &Completion) -> MessageStats {
    use cortex_engine::serving::FinishReason as F;
    MessageStats {
        prompt_tokens: c.usage.prompt_tokens as i64,
        completion_tokens: c.usage.completion_tokens as i64,
        cached_tokens: c.usage.cached_tokens as i64,
        ttft_ms: c.timings.ttft_ms.round() as i64,
        tokens_per_s: c.timings.decode_tokens_per_s,
        finish_reason: match c.finish_reason {
            F::Stop => FinishReason::Stop,
            F::Length => FinishReason::Length,
            F::Cancelled => FinishReason::Cancelled,
            F::Error => FinishReason::Error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line() {
        assert_eq!(title_from("\n  What is Rust?\nmore"), "What is Rust?");
        assert_eq!(title_from("   "), NEW_TITLE);
        let long = "x".repeat(80);
        assert_eq!(title_from(&long).chars().count(), 61);
    }

    #[test]
    fn conversation_settings_win_over_the_model() {
        let conv = ModelSettings {
            temperature: Some(0.0),
            ..Default::default()
        };
        let model = ModelSettings {
            temperature: Some(1.5),
            top_k: Some(40),
            max_tokens: Some(64),
            ..Default::default()
        };
        let p = request_params(&conv, &model);
        assert_eq!(p.sampler.temperature, 0.0);
        assert_eq!(p.sampler.top_k, 40);
        assert_eq!(p.max_tokens, 64);
        assert_eq!(
            request_params(&ModelSettings::default(), &ModelSettings::default()).max_tokens,
            DEFAULT_MAX_TOKENS
        );
    }
}
