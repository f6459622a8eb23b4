//! Messages: the nodes of each conversation's tree (see the invariants in `conversations`).
//! A message is written when it starts (a reply with empty content) and updated when it ends
//! (final content and stats), optionally with partial saves in between; never in bulk.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::conversations::{bump, ensure_exists, ensure_message_of};
use crate::db::{new_id, Catalog};
use crate::error::{map_constraint, CatalogError, Result};
use crate::types::{text_enum, ErrorInfo};

text_enum! {
    pub enum Role ("message role") {
        User = "user",
        Assistant = "assistant",
        System = "system",
    }
}

text_enum! {
    pub enum FinishReason ("finish reason") {
        Stop = "stop",
        Length = "length",
        Cancelled = "cancelled",
        Error = "error",
    }
}

/// How a reply was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStats {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub ttft_ms: i64,
    pub tokens_per_s: f64,
    pub finish_reason: FinishReason,
}

/// A message (the app API's `Message`, plus its conversation's id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub parent_id: Option<String>,
    pub role: Role,
    pub content: String,
    pub created_at: i64,
    pub model_id: Option<String>,
    pub stats: Option<MessageStats>,
    pub error: Option<ErrorInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// `None`: a root of the tree.
    pub parent_id: Option<String>,
    pub role: Role,
    pub content: String,
    pub model_id: Option<String>,
    pub stats: Option<MessageStats>,
    pub error: Option<ErrorInfo>,
}

impl NewMessage {
    pub fn new(parent_id: Option<&str>, role: Role, content: impl Into<String>) -> Self {
        NewMessage {
            parent_id: parent_id.map(str::to_string),
            role,
            content: content.into(),
            model_id: None,
            stats: None,
            error: None,
        }
    }
}

/// Fields to change; `None` leaves a field as it is (`Some(None)` clears stats or error).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageUpdate {
    pub content: Option<String>,
    pub stats: Option<Option<MessageStats>>,
    pub error: Option<Option<ErrorInfo>>,
}

struct MessageRow {
    id: String,
    conversation_id: String,
    parent_id: Option<String>,
    role: String,
    content: String,
    created_at: i64,
    model_id: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    cached_tokens: Option<i64>,
    ttft_ms: Option<i64>,
    tokens_per_s: Option<f64>,
    finish_reason: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    error_details: Option<String>,
}

macro_rules! select_messages {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            MessageRow,
            "SELECT id, conversation_id, parent_id, role, content, created_at, model_id, \
             prompt_tokens, completion_tokens, cached_tokens, ttft_ms, tokens_per_s, \
             finish_reason, error_code, error_message, error_details FROM messages "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<MessageRow> for Message {
    type Error = CatalogError;

    fn try_from(r: MessageRow) -> Result<Message> {
        let stats = match r.finish_reason {
            None => None,
            Some(reason) => Some(MessageStats {
                prompt_tokens: r.prompt_tokens.unwrap_or(0),
                completion_tokens: r.completion_tokens.unwrap_or(0),
                cached_tokens: r.cached_tokens.unwrap_or(0),
                ttft_ms: r.ttft_ms.unwrap_or(0),
                tokens_per_s: r.tokens_per_s.unwrap_or(0.0),
                finish_reason: FinishReason::parse(&reason)?,
            }),
        };
        Ok(Message {
            role: Role::parse(&r.role)?,
            error: ErrorInfo::from_columns(r.error_code, r.error_message, r.error_details)?,
            stats,
            id: r.id,
            conversation_id: r.conversation_id,
            parent_id: r.parent_id,
            content: r.content,
            created_at: r.created_at,
            model_id: r.model_id,
        })
    }
}

/// Stats as their nullable columns.
struct StatsColumns {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    cached_tokens: Option<i64>,
    ttft_ms: Option<i64>,
    tokens_per_s: Option<f64>,
    finish_reason: Option<&'static str>,
}

impl StatsColumns {
    fn of(stats: Option<&MessageStats>) -> Result<Self> {
        if let Some(s) = stats {
            let counts = [
                s.prompt_tokens,
                s.completion_tokens,
                s.cached_tokens,
                s.ttft_ms,
            ];
            if counts.iter().any(|v| *v < 0)
                || !(s.tokens_per_s.is_finite() && s.tokens_per_s >= 0.0)
            {
                return Err(CatalogError::invalid(
                    "message stats",
                    "negative or non-finite value",
                ));
            }
        }
        Ok(StatsColumns {
            prompt_tokens: stats.map(|s| s.prompt_tokens),
            completion_tokens: stats.map(|s| s.completion_tokens),
            cached_tokens: stats.map(|s| s.cached_tokens),
            ttft_ms: stats.map(|s| s.ttft_ms),
            tokens_per_s: stats.map(|s| s.tokens_per_s),
            finish_reason: stats.map(|s| s.finish_reason.as_str()),
        })
    }
}

impl Catalog {
    /// Adds a message to conversation `conversation_id` (its parent, if any, must be a message of
    /// the same conversation) and makes it the conversation's current leaf, in one transaction.
    pub async fn add_message(&self, conversation_id: &str, new: &NewMessage) -> Result<Message> {
        let s = StatsColumns::of(new.stats.as_ref())?;
        let (code, message, details) = ErrorInfo::to_columns(new.error.as_ref())?;
        let id = new_id("msg_")?;
        let role = new.role.as_str();
        let now = self.now();
        let mut tx = self.write_tx().await?;
        ensure_exists(&mut tx, conversation_id).await?;
        if let Some(parent) = &new.parent_id {
            ensure_message_of(&mut tx, conversation_id, parent, "parent_id").await?;
        }
        sqlx::query!(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, model_id, \
             created_at, prompt_tokens, completion_tokens, cached_tokens, ttft_ms, tokens_per_s, \
             finish_reason, error_code, error_message, error_details) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            id,
            conversation_id,
            new.parent_id,
            role,
            new.content,
            new.model_id,
            now,
            s.prompt_tokens,
            s.completion_tokens,
            s.cached_tokens,
            s.ttft_ms,
            s.tokens_per_s,
            s.finish_reason,
            code,
            message,
            details
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_constraint("message", e))?;
        sqlx::query!(
            "UPDATE conversations SET current_leaf_id = ?1, updated_at = ?2 WHERE id = ?3",
            id,
            now,
            conversation_id
        )
        .execute(&mut *tx)
        .await?;
        let added = get_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Changes a message's content, stats or error (the end of a streamed reply, or a partial save).
    pub async fn update_message(&self, id: &str, update: &MessageUpdate) -> Result<Message> {
        let set_stats = update.stats.is_some();
        let s = StatsColumns::of(update.stats.as_ref().and_then(Option::as_ref))?;
        let set_error = update.error.is_some();
        let (code, message, details) =
            ErrorInfo::to_columns(update.error.as_ref().and_then(Option::as_ref))?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!(
            "UPDATE messages SET content = COALESCE(?1, content), \
             prompt_tokens = CASE WHEN ?2 THEN ?3 ELSE prompt_tokens END, \
             completion_tokens = CASE WHEN ?2 THEN ?4 ELSE completion_tokens END, \
             cached_tokens = CASE WHEN ?2 THEN ?5 ELSE cached_tokens END, \
             ttft_ms = CASE WHEN ?2 THEN ?6 ELSE ttft_ms END, \
             tokens_per_s = CASE WHEN ?2 THEN ?7 ELSE tokens_per_s END, \
             finish_reason = CASE WHEN ?2 THEN ?8 ELSE finish_reason END, \
             error_code = CASE WHEN ?9 THEN ?10 ELSE error_code END, \
             error_message = CASE WHEN ?9 THEN ?11 ELSE error_message END, \
             error_details = CASE WHEN ?9 THEN ?12 ELSE error_details END \
             WHERE id = ?13",
            update.content,
            set_stats,
            s.prompt_tokens,
            s.completion_tokens,
            s.cached_tokens,
            s.ttft_ms,
            s.tokens_per_s,
            s.finish_reason,
            set_error,
            code,
            message,
            details,
            id
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("message", id));
        }
        let updated = get_in(&mut tx, id).await?;
        bump(&mut tx, &updated.conversation_id, now).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn get_message(&self, id: &str) -> Result<Message> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, id).await
    }

    /// The whole tree of a conversation, in the order its messages were written.
    pub async fn list_messages(&self, conversation_id: &str) -> Result<Vec<Message>> {
        let mut conn = self.pool.acquire().await?;
        ensure_exists(&mut conn, conversation_id).await?;
        let rows = select_messages!(
            "WHERE conversation_id = ?1 ORDER BY created_at, seq",
            conversation_id
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(Message::try_from).collect()
    }

    /// The children of a message: the alternatives at the next turn, oldest first.
    pub async fn children(&self, message_id: &str) -> Result<Vec<Message>> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, message_id).await?;
        let rows = select_messages!("WHERE parent_id = ?1 ORDER BY created_at, seq", message_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter().map(Message::try_from).collect()
    }

    /// The branch that ends at `leaf_id`, from its root down to `leaf_id`.
    pub async fn path_to_root(&self, leaf_id: &str) -> Result<Vec<Message>> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, leaf_id).await?;
        // Ordering by seq is ordering from the root down (invariant 3 in `conversations`).
        let rows = select_messages!(
            "WHERE seq IN (WITH RECURSIVE up(seq, parent_id) AS ( \
                 SELECT seq, parent_id FROM messages WHERE id = ?1 \
                 UNION ALL \
                 SELECT m.seq, m.parent_id FROM messages m JOIN up ON m.id = up.parent_id) \
             SELECT seq FROM up) ORDER BY seq",
            leaf_id
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(Message::try_from).collect()
    }
}

async fn get_in(conn: &mut SqliteConnection, id: &str) -> Result<Message> {
    let row = select_messages!("WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| CatalogError::not_found("message", id))?
        .try_into()
}
