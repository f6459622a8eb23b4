use super::*;
use crate::gguf::{parse_metadata, GgufValue};
use crate::testutil::GgufBuilder;

/// GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves, the rest are shifted
/// past U+0100 in order.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap_or('?')
            }
        })
        .collect()
}

/// A byte-level vocabulary with every byte and no merges, plus one control token.
fn byte_level_gguf() -> gguf::GgufMetadata {
    let alphabet = byte_alphabet();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    let mut types = vec![GgufValue::I32(3)];
    types.extend((0..256).map(|_| GgufValue::I32(1)));
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let bytes = GgufBuilder::new()
        .kv("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", GgufValue::String("smollm".into()))
        .strs("tokenizer.ggml.tokens", &token_refs)
        .kv("tokenizer.ggml.token_type", GgufValue::Array(types))
        .kv("tokenizer.ggml.merges", GgufValue::Array(vec![]))
        .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(0))
        .kv(
            "tokenizer.chat_template",
            GgufValue::String(
                "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
                    .into(),
            ),
        )
        .bytes();
    parse_metadata(bytes.as_slice(), bytes.len() as u64).expect("valid synthetic gguf")
}

/// A SentencePiece vocabulary: unk, bos, eos, 256 byte tokens, then a few pieces.
fn spm_gguf() -> gguf::GgufMetadata {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![GgufValue::I32(2), GgufValue::I32(3), GgufValue::I32(3)];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(GgufValue::I32(6));
    }
    for (t, _) in [("▁", 0), ("h", 0), ("i", 0), ("hi", 0), ("▁hi", 0)] {
        tokens.push(t.into());
        types.push(GgufValue::I32(1));
    }
    let scores: Vec<GgufValue> = (0..tokens.len())
        .map(|i| GgufValue::F32(-(i as f32)))
        .collect();
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let bytes = GgufBuilder::new()
        .kv("tokenizer.ggml.model", GgufValue::String("llama".into()))
        .strs("tokenizer.ggml.tokens", &token_refs)
        .kv("tokenizer.ggml.scores", GgufValue::Array(scores))
        .kv("tokenizer.ggml.token_type", GgufValue::Array(types))
        .kv("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", GgufValue::U32(0))
        .bytes();
    parse_metadata(bytes.as_slice(), bytes.len() as u64).expect("valid synthetic gguf")
}

/// Pushes ids one at a time; returns each push's output and the concatenated stream.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, String) {
    let mut dec = tok.incremental_decoder(false);
    let mut outs = Vec::new();
    let mut all = String::new();
    for &id in ids {
        let out = dec.push(id).expect("push");
        if let Some(s) = &out {
            assert!(!s.contains('\u{FFFD}'), "emitted a broken character: {s:?}");
            all.push_str(s);
        }
        outs.push(out);
    }
    if let Some(rest) = dec.flush().expect("flush") {
        all.push_str(&rest);
    }
    (outs, all)
}

#[test]
fn incremental_decoder_holds_back_split_emoji_and_cjk_byte_level() {
    let tok = Tokenizer::from_gguf(&byte_level_gguf()).unwrap();
    let text = "a😀中b";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(
        ids.len(),
        1 + 4 + 3 + 1,
        "one token per byte without merges"
    );
    let (outs, all) = stream(&tok, &ids);
    assert_eq!(all, text);
    assert_eq!(outs[0].as_deref(), Some("a"));
    assert_eq!(outs[1..4], [None, None, None]);
    assert_eq!(outs[4].as_deref(), Some("😀"));
    assert_eq!(outs[5..7], [None, None]);
    assert_eq!(outs[7].as_deref(), Some("中"));
    assert_eq!(outs[8].as_deref(), Some("b"));
}

#[test]
fn incremental_decoder_handles_spm_byte_fallback() {
    let tok = Tokenizer::from_gguf(&spm_gguf()).unwrap();
    let ids = tok.encode("hi 😀", false).unwrap();
    let byte = |b: u8| tok.token_to_id(&format!("<0x{b:02X}>")).unwrap();
    let expected_tail: Vec<u32> = "😀".bytes().map(byte).collect();
    assert_eq!(ids[0], tok.token_to_id("▁hi").unwrap());
    assert_eq!(&ids[ids.len() - 4..], expected_tail.as_slice());
    let (outs, all) = stream(&tok, &ids);
    assert_eq!(all, "hi 😀");
    assert_eq!(
        outs[0].as_deref(),
        Some("hi"),
        "the leading space prefix is stripped"
    );
    let n = outs.len();
    assert_eq!(outs[n - 4..n - 1], [None, None, None]);
    assert_eq!(outs[n - 1].as_deref(), Some("😀"));
}

#[test]
fn flush_emits_an_unfinished_character() {
    let tok = Tokenizer::from_gguf(&byte_level_gguf()).unwrap();
    let ids = tok.encode("😀", false).unwrap();
    let mut dec = tok.incremental_decoder(false);
    for &id in &ids[..2] {
        assert_eq!(dec.push(id).unwrap(), None);
    }
    assert_eq!(dec.flush().unwrap().as_deref(), Some("\u{FFFD}"));
    assert_eq!(dec.flush().unwrap(), None);
}

#[test]
fn spm_adds_bos_by_default_and_decodes() {
    let tok = Tokenizer::from_gguf(&spm_gguf()).unwrap();
    let ids = tok.encode("hi", true).unwrap();
    assert_eq!(ids, vec![1, tok.token_to_id("▁hi").unwrap()]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hi");
    assert_eq!(tok.bos_token(), Some("<s>"));
    assert_eq!(tok.eos_token_ids(), &[2]);
}

#[test]
fn control_tokens_are_matched_whole_and_template_comes_from_gguf() {
    let tok = Tokenizer::from_gguf(&byte_level_gguf()).unwrap();
    assert_eq!(
        tok.encode("x<|endoftext|>", false).unwrap().last(),
        Some(&0)
    );
    assert_eq!(tok.decode(&[0], true).unwrap(), "");
    let out = tok
        .apply_chat_template(&[ChatMessage::user("hey")], &ChatOptions::default())
        .unwrap();
    assert_eq!(out, "<user>hey<|endoftext|>");
}

#[test]
fn unsupported_model_is_typed() {
    let bytes = GgufBuilder::new()
        .kv("tokenizer.ggml.model", GgufValue::String("bert".into()))
        .strs("tokenizer.ggml.tokens", &["a"])
        .bytes();
    let meta = parse_metadata(bytes.as_slice(), bytes.len() as u64).unwrap();
    let err = Tokenizer::from_gguf(&meta).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnsupportedTokenizerModel { ref model, .. } if model == "bert"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_json_names_the_path() {
    let dir = std::env::temp_dir().join(format!("cortex-tok-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Tokenizer::from_dir(&dir).unwrap_err();
    match &err {
        TokenizerError::MissingFile { path } => assert_eq!(path, &dir.join("tokenizer.json")),
        other => panic!("expected MissingFile, got {other:?}"),
    }
    assert!(err.to_string().contains("tokenizer.json"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn save_dir_round_trips() {
    let tok = Tokenizer::from_gguf(&spm_gguf()).unwrap();
    let dir = std::env::temp_dir().join(format!("cortex-tok-save-{}", std::process::id()));
    tok.save_dir(&dir).unwrap();
    let back = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(
        back.encode("hi 😀 h", true).unwrap(),
        tok.encode("hi 😀 h", true).unwrap()
    );
    assert_eq!(back.bos_token(), Some("<s>"));
    assert_eq!(back.eos_token(), Some("</s>"));
    assert_eq!(back.eos_token_ids(), &[2]);
    assert!(!back.has_chat_template());
    assert!(matches!(
        back.apply_chat_template(&[], &ChatOptions::default()),
        Err(TokenizerError::NoChatTemplate)
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenizer_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync>() {}
    check::<Tokenizer>();
}

/// A word-level tokenizer whose Split pre-tokenizer uses `pattern` (as a repo's tokenizer.json
/// may), loaded from a scratch folder the way a downloaded model's is.
fn split_tokenizer(name: &str, pattern: &str) -> Tokenizer {
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Split", "pattern": {"Regex": pattern},
            "behavior": "Isolated", "invert": false
        },
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2}, "unk_token": "[UNK]"}
    });
    let dir = std::env::temp_dir().join(format!("cortex-tok-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    tok
}

#[test]
fn catastrophic_pretokenizer_regex_is_a_typed_error_and_the_tokenizer_survives() {
    // (a|aa)+$ against a run of a's that ends in something else backtracks through every way
    // of splitting the run (Fibonacci-many): without a budget this never finishes.
    let tok = split_tokenizer("redos", "(a|aa)+$");
    let hostile = format!("{}!", "a".repeat(64));
    match tok.encode(&hostile, false) {
        Err(TokenizerError::Encode { detail }) => {
            assert!(detail.contains("backtracking budget"), "{detail}")
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    // The same tokenizer still encodes ordinary text afterwards.
    assert_eq!(tok.encode("aa", false).unwrap(), vec![0]);
    assert_eq!(tok.encode("a", false).unwrap(), vec![1]);
}

#[test]
fn text_over_the_encode_limit_is_refused_before_tokenizing() {
    let tok = split_tokenizer("long", "a");
    let long = "a".repeat(MAX_ENCODE_BYTES + 1);
    match tok.encode(&long, false) {
        Err(TokenizerError::Encode { detail }) => assert!(detail.contains("MiB"), "{detail}"),
        other => panic!("expected an encode error, got {:?}", other.map(|v| v.len())),
    }
}
