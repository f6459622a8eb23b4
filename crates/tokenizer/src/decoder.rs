//! Streaming detokenization. A character can span several tokens (byte-level BPE pieces of an
//! emoji, SentencePiece byte-fallback tokens like `<0xE2>`), and decoders such as SentencePiece's
//! leading-space strip depend on context. So the decoder re-decodes a short window of recent ids
//! with the real tokenizer and emits only the text that is new and complete: output never ends in
//! a half character (shown as U+FFFD by the tokenizer) until `flush` at the end of the stream.

use std::sync::Arc;

use crate::error::TokenizerError;

pub struct IncrementalDecoder {
    inner: Arc<tokenizers::Tokenizer>,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the context window: ids before it are never decoded again.
    prefix_offset: usize,
    /// End of the ids whose text has already been emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    pub(crate) fn new(inner: Arc<tokenizers::Tokenizer>, skip_special_tokens: bool) -> Self {
        Self {
            inner,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, self.skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                detail: e.to_string(),
            })
    }

    /// Adds one generated id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(&self.ids[self.prefix_offset..])?;
        // A trailing U+FFFD means the last bytes do not form a character yet: wait for more.
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let new_text = match full.get(prefix.len()..) {
            Some(t) if full.starts_with(&prefix) => t.to_string(),
            // The decoder rewrote earlier text (rare cleanup rules); emit what follows the
            // common prefix so nothing is lost or repeated.
            _ => {
                let common = common_prefix_len(&prefix, &full);
                full[common..].to_string()
            }
        };
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(Some(new_text))
    }

    /// Emits whatever is still held back (e.g. an incomplete character at the end of the stream).
    pub fn flush(&mut self) -> Result<Option<String>, TokenizerError> {
        if self.read_offset >= self.ids.len() {
            return Ok(None);
        }
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        let common = common_prefix_len(&prefix, &full);
        let rest = &full[common..];
        Ok((!rest.is_empty()).then(|| rest.to_string()))
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            return i;
        }
        n = i + ca.len_utf8();
    }
    n
}
