//! Chat templates rendered byte-for-byte like transformers: the goldens in
//! tests/goldens/templates.json (made by make_goldens.py) hold each template's source, the
//! conversations and transformers' output, or the message of its `raise_exception`.

mod common;

use common::*;
use cortex_tokenizer::{ChatTemplate, TemplateErrorKind, Tokenizer, TokenizerError};
use serde_json::Value;

/// Renders every case of one golden template entry; returns a description of each mismatch.
fn check_cases(
    name: &str,
    template: &ChatTemplate,
    special: &cortex_tokenizer::SpecialTokens,
    cases: &[Value],
) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let label = format!(
            "{name} / {} / agp={}",
            case["conversation"], case["add_generation_prompt"]
        );
        let got = template.render(&messages(&case["messages"]), &options(case), special);
        match (
            got,
            case.get("expected").and_then(Value::as_str),
            case.get("expected_error").and_then(Value::as_str),
        ) {
            (Ok(ours), Some(expected), _) if ours == expected => {}
            (Ok(ours), Some(expected), _) => {
                failures.push(format!("{label}: {}", first_difference(&ours, expected)))
            }
            (
                Err(TokenizerError::Template {
                    kind: TemplateErrorKind::Raised,
                    message,
                }),
                _,
                Some(expected),
            ) if message == expected => {}
            (other, _, _) => failures.push(format!("{label}: unexpected result {other:?}")),
        }
    }
    failures
}

#[test]
fn llama_cpp_and_gguf_templates_match_transformers() {
    let goldens = golden("templates.json");
    let entries = goldens["templates"].as_array().expect("templates");
    let mut failures = Vec::new();
    let mut rendered = 0;
    for entry in entries
        .iter()
        .filter(|e| !e["name"].as_str().unwrap_or("").starts_with("npm:"))
    {
        let name = entry["name"].as_str().unwrap_or("?");
        let template = ChatTemplate::compile(entry["template"].as_str().expect("source"))
            .unwrap_or_else(|e| panic!("{name}: does not compile: {e}"));
        let cases = entry["cases"].as_array().expect("cases");
        rendered += cases.len();
        failures.extend(check_cases(
            name,
            &template,
            &special_tokens(&entry["special_tokens"]),
            cases,
        ));
    }
    assert!(rendered >= 100, "too few golden cases ({rendered})");
    assert!(
        failures.is_empty(),
        "{} of {rendered} renders differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn npm_tokenizer_folders_render_like_transformers() {
    let goldens = golden("templates.json");
    let mut failures = Vec::new();
    let mut seen = 0;
    for entry in goldens["templates"].as_array().expect("templates") {
        let Some(dir) = entry.get("dir").and_then(Value::as_str) else {
            continue;
        };
        seen += 1;
        let name = entry["name"].as_str().unwrap_or("?");
        let tok = Tokenizer::from_dir(&data_path(dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            tok.chat_template(),
            entry["template"].as_str(),
            "{name}: template source differs"
        );
        let special = special_tokens(&entry["special_tokens"]);
        assert_eq!(tok.bos_token(), special.bos.as_deref(), "{name}: bos");
        assert_eq!(tok.eos_token(), special.eos.as_deref(), "{name}: eos");
        for case in entry["cases"].as_array().expect("cases") {
            let label = format!(
                "{name} / {} / agp={}",
                case["conversation"], case["add_generation_prompt"]
            );
            let got = tok.apply_chat_template(&messages(&case["messages"]), &options(case));
            match (got, case["expected"].as_str()) {
                (Ok(ours), Some(expected)) if ours == expected => {}
                (Ok(ours), Some(expected)) => {
                    failures.push(format!("{label}: {}", first_difference(&ours, expected)))
                }
                (other, _) => failures.push(format!("{label}: {other:?}")),
            }
        }
    }
    assert_eq!(seen, 5, "expected the five npm tokenizers in the goldens");
    assert!(
        failures.is_empty(),
        "{} renders differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The fuel budget must leave real templates plenty of room: every golden template renders a
/// long conversation (its case's turns repeated to about 100 messages of 2 KB each, tools
/// included where the case has them) on under a quarter of it. A budget cut too far fails here
/// before a user's long chat does.
#[test]
fn real_templates_render_long_conversations_well_inside_the_fuel_budget() {
    use cortex_tokenizer::TEMPLATE_FUEL;
    let goldens = golden("templates.json");
    let (mut rendered, mut hungriest) = (0, (0u64, String::new()));
    for entry in goldens["templates"].as_array().expect("templates") {
        let name = entry["name"].as_str().unwrap_or("?");
        let template = ChatTemplate::compile(entry["template"].as_str().expect("source")).unwrap();
        let special = special_tokens(&entry["special_tokens"]);
        for case in entry["cases"].as_array().expect("cases") {
            let base = messages(&case["messages"]);
            let (head, turns) = match base.first() {
                Some(m) if m.role == "system" => (vec![m.clone()], base[1..].to_vec()),
                _ => (Vec::new(), base.clone()),
            };
            if turns.is_empty() {
                continue;
            }
            let mut long = head;
            while long.len() < 100 {
                long.extend(turns.iter().cloned().map(|mut m| {
                    m.content.push_str(&" lorem ipsum".repeat(170));
                    m
                }));
            }
            match template.render_measured(&long, &options(case), &special) {
                Ok(r) => {
                    rendered += 1;
                    if r.fuel > hungriest.0 {
                        hungriest = (r.fuel, format!("{name} / {}", case["conversation"]));
                    }
                }
                // Repeating a conversation can break a template's own rules (two user turns in
                // a row, tool results without a call); only running out of room is a failure.
                Err(TokenizerError::Template {
                    kind: TemplateErrorKind::LimitExceeded,
                    message,
                }) => panic!("{name}: {message}"),
                Err(_) => {}
            }
        }
    }
    eprintln!(
        "hungriest of {rendered} long renders: {} fuel ({:.1}% of {TEMPLATE_FUEL}) in {}",
        hungriest.0,
        100.0 * hungriest.0 as f64 / TEMPLATE_FUEL as f64,
        hungriest.1
    );
    assert!(rendered >= 100, "too few long renders ({rendered})");
    assert!(
        hungriest.0 < TEMPLATE_FUEL / 4,
        "{} needs {} of {TEMPLATE_FUEL} fuel",
        hungriest.1,
        hungriest.0
    );
}
