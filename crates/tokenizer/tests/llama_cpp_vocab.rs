//! llama.cpp's own tokenizer goldens: `vendor/llama.cpp/models/ggml-vocab-*.gguf` with `.inp`
//! (cases separated by "\n__ggml_vocab_test__\n") and `.out` (one line of ids per case), from the
//! llama-cpp-python sdist that scripts/fetch-test-data.sh unpacks. Each supported vocabulary is
//! rebuilt with `Tokenizer::from_gguf` and must reproduce every case (add_special = false).
//!
//! Not covered, with the reason:
//! - bert-bge, nomic-bert-moe: WordPiece (`bert`) vocabularies; the engine has no BERT models.
//! - command-r, deepseek-coder, deepseek-llm, falcon: multi-regex pre-tokenizers not built yet
//!   (from_gguf refuses them with UnsupportedPreTokenizer; asserted below).
//! - aquila, baichuan, gpt-neox: no .inp/.out cases shipped.

mod common;

use common::*;
use cortex_tokenizer::{gguf, Tokenizer, TokenizerError};

const MODELS: &str = "tests/data/llama-cpp-python/vendor/llama.cpp/models";

fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = data_path(MODELS).join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect("inp");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect("out");
    let inputs: Vec<&str> = inp
        .strip_suffix("\n__ggml_vocab_test__\n")
        .unwrap_or(&inp)
        .split("\n__ggml_vocab_test__\n")
        .collect();
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: inp/out case counts differ"
    );
    inputs
        .into_iter()
        .map(str::to_string)
        .zip(outputs)
        .collect()
}

fn check(name: &str) {
    let path = data_path(MODELS).join(format!("ggml-vocab-{name}.gguf"));
    let meta = gguf::read_metadata(&path).expect("gguf metadata");
    let tok = Tokenizer::from_gguf(&meta).unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = cases(name);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let ours = tok.encode(text, false).expect("encode");
            (ours != *expected).then(|| format!("{text:?}: ours {ours:?} expected {expected:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn gpt_2() {
    check("gpt-2");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn refact() {
    check("refact");
}

#[test]
fn mpt() {
    check("mpt");
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn phi_3() {
    check("phi-3");
}

#[test]
fn unsupported_vocabularies_are_refused_with_a_typed_error() {
    for name in ["command-r", "deepseek-coder", "deepseek-llm", "falcon"] {
        let meta = gguf::read_metadata(&data_path(MODELS).join(format!("ggml-vocab-{name}.gguf")))
            .expect("gguf");
        match Tokenizer::from_gguf(&meta) {
            Err(TokenizerError::UnsupportedPreTokenizer { .. }) => {}
            other => panic!(
                "{name}: expected UnsupportedPreTokenizer, got {:?}",
                other.map(|_| "a tokenizer")
            ),
        }
    }
    let bert =
        gguf::read_metadata(&data_path(MODELS).join("ggml-vocab-bert-bge.gguf")).expect("gguf");
    assert!(matches!(
        Tokenizer::from_gguf(&bert),
        Err(TokenizerError::UnsupportedTokenizerModel { .. })
    ));
}
