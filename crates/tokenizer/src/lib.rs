//! `cortex-tokenizer`: text <-> token ids and chat prompts for CortexStream's engine.
//!
//! Owns: loading a Hugging Face tokenizer folder or a GGUF file's embedded vocabulary into one
//! [`Tokenizer`], encoding/decoding (including streaming decode), rendering chat templates as
//! transformers does, writing a folder transformers and mlx_lm can load, and reading GGUF
//! metadata. It knows nothing of MLX, models or the network.

mod decoder;
pub mod error;
mod files;
pub mod gguf;
mod gguf_vocab;
mod pyfmt;
mod template;
#[cfg(test)]
mod testutil;

use std::path::Path;
use std::sync::Arc;

pub use decoder::IncrementalDecoder;
pub use error::{GgufError, TemplateErrorKind, TokenizerError};
pub use template::{
    ChatMessage, ChatOptions, ChatTemplate, Rendered, SpecialTokens, FUEL as TEMPLATE_FUEL,
    MAX_CONCURRENT_RENDERS, MAX_RENDER_BYTES,
};

/// Longest text [`Tokenizer::encode`] takes in one call: as large as the biggest prompt a chat
/// template may render, far beyond any model's context, and it bounds the work of one call.
pub const MAX_ENCODE_BYTES: usize = template::MAX_RENDER_BYTES;

/// Backtracking steps one regex search may take (Oniguruma counts them; its default is
/// unlimited per search and 10M per match attempt). Ordinary tokenizer patterns need about one
/// step per byte, so 100M covers [`MAX_ENCODE_BYTES`] of any text; an exponential pattern hits
/// the per-match limit within milliseconds and fails the encode instead of running for hours.
const REGEX_RETRY_LIMIT_IN_SEARCH: std::os::raw::c_ulong = 100_000_000;
const REGEX_RETRY_LIMIT_IN_MATCH: std::os::raw::c_ulong = 10_000_000;

/// Sets Oniguruma's process-wide backtracking limits once (every regex search after this, in
/// any tokenizer, starts from them).
fn limit_regex_work() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain setters of two global integers, called once before any search of ours.
        unsafe {
            onig_sys::onig_set_retry_limit_in_search(REGEX_RETRY_LIMIT_IN_SEARCH);
            onig_sys::onig_set_retry_limit_in_match(REGEX_RETRY_LIMIT_IN_MATCH);
        }
    });
}

/// A tokenizer with its special tokens and chat template. Cloning is cheap (shared state).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    special: SpecialTokens,
    eos_ids: Vec<u32>,
    template: Option<ChatTemplate>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer folder (`tokenizer.json` required; `tokenizer_config.json`,
    /// `special_tokens_map.json`, `chat_template.jinja`/`.json` and `generation_config.json` used
    /// when present).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer.json");
        let text = files::read_text(&path)?;
        let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| {
            TokenizerError::Parse {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
        let cfg = files::read_dir_config(dir)?;
        let special = SpecialTokens {
            bos: cfg.bos,
            eos: cfg.eos,
            unk: cfg.unk,
            pad: cfg.pad,
        };
        let mut eos_ids: Vec<u32> = special
            .eos
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        for id in cfg.generation_eos_ids {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let template = cfg
            .chat_template
            .as_deref()
            .map(ChatTemplate::compile)
            .transpose()?;
        Ok(Self {
            inner: Arc::new(inner),
            special,
            eos_ids,
            template,
            add_bos: cfg.add_bos,
            add_eos: cfg.add_eos,
        })
    }

    /// Rebuilds the tokenizer stored in a GGUF file's metadata (see `gguf_vocab` for coverage).
    pub fn from_gguf(meta: &gguf::GgufMetadata) -> Result<Self, TokenizerError> {
        let parts = gguf_vocab::build(meta)?;
        let inner = tokenizers::Tokenizer::from_bytes(parts.tokenizer_json.to_string().as_bytes())
            .map_err(|e| TokenizerError::InvalidVocab {
                detail: e.to_string(),
            })?;
        let template = parts
            .chat_template
            .as_deref()
            .map(ChatTemplate::compile)
            .transpose()?;
        Ok(Self {
            inner: Arc::new(inner),
            special: SpecialTokens {
                bos: parts.bos,
                eos: parts.eos,
                unk: parts.unk,
                pad: parts.pad,
            },
            eos_ids: parts.eos_id.into_iter().collect(),
            template,
            add_bos: Some(parts.add_bos),
            add_eos: Some(parts.add_eos),
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens, chat template), and
    /// `generation_config.json` with the eos ids unless the folder already has one.
    pub fn save_dir(&self, dir: &Path) -> Result<(), TokenizerError> {
        let tokenizer_json = self
            .inner
            .to_string(false)
            .map_err(|e| TokenizerError::Save {
                path: dir.join("tokenizer.json"),
                detail: e.to_string(),
            })?;
        let spec = files::SaveSpec {
            tokenizer_json,
            bos: self.special.bos.as_deref(),
            eos: self.special.eos.as_deref(),
            unk: self.special.unk.as_deref(),
            pad: self.special.pad.as_deref(),
            chat_template: self.template.as_ref().map(|t| t.source()),
            add_bos: self.add_bos,
            add_eos: self.add_eos,
            eos_ids: &self.eos_ids,
        };
        files::save_dir(dir, &spec)
    }

    /// Encodes `text`. A tokenizer.json from a repo is untrusted: its pre-tokenizer regexes run
    /// with a backtracking budget (see [`limit_regex_work`]) and the text is at most
    /// [`MAX_ENCODE_BYTES`], so a hostile pattern or input is a typed error, not a hung or
    /// crashed worker.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        if text.len() > MAX_ENCODE_BYTES {
            return Err(TokenizerError::Encode {
                detail: format!(
                    "the text is {} bytes; at most {} MiB can be tokenized at once",
                    text.len(),
                    MAX_ENCODE_BYTES >> 20
                ),
            });
        }
        limit_regex_work();
        let inner = &self.inner;
        // Oniguruma reports a pattern over its budget as an error that the `onig` crate turns
        // into a panic; it unwinds out of this call only, leaving the tokenizer untouched.
        let run = std::panic::AssertUnwindSafe(|| inner.encode(text, add_special_tokens));
        let enc = std::panic::catch_unwind(run)
            .map_err(|_| TokenizerError::Encode {
                detail: "the tokenizer's pre-tokenizer pattern exceeded its backtracking budget"
                    .into(),
            })?
            .map_err(|e| TokenizerError::Encode {
                detail: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                detail: e.to_string(),
            })
    }

    /// Ids that end generation: the tokenizer's eos token, then generation_config's eos ids.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.special.bos.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos.as_deref()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.inner.token_to_id(t)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.template.as_ref().map(|t| t.source())
    }

    /// Renders the conversation as `transformers`' `apply_chat_template(..., tokenize=False)`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        opts: &ChatOptions,
    ) -> Result<String, TokenizerError> {
        let template = self
            .template
            .as_ref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        template.render(messages, opts, &self.special)
    }

    pub fn incremental_decoder(&self, skip_special_tokens: bool) -> IncrementalDecoder {
        IncrementalDecoder::new(Arc::clone(&self.inner), skip_special_tokens)
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
