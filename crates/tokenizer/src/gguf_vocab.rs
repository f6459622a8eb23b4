//! Rebuilds a Hugging Face `tokenizer.json` from the vocabulary stored in GGUF metadata, so a
//! GGUF model tokenizes exactly like the original Hugging Face tokenizer it was converted from.
//! Supports `tokenizer.ggml.model` "gpt2" (byte-level BPE, with the pre-tokenizer named by
//! `tokenizer.ggml.pre`) and "llama" (SentencePiece-style BPE with byte fallback). Pre-tokenizer
//! splits are the original Hugging Face ones (what the model was trained with), written here
//! as a small table; anything else is refused with a typed error rather than guessed.

use serde_json::{json, Value};

use crate::error::TokenizerError;
use crate::gguf::GgufMetadata;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

const SUPPORTED_MODELS: &str = "gpt2, llama";
const SUPPORTED_PRE: &str = "default, gpt-2, phi-2, smollm, starcoder, refact, codeshell, llama3, llama-v3, \
                             llama-bpe, falcon3, dbrx, smaug-bpe, qwen2, deepseek-r1-qwen, megrez, mpt";

/// Llama 3's split: contractions, letters with one leading non-letter, 1-3 digit groups.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: as Llama 3's but every digit stands alone.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What `from_gguf` learns besides the `tokenizer.json` document.
pub(crate) struct GgufTokenizerParts {
    pub tokenizer_json: Value,
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

pub(crate) fn build(meta: &GgufMetadata) -> Result<GgufTokenizerParts, TokenizerError> {
    let model = meta.get_str("tokenizer.ggml.model")?;
    let tokens = meta.get_str_array("tokenizer.ggml.tokens")?;
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(_) => meta.get_i64_array("tokenizer.ggml.token_type")?,
        None => Vec::new(),
    };
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(invalid(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let token_at = |key: &str| -> Result<Option<(u32, String)>, TokenizerError> {
        match meta.opt_u32(key)? {
            Some(id) => match tokens.get(id as usize) {
                Some(t) => Ok(Some((id, t.to_string()))),
                // Some converters write ids past the vocabulary (e.g. an unused pad id); ignore them.
                None => Ok(None),
            },
            None => Ok(None),
        }
    };
    let bos = token_at("tokenizer.ggml.bos_token_id")?;
    let eos = token_at("tokenizer.ggml.eos_token_id")?;
    let unk = token_at("tokenizer.ggml.unknown_token_id")?;
    let pad = token_at("tokenizer.ggml.padding_token_id")?;

    let (mut doc, default_add_bos) = match model {
        "gpt2" => (byte_level(meta, &tokens)?, false),
        "llama" => (
            sentencepiece(meta, &tokens, unk.as_ref().map(|u| u.1.as_str()))?,
            true,
        ),
        other => {
            return Err(TokenizerError::UnsupportedTokenizerModel {
                model: other.to_string(),
                supported: SUPPORTED_MODELS,
            })
        }
    };
    let pre = meta.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    // llama.cpp (and Meta's tokenizer.json) add BOS for Llama 3 vocabularies unless told otherwise.
    let default_add_bos =
        default_add_bos || matches!(pre, "llama3" | "llama-v3" | "llama-bpe" | "falcon3");
    let add_bos = meta
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(default_add_bos);
    let add_eos = meta
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);

    doc["added_tokens"] = added_tokens(&tokens, &types);
    doc["post_processor"] = post_processor(
        add_bos.then_some(bos.as_ref()).flatten(),
        add_eos.then_some(eos.as_ref()).flatten(),
    );
    Ok(GgufTokenizerParts {
        tokenizer_json: doc,
        bos: bos.map(|b| b.1),
        eos_id: eos.as_ref().map(|e| e.0),
        eos: eos.map(|e| e.1),
        unk: unk.map(|u| u.1),
        pad: pad.map(|p| p.1),
        add_bos,
        add_eos,
        chat_template: meta.opt_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

fn invalid(detail: String) -> TokenizerError {
    TokenizerError::InvalidVocab { detail }
}

fn vocab_map(tokens: &[&str]) -> serde_json::Map<String, Value> {
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        // A duplicated token keeps its first id, as the original vocabulary lookup would.
        vocab.entry(t.to_string()).or_insert_with(|| json!(id));
    }
    vocab
}

fn byte_level(meta: &GgufMetadata, tokens: &[&str]) -> Result<Value, TokenizerError> {
    let merges: Vec<Value> = meta
        .get_str_array("tokenizer.ggml.merges")?
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(invalid(format!("merge {m:?} has no space"))),
        })
        .collect::<Result<_, _>>()?;
    let pre = meta.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    let nfc = json!({"type": "NFC"});
    let (normalizer, pre_tokenizer, ignore_merges) = match pre {
        "default" | "gpt-2" | "phi-2" => (Value::Null, byte_level(true), false),
        "mpt" => (nfc, byte_level(true), false),
        "smollm" | "starcoder" | "refact" | "codeshell" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => {
            (Value::Null, split(LLAMA3_SPLIT), true)
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => (nfc, split(QWEN2_SPLIT), false),
        other => {
            return Err(TokenizerError::UnsupportedPreTokenizer {
                pre: other.to_string(),
                supported: SUPPORTED_PRE,
            })
        }
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab_map(tokens), "merges": merges,
        },
    }))
}

/// SentencePiece BPE: llama.cpp merges the adjacent pair whose joined piece has the highest
/// score. The same ranking, written as an ordered merge list, lets the HF BPE model do it.
fn sentencepiece(
    meta: &GgufMetadata,
    tokens: &[&str],
    unk: Option<&str>,
) -> Result<Value, TokenizerError> {
    let scores = meta.get_f32_array("tokenizer.ggml.scores")?;
    if scores.len() != tokens.len() {
        return Err(invalid(format!(
            "{} scores for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let vocab = vocab_map(tokens);
    let id_of = |s: &str| vocab.get(s).and_then(Value::as_u64);
    let mut merges: Vec<(f32, u64, u64, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(li), Some(ri)) = (id_of(l), id_of(r)) {
                merges.push((scores[id], li, ri, l, r));
            }
        }
    }
    // Highest score first; ties (rare) by the ids of the two halves, for a stable order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<Value> = merges.iter().map(|m| json!([m.3, m.4])).collect();

    let add_space_prefix = meta
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    // SentencePiece always adds the dummy prefix, even before text that starts with a space
    // (" Hello" is "▁▁Hello"); the Metaspace pre-tokenizer skips it there, so this is the
    // normalizer form of the original Llama 2 tokenizer.json.
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

/// Control tokens become special added tokens and user-defined ones plain added tokens, so both
/// are matched whole in text (as llama.cpp and the original tokenizer do) instead of being split.
fn added_tokens(tokens: &[&str], types: &[i64]) -> Value {
    let mut out = Vec::new();
    for (id, (tok, ty)) in tokens.iter().zip(types).enumerate() {
        let special = match *ty {
            TOKEN_CONTROL => true,
            TOKEN_USER_DEFINED => false,
            _ => continue,
        };
        if tok.is_empty() {
            continue;
        }
        out.push(json!({
            "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": special,
        }));
    }
    Value::Array(out)
}

fn post_processor(bos: Option<&(u32, String)>, eos: Option<&(u32, String)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut special_tokens = serde_json::Map::new();
    let special =
        |t: &(u32, String), type_id: u32| json!({"SpecialToken": {"id": t.1, "type_id": type_id}});
    for (tok, seq) in [("A", 0u32), ("B", 1u32)] {
        let list = if tok == "A" { &mut single } else { &mut pair };
        if let Some(b) = bos {
            list.push(special(b, seq));
        }
        list.push(json!({"Sequence": {"id": tok, "type_id": seq}}));
        if let Some(e) = eos {
            list.push(special(e, seq));
        }
    }
    let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
    for t in bos.iter().chain(eos.iter()) {
        special_tokens.insert(
            t.1.clone(),
            json!({"id": t.1, "ids": [t.0], "tokens": [t.1]}),
        );
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens})
}
