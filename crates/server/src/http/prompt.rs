//! Request messages or prompts -> token ids, with the model's own chat template.
use super::error::ApiError;
use super::openai::{Content, InMessage, Prompt};
use cortex_tokenizer::{ChatMessage, ChatOptions, Tokenizer};

const ROLES: [&str; 5] = ["system", "user", "assistant", "tool", "developer"];

fn text_of(i: usize, content: Option<Content>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => out.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid_param(
                            &format!("messages[{i}].content"),
                            format!("content parts of type {kind:?} are not supported (text only)"),
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The chat template applied to `messages` (with the assistant turn opened), tokenized.
pub fn chat_prompt(tok: &Tokenizer, messages: Vec<InMessage>) -> Result<Vec<u32>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must not be empty",
        ));
    }
    if !tok.has_chat_template() {
        return Err(ApiError::bad_request(
            "this model has no chat template; use /v1/completions with a prompt",
        )
        .with_param("model"));
    }
    let mut chat = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::invalid_param(
                &format!("messages[{i}].role"),
                format!(
                    "unknown role {:?} (expected one of {})",
                    m.role,
                    ROLES.join(", ")
                ),
            ));
        }
        // "developer" is OpenAI's newer name for the system role; templates know "system"
        let role = if m.role == "developer" {
            "system"
        } else {
            m.role.as_str()
        };
        let mut msg = ChatMessage::new(role, text_of(i, m.content)?);
        if let Some(name) = m.name {
            msg.extra.insert("name".into(), name.into());
        }
        chat.push(msg);
    }
    let opts = ChatOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let text = tok
        .apply_chat_template(&chat, &opts)
        .map_err(|e| ApiError::invalid_param("messages", format!("chat template: {e}")))?;
    tok.encode(&text, false)
        .map_err(|e| ApiError::invalid_param("messages", format!("tokenizer: {e}")))
}

/// A completion prompt: one string (tokenized with the model's BOS rules) or token ids.
pub fn completion_prompt(tok: &Tokenizer, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    let one = |what: &str, n: usize| {
        ApiError::invalid_param(
            "prompt",
            format!("exactly one prompt is supported, got {n} {what}"),
        )
    };
    let ids = match prompt {
        Prompt::Text(s) => encode(tok, &s)?,
        Prompt::Texts(v) if v.len() == 1 => encode(tok, &v[0])?,
        Prompt::Texts(v) => return Err(one("strings", v.len())),
        Prompt::Tokens(ids) => ids,
        Prompt::TokenLists(mut v) if v.len() == 1 => v.remove(0),
        Prompt::TokenLists(v) => return Err(one("token lists", v.len())),
    };
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            "prompt",
            "prompt must not be empty",
        ));
    }
    Ok(ids)
}

fn encode(tok: &Tokenizer, s: &str) -> Result<Vec<u32>, ApiError> {
    tok.encode(s, true)
        .map_err(|e| ApiError::invalid_param("prompt", format!("tokenizer: {e}")))
}
