//! Shared helpers of the integration tests: where the downloaded test data lives, loading the
//! committed goldens, and failing loudly (never skipping) when the data was not fetched.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cortex_tokenizer::{ChatMessage, ChatOptions, SpecialTokens};
use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path under the workspace root that scripts/fetch-test-data.sh creates; panics when absent.
pub fn data_path(rel: &str) -> PathBuf {
    let p = workspace_root().join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: run `bash scripts/fetch-test-data.sh` (PYTHON=... to pick the interpreter) from the workspace root",
        p.display()
    );
    p
}

pub fn golden(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

pub fn special_tokens(v: &Value) -> SpecialTokens {
    let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    SpecialTokens {
        bos: get("bos_token"),
        eos: get("eos_token"),
        unk: get("unk_token"),
        pad: get("pad_token"),
    }
}

pub fn messages(v: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).expect("golden messages deserialize")
}

pub fn options(case: &Value) -> ChatOptions {
    ChatOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
        tools: case.get("tools").filter(|t| !t.is_null()).cloned(),
        extra: case["extra"].as_object().cloned().unwrap_or_default(),
        now: case.get("now").and_then(Value::as_str).map(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                .unwrap_or_else(|e| panic!("golden 'now' {t:?}: {e}"))
        }),
    }
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|i| i.as_u64().expect("id") as u32)
        .collect()
}

/// Shows where two strings first differ, for readable template mismatch reports.
pub fn first_difference(a: &str, b: &str) -> String {
    let at = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or(a.len().min(b.len()));
    let ctx = |s: &str| {
        let start = s.floor_char_boundary_compat(at.saturating_sub(40));
        let end = s.floor_char_boundary_compat((at + 40).min(s.len()));
        format!("{:?}", &s[start..end])
    };
    format!("at byte {at}: ours {} vs expected {}", ctx(a), ctx(b))
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}
