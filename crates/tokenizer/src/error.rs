//! Error types of the crate: one enum for the tokenizer and chat templates, one for the GGUF
//! reader. Every variant carries the data a caller needs to show a useful message (the file, the
//! key, the template error kind); nothing here formats user-facing prose beyond `Display`.

use std::path::PathBuf;

/// What went wrong while compiling or rendering a chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// The template source does not parse.
    Syntax,
    /// Rendering failed (undefined method, bad operand, recursion limit, ...).
    Render,
    /// The template hit a resource limit: fuel (an endless or absurdly long loop), the recursion
    /// limit, or an over-large `range()`.
    LimitExceeded,
    /// The template itself called `raise_exception(msg)`; the message is the template's.
    Raised,
}

impl std::fmt::Display for TemplateErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Syntax => "syntax error",
            Self::Render => "render error",
            Self::LimitExceeded => "limit exceeded (fuel, recursion or loop size)",
            Self::Raised => "raised by template",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("missing file {path}")]
    MissingFile { path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },

    #[error("chat template {kind}: {message}")]
    Template {
        kind: TemplateErrorKind,
        message: String,
    },

    #[error("this tokenizer has no chat template")]
    NoChatTemplate,

    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error("unsupported tokenizer model {model:?} (supported: {supported})")]
    UnsupportedTokenizerModel {
        model: String,
        supported: &'static str,
    },

    #[error("unsupported pre-tokenizer {pre:?} (supported: {supported})")]
    UnsupportedPreTokenizer {
        pre: String,
        supported: &'static str,
    },

    #[error("invalid GGUF vocabulary: {detail}")]
    InvalidVocab { detail: String },

    #[error("encode failed: {detail}")]
    Encode { detail: String },

    #[error("decode failed: {detail}")]
    Decode { detail: String },

    #[error("cannot write {path}: {detail}")]
    Save { path: PathBuf, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("not a GGUF file (magic {found:02x?})")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },

    #[error("GGUF file truncated at byte {offset} while reading {what}")]
    Truncated { offset: u64, what: &'static str },

    #[error("GGUF {what} count {count} is impossible for a file of {file_len} bytes")]
    AbsurdCount {
        what: &'static str,
        count: u64,
        file_len: u64,
    },

    #[error("GGUF metadata would need more than {limit} bytes of memory (at a {what})")]
    TooLarge { what: &'static str, limit: u64 },

    #[error("unknown GGUF value type {value_type} for key {key:?}")]
    UnknownValueType { key: String, value_type: u32 },

    #[error("GGUF string at byte {offset} is not UTF-8")]
    InvalidUtf8 { offset: u64 },

    #[error("GGUF key {key:?} missing")]
    MissingKey { key: String },

    #[error("GGUF key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("GGUF tensor {name:?}: {detail}")]
    BadTensor { name: String, detail: String },
}
