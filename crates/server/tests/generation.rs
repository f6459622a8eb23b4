//! Generation through the HTTP API with the tiny random model (gibberish text, real protocol):
//! response shapes, SSE order, streamed == whole text, context overflow, cancellation when a
//! client goes away (streamed or not) and idle unloading.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// ignore_eos with this many tokens runs for thousands of engine steps unless cancelled.
const LONG: usize = 1800;

#[tokio::test]
async fn chat_completion_shape_and_usage() {
    let s = start(config()).await;
    let r = s
        .post(
            "/v1/chat/completions",
            &chat(
                "Hello there",
                json!({"max_tokens": 7, "ignore_eos": true, "logprobs": true, "top_logprobs": 2}),
            ),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tiny");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert!(c["message"]["content"].is_string());
    assert_eq!(c["finish_reason"], "length");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 7);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 7
    );
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64());
    let lps = c["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lps.len(), 7);
    for t in lps {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 2);
    }
    // the template-encoded prompt: <|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n
    let again: Value = s
        .post(
            "/v1/chat/completions",
            &chat("Hello there", json!({"max_tokens": 7, "ignore_eos": true})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["usage"]["prompt_tokens"], u["prompt_tokens"]);
    assert!(again["choices"][0]["logprobs"].is_null());
    // greedy: the same text again, and the prompt now comes from the prefix cache
    assert_eq!(
        again["choices"][0]["message"]["content"],
        c["message"]["content"]
    );
    assert!(
        again["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn text_completion_shape() {
    let s = start(config()).await;
    for prompt in [
        json!("Once upon a time"),
        json!(["Once upon a time"]),
        json!([5, 6, 7, 8]),
    ] {
        let body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 5, "temperature": 0, "ignore_eos": true, "logprobs": 1});
        let r = s.post("/v1/completions", &body).await;
        assert_eq!(r.status(), 200, "{prompt}");
        let v: Value = r.json().await.unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(v["object"], "text_completion");
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "length");
        assert!(c["text"].is_string());
        assert_eq!(c["logprobs"]["tokens"].as_array().unwrap().len(), 5);
        assert_eq!(c["logprobs"]["token_logprobs"].as_array().unwrap().len(), 5);
        assert_eq!(v["usage"]["completion_tokens"], 5);
    }
    let v: Value = s
        .post(
            "/v1/completions",
            &json!({"model": "tiny", "prompt": [5, 6, 7, 8], "max_tokens": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 4);
}

async fn stream_body(s: &TestServer, path: &str, body: &Value) -> Vec<String> {
    let r = s.post(path, body).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    sse_data(&r.text().await.unwrap())
}

#[tokio::test]
async fn chat_stream_order_and_text_match_the_whole_answer() {
    let s = start(config()).await;
    let params = json!({"max_tokens": 12, "ignore_eos": true});
    let whole: Value = s
        .post(
            "/v1/chat/completions",
            &chat("Tell me a story", params.clone()),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut streamed = chat("Tell me a story", params);
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let data = stream_body(&s, "/v1/chat/completions", &streamed).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "{data:?}");
    let id = &chunks[0]["id"];
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(&c["id"], id);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    for c in &chunks[..chunks.len() - 2] {
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // without include_usage: no usage chunk, finish chunk right before [DONE]
    streamed["stream_options"] = json!(null);
    let data = stream_body(&s, "/v1/chat/completions", &streamed).await;
    let finish: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
}

#[tokio::test]
async fn completion_stream_text_matches_the_whole_answer() {
    let s = start(config()).await;
    let mut body = json!({"model": "tiny", "prompt": "The sea", "max_tokens": 10, "temperature": 0, "ignore_eos": true});
    let whole: Value = s.post("/v1/completions", &body).await.json().await.unwrap();
    body["stream"] = json!(true);
    let data = stream_body(&s, "/v1/completions", &body).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[tokio::test]
async fn prompt_longer_than_the_context_is_400_and_the_server_goes_on() {
    let mut c = config();
    c.registry.engine.max_context = Some(64);
    let s = start(c).await;
    let long = "word ".repeat(200);
    let e = error_of(
        s.post("/v1/chat/completions", &chat(&long, json!({})))
            .await,
        400,
    )
    .await;
    assert_eq!(e["code"], "context_length_exceeded");
    assert_eq!(e["param"], "messages");
    let body = json!({"model": "tiny", "prompt": long, "max_tokens": 4});
    let e = error_of(s.post("/v1/completions", &body).await, 400).await;
    assert_eq!(e["code"], "context_length_exceeded");
    let r = s
        .post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 3, "ignore_eos": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    s.wait_idle(Duration::from_secs(10)).await;
}

/// Steps the engine took: far below LONG means the request was cut short.
fn steps(stats: &Value) -> u64 {
    stats["steps"].as_u64().unwrap()
}

#[tokio::test]
async fn client_leaving_a_stream_cancels_the_request() {
    let s = start(config()).await;
    let mut body = chat(
        "go on forever",
        json!({"max_tokens": LONG, "ignore_eos": true, "stream": true}),
    );
    body["temperature"] = json!(1.0);
    let mut r = s.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        assert!(r.chunk().await.unwrap().is_some());
    }
    assert_eq!(s.engine_stats().await["running"], 1);
    drop(r);
    let stats = s.wait_idle(Duration::from_secs(20)).await;
    assert!(steps(&stats) < LONG as u64 / 2, "not cancelled: {stats}");
    // and the server still answers
    assert_eq!(s.short_chat_status().await, 200);
}

#[tokio::test]
async fn client_leaving_a_whole_answer_cancels_the_request() {
    let s = start(config()).await;
    let body = chat(
        "go on forever",
        json!({"max_tokens": LONG, "ignore_eos": true}),
    )
    .to_string();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    // wait until it runs, then hang up
    let start = std::time::Instant::now();
    loop {
        let v: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
        if v["models"][0]["stats"]["running"] == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tcp);
    let stats = s.wait_idle(Duration::from_secs(20)).await;
    assert!(steps(&stats) < LONG as u64 / 2, "not cancelled: {stats}");
}

#[tokio::test]
async fn many_concurrent_streams_and_disconnects_leave_every_block_free() {
    let s = std::sync::Arc::new(start(config()).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = chat(
                &format!("prompt number {}", i % 4),
                json!({"max_tokens": 24, "ignore_eos": true, "stream": true}),
            );
            if i % 4 == 0 {
                body["max_tokens"] = json!(LONG);
            }
            let mut r = s.post("/v1/chat/completions", &body).await;
            if i % 4 == 0 {
                let _ = r.chunk().await;
                return None; // hang up
            }
            let mut text = Vec::new();
            while let Some(c) = r.chunk().await.unwrap() {
                text.extend_from_slice(&c);
            }
            Some(sse_data(&String::from_utf8(text).unwrap()))
        }));
    }
    for t in tasks {
        if let Some(data) = t.await.unwrap() {
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
            let finish: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
            assert_eq!(finish["choices"][0]["finish_reason"], "length");
        }
    }
    s.wait_idle(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn idle_models_are_unloaded_and_reloaded_on_demand() {
    let mut c = config();
    c.registry.idle_unload = Some(Duration::from_millis(400));
    let s = start(c).await;
    let r = s
        .post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 2, "ignore_eos": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let start = std::time::Instant::now();
    loop {
        let v: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
        if v["models"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never unloaded: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s
        .post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 2, "ignore_eos": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_load() {
    let s = std::sync::Arc::new(start(config()).await);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.post(
                    "/v1/chat/completions",
                    &chat("hi", json!({"max_tokens": 2})),
                )
                .await
                .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // one engine ran all six (its stats catch up after its next step)
    let stats = s.wait_idle(Duration::from_secs(10)).await;
    let start = std::time::Instant::now();
    while s.engine_stats().await["finished"] != 6 {
        assert!(start.elapsed() < Duration::from_secs(10), "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_ends_running_streams_with_an_error_event() {
    let mut s = start(config()).await;
    let body = chat(
        "go on forever",
        json!({"max_tokens": LONG, "ignore_eos": true, "stream": true}),
    );
    let mut r = s.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    for _ in 0..2 {
        text.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
    }
    let reader = tokio::spawn(async move {
        while let Ok(Some(c)) = r.chunk().await {
            text.push_str(&String::from_utf8_lossy(&c));
        }
        text
    });
    s.shutdown(Duration::from_secs(20)).await;
    let data = sse_data(&reader.await.unwrap());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
}
