//! Conversations: their titles, models and settings, the visible branch of their message tree, and
//! search over them. Messages (the tree itself) are in `messages`.
//!
//! Invariants (held by the schema where SQLite can, by these functions where it cannot; the tests
//! check them after every operation):
//! 1. Every message belongs to exactly one conversation, and deleting the conversation deletes all
//!    of its messages (foreign key, ON DELETE CASCADE).
//! 2. A message's parent is NULL (a root; a conversation may have several, one per edit of its
//!    first message) or a message of the same conversation (composite foreign key on
//!    (conversation_id, parent_id)).
//! 3. `parent_id` never changes after insert and a parent exists before its child, so the tree has
//!    no cycles and a child's `seq` is greater than its parent's: ordering a path by `seq` is
//!    ordering it from the root down.
//! 4. `current_leaf_id` is NULL or a message of the same conversation (checked here with
//!    `Invalid`, and by a deferred composite foreign key as a backstop).
//! 5. Siblings, and all messages of a conversation, are ordered by (created_at, seq): never by id,
//!    which is random.
//! 6. Each message is saved on its own (insert, then updates of its content and stats); nothing
//!    ever rewrites a whole conversation. Adding a message and moving `current_leaf_id` to it is
//!    one transaction, and every write to a conversation or its messages moves `updated_at`.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::db::{new_id, Catalog};
use crate::error::{map_constraint, CatalogError, Result};
use crate::types::{from_json, like_contains, to_json, ModelSettings};

/// A conversation (the app API's `Conversation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub model_id: Option<String>,
    pub system_prompt: Option<String>,
    pub settings: ModelSettings,
    pub current_leaf_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewConversation {
    pub title: String,
    pub model_id: Option<String>,
    pub system_prompt: Option<String>,
    pub settings: ModelSettings,
}

/// Fields to change; `None` leaves a field as it is (`Some(None)` clears a nullable one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub model_id: Option<Option<String>>,
    pub system_prompt: Option<Option<String>>,
    pub settings: Option<ModelSettings>,
    pub current_leaf_id: Option<Option<String>>,
}

struct ConversationRow {
    id: String,
    title: String,
    model_id: Option<String>,
    system_prompt: Option<String>,
    settings: String,
    current_leaf_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

macro_rules! select_conversations {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ConversationRow,
            "SELECT id, title, model_id, system_prompt, settings, current_leaf_id, created_at, \
             updated_at FROM conversations "
                + $tail
            $(, $arg)*
        )
    };
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = CatalogError;

    fn try_from(r: ConversationRow) -> Result<Conversation> {
        Ok(Conversation {
            settings: from_json("conversation settings", &r.settings)?,
            id: r.id,
            title: r.title,
            model_id: r.model_id,
            system_prompt: r.system_prompt,
            current_leaf_id: r.current_leaf_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Queries shorter than this many characters cannot use the trigram index.
const MIN_INDEXED_QUERY_CHARS: usize = 3;

impl Catalog {
    pub async fn create_conversation(&self, new: &NewConversation) -> Result<Conversation> {
        new.settings.validate()?;
        let settings = to_json(&new.settings)?;
        let id = new_id("cnv_")?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query!(
            "INSERT INTO conversations (id, title, model_id, system_prompt, settings, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            id,
            new.title,
            new.model_id,
            new.system_prompt,
            settings,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_constraint("conversation model_id", e))?;
        let conversation = get_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(conversation)
    }

    pub async fn get_conversation(&self, id: &str) -> Result<Conversation> {
        let mut conn = self.pool.acquire().await?;
        get_in(&mut conn, id).await
    }

    /// Conversations, most recently changed first; with a non-blank `query`, only those whose title
    /// or any message contains it (case-insensitive).
    pub async fn list_conversations(&self, query: Option<&str>) -> Result<Vec<Conversation>> {
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        let pattern = query.map(like_contains);
        let rows = match query {
            None => {
                select_conversations!("ORDER BY updated_at DESC, seq DESC")
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(q) if q.chars().count() >= MIN_INDEXED_QUERY_CHARS => {
                // One FTS5 phrase: with trigram tokens it matches q as a substring.
                let phrase = format!("\"{}\"", q.replace('"', "\"\""));
                select_conversations!(
                    "WHERE title LIKE ?1 ESCAPE '\\' OR id IN (SELECT conversation_id FROM messages \
                     WHERE seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?2)) \
                     ORDER BY updated_at DESC, seq DESC",
                    pattern,
                    phrase
                )
                .fetch_all(&self.pool)
                .await?
            }
            Some(_) => {
                select_conversations!(
                "WHERE title LIKE ?1 ESCAPE '\\' OR id IN (SELECT conversation_id FROM messages \
                     WHERE content LIKE ?1 ESCAPE '\\') ORDER BY updated_at DESC, seq DESC",
                pattern
            )
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(Conversation::try_from).collect()
    }

    /// Applies `patch` (a new leaf must be a message of this conversation) and bumps `updated_at`.
    pub async fn update_conversation(
        &self,
        id: &str,
        patch: &ConversationPatch,
    ) -> Result<Conversation> {
        let settings = match &patch.settings {
            Some(s) => {
                s.validate()?;
                Some(to_json(s)?)
            }
            None => None,
        };
        let set_model = patch.model_id.is_some();
        let model_id = patch.model_id.as_ref().and_then(Option::as_deref);
        let set_prompt = patch.system_prompt.is_some();
        let system_prompt = patch.system_prompt.as_ref().and_then(Option::as_deref);
        let set_leaf = patch.current_leaf_id.is_some();
        let leaf = patch.current_leaf_id.as_ref().and_then(Option::as_deref);
        let now = self.now();
        let mut tx = self.write_tx().await?;
        ensure_exists(&mut tx, id).await?;
        if let Some(leaf) = leaf {
            ensure_message_of(&mut tx, id, leaf, "current_leaf_id").await?;
        }
        sqlx::query!(
            "UPDATE conversations SET title = COALESCE(?1, title), \
             model_id = CASE WHEN ?2 THEN ?3 ELSE model_id END, \
             system_prompt = CASE WHEN ?4 THEN ?5 ELSE system_prompt END, \
             settings = COALESCE(?6, settings), \
             current_leaf_id = CASE WHEN ?7 THEN ?8 ELSE current_leaf_id END, \
             updated_at = ?9 WHERE id = ?10",
            patch.title,
            set_model,
            model_id,
            set_prompt,
            system_prompt,
            settings,
            set_leaf,
            leaf,
            now,
            id
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_constraint("conversation model_id", e))?;
        let conversation = get_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(conversation)
    }

    /// Makes `leaf_id` (a message of this conversation, else `Invalid`) the visible leaf.
    pub async fn set_current_leaf(&self, id: &str, leaf_id: &str) -> Result<Conversation> {
        let patch = ConversationPatch {
            current_leaf_id: Some(Some(leaf_id.to_string())),
            ..Default::default()
        };
        self.update_conversation(id, &patch).await
    }

    /// Deletes a conversation and all its messages.
    pub async fn delete_conversation(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query!("DELETE FROM conversations WHERE id = ?1", id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::not_found("conversation", id));
        }
        tx.commit().await
    }
}

async fn get_in(conn: &mut SqliteConnection, id: &str) -> Result<Conversation> {
    let row = select_conversations!("WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| CatalogError::not_found("conversation", id))?
        .try_into()
}

pub(crate) async fn ensure_exists(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    let found = sqlx::query_scalar!("SELECT id FROM conversations WHERE id = ?1", id)
        .fetch_optional(&mut *conn)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| CatalogError::not_found("conversation", id))
}

/// `Invalid` unless `message_id` is a message of conversation `id`.
pub(crate) async fn ensure_message_of(
    conn: &mut SqliteConnection,
    id: &str,
    message_id: &str,
    what: &'static str,
) -> Result<()> {
    let owner = sqlx::query_scalar!(
        "SELECT conversation_id FROM messages WHERE id = ?1",
        message_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match owner {
        Some(owner) if owner == id => Ok(()),
        Some(_) => Err(CatalogError::invalid(
            what,
            format!("message {message_id:?} belongs to another conversation"),
        )),
        None => Err(CatalogError::invalid(
            what,
            format!("no message {message_id:?}"),
        )),
    }
}

/// Moves `updated_at` of conversation `id` (after a write to one of its messages).
pub(crate) async fn bump(conn: &mut SqliteConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE conversations SET updated_at = ?1 WHERE id = ?2",
        now,
        id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
