//! A server others can reach (library-only, [`super::ServerConfig::library_only`]) does not show
//! the host's filesystem: its key holders get model names, not where the files live. Every JSON
//! answer (and every app API event) passes through [`hide_paths`]: a string that is an absolute
//! path, or holds one, keeps only the path's last component (`/home/ann/models/SmolLM2` reads
//! `…/SmolLM2`), so model paths, the models folder, import sources, download destinations and the
//! paths inside error messages all lose the folders above them.
//!
//! What people wrote or a model generated (message content, titles, system prompts, deltas, model
//! cards) is theirs and is left exactly as it is.
use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;
use std::borrow::Cow;

/// Keys whose strings are someone's words, never rewritten.
const VERBATIM: &[&str] = &[
    "content",
    "reasoning_content",
    "text",
    "title",
    "system_prompt",
    "card",
    "prompt",
];

/// Rewrites every absolute path in `v`'s strings (object keys in [`VERBATIM`] excepted).
pub fn hide_paths(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(hidden) = hide_in_text(s) {
                *s = hidden;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(hide_paths),
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if !VERBATIM.contains(&key.as_str()) {
                    hide_paths(value);
                }
            }
        }
        _ => {}
    }
}

/// `text` with each absolute path reduced to `…/` and its last component. A path starts at a
/// `/` (or `C:\`, `\\`) that begins the text or follows a space, quote, bracket, `=` or `,`, and
/// runs to the next space, quote, bracket, `,`, `;` or `:`. URLs (`https://…`) and repo ids
/// (`org/name`) do not start that way and are kept.
pub fn hide_in_text(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let starts_token = i == 0 || is_opener(bytes[i - 1]);
        let len = if starts_token {
            path_len(&text[i..])
        } else {
            0
        };
        if len == 0 {
            i += 1;
            continue;
        }
        out.push_str(&text[copied..i]);
        out.push_str("…/");
        out.push_str(last_component(&text[i..i + len]));
        i += len;
        copied = i;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn is_opener(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'`([{=,".contains(&b)
}

fn is_closer(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'`)]},;:".contains(&b)
}

/// The length of the absolute path at the start of `s`, 0 if none starts there.
fn path_len(s: &str) -> usize {
    let b = s.as_bytes();
    let body_start = if b.len() >= 2 && b[0] == b'/' {
        1
    } else if b.len() >= 4 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        3
    } else if b.len() >= 3 && b[0] == b'\\' && b[1] == b'\\' {
        2
    } else {
        return 0;
    };
    // "/" alone, "//", "/ " are no paths
    let first = b[body_start];
    if !(first.is_ascii_alphanumeric() || b"._-~".contains(&first) || first >= 0x80) {
        return 0;
    }
    // a path's colon (`C:\`) is before body_start; any later one ends it
    body_start
        + b[body_start..]
            .iter()
            .position(|&c| is_closer(c))
            .unwrap_or(b.len() - body_start)
}

fn last_component(path: &str) -> &str {
    path.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
}

/// Middleware: JSON answers without the host's paths (see the module's docs).
pub async fn json_without_paths(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    hide_paths(&mut value);
    let rewritten = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_keep_their_last_component_only() {
        let cases = [
            ("/home/ann/models/SmolLM2", "…/SmolLM2"),
            ("/home/ann/models/SmolLM2/", "…/SmolLM2"),
            (
                "/home/ann/.cortex/models/x/config.json: permission denied",
                "…/config.json: permission denied",
            ),
            (
                "cannot read \"/srv/m/a.gguf\" (see /var/log/c.log)",
                "cannot read \"…/a.gguf\" (see …/c.log)",
            ),
            ("C:\\Users\\ann\\models\\m", "…/m"),
            ("from=/data/x,to=/data/y", "from=…/x,to=…/y"),
        ];
        for (text, want) in cases {
            assert_eq!(hide_in_text(text), want, "{text}");
        }
    }

    #[test]
    fn urls_repo_ids_and_plain_text_are_kept() {
        for text in [
            "mlx-community/SmolLM2-135M-Instruct",
            "https://huggingface.co/org/model/resolve/main/x",
            "http://127.0.0.1:8080",
            "12 tokens/s, 3/4 done",
            "a / b",
            "",
            "/",
        ] {
            assert!(matches!(hide_in_text(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn nested_values_are_rewritten_but_what_people_wrote_is_not() {
        let mut v = json!({
            "models": [{"path": "/m/a", "source": {"kind": "gguf", "file": "/in/a.gguf"}}],
            "models_dir": "/home/ann/models",
            "error": {"message": "/m/a: gone", "details": {"path": "/m/a"}},
            "message": {"content": "see /etc/hosts", "title": "/tmp/x"},
            "text": "/usr/bin/env",
            "count": 3,
        });
        hide_paths(&mut v);
        assert_eq!(
            v,
            json!({
                "models": [{"path": "…/a", "source": {"kind": "gguf", "file": "…/a.gguf"}}],
                "models_dir": "…/models",
                "error": {"message": "…/a: gone", "details": {"path": "…/a"}},
                "message": {"content": "see /etc/hosts", "title": "/tmp/x"},
                "text": "/usr/bin/env",
                "count": 3,
            })
        );
    }
}
