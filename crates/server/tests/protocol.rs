//! The HTTP API's contract outside generation: health, the model list, OpenAI-shaped errors
//! for every bad request, the body limit, the API key, the Host guard and CORS. After each
//! refusal the server must go on answering.
mod common;

use common::*;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, HOST, ORIGIN,
};
use serde_json::{json, Value};

#[tokio::test]
async fn health_and_model_list() {
    let s = start(config()).await;
    let r = s.get("/health").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let v: Value = s.get("/v1/models").await.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let tiny = data
        .iter()
        .find(|m| m["id"] == "tiny")
        .expect("tiny listed");
    assert_eq!(tiny["object"], "model");
    assert_eq!(tiny["owned_by"], "cortexstream");
    assert!(tiny["created"].as_u64().unwrap() > 1_600_000_000);

    let one: Value = s.get("/v1/models/tiny").await.json().await.unwrap();
    assert_eq!(one["id"], "tiny");
    let e = error_of(s.get("/v1/models/nope").await, 404).await;
    assert_eq!(e["code"], "model_not_found");
}

#[tokio::test]
async fn malformed_and_incomplete_bodies_are_400() {
    let s = start(config()).await;
    let url = format!("{}/v1/chat/completions", s.url);
    for body in [
        "{not json",
        "",
        "[1, 2",
        r#"{"model": "tiny"}"#,
        r#"{"messages": []}"#,
    ] {
        let r = s.http.post(&url).body(body).send().await.unwrap();
        let e = error_of(r, 400).await;
        assert_eq!(e["type"], "invalid_request_error", "{body}");
    }
    let e = error_of(
        s.post("/v1/chat/completions", &chat("hi", json!({"messages": []})))
            .await,
        400,
    )
    .await;
    assert_eq!(e["param"], "messages");
    let e = error_of(
        s.post("/v1/completions", &json!({"model": "tiny", "prompt": ""}))
            .await,
        400,
    )
    .await;
    assert_eq!(e["param"], "prompt");
    // still serving
    assert_eq!(s.get("/health").await.status(), 200);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let s = start(config()).await;
    for (extra, param) in [
        (json!({"temperature": -1}), "temperature"),
        (json!({"n": 2}), "n"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 500}}), "logit_bias"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
    ] {
        let e = error_of(
            s.post("/v1/chat/completions", &chat("hi", extra.clone()))
                .await,
            400,
        )
        .await;
        assert_eq!(e["param"], param, "{extra}");
    }
    // a token id the model does not have: the engine refuses it, still a 400
    let e = error_of(
        s.post(
            "/v1/chat/completions",
            &chat("hi", json!({"logit_bias": {"99999": 5}})),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(e["type"], "invalid_request_error");
    let e = error_of(
        s.post(
            "/v1/completions",
            &json!({"model": "tiny", "prompt": "a", "logprobs": 50}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(e["param"], "logprobs");
}

#[tokio::test]
async fn unknown_model_is_404() {
    let s = start(config()).await;
    for model in ["no-such-model", "./no/such/folder", "missing.gguf"] {
        let mut body = chat("hi", json!({}));
        body["model"] = json!(model);
        let e = error_of(s.post("/v1/chat/completions", &body).await, 404).await;
        assert_eq!(e["code"], "model_not_found", "{model}");
        assert_eq!(e["param"], "model");
    }
    // a folder that exists but holds no model answers as a missing one (hardening.rs has more)
    let empty = models_dir().join("not-a-model");
    std::fs::create_dir_all(&empty).unwrap();
    let mut body = chat("hi", json!({}));
    body["model"] = json!(empty.to_str().unwrap());
    let e = error_of(s.post("/v1/chat/completions", &body).await, 404).await;
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(s.get("/health").await.status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = start(config()).await;
    let e = error_of(s.get("/v1/nothing-here").await, 404).await;
    assert_eq!(e["code"], "unknown_url");
    let e = error_of(s.get("/v1/chat/completions").await, 405).await;
    assert_eq!(e["code"], "method_not_allowed");
    // a model id that is not UTF-8 once percent-decoded (fuzz find: axum's rejection was
    // plain text, not OpenAI's error shape)
    let e = error_of(s.get("/v1/models/%FF").await, 400).await;
    assert_eq!(e["type"], "invalid_request_error");
    // "/v1/" itself, any method (fuzz find: POST got the static-file service's empty 405)
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
    ] {
        let resp = s
            .http
            .request(method.clone(), format!("{}/v1/", s.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status == 404 || status == 405, "{method}: {status}");
        let e = error_of(resp, status).await;
        assert!(e["message"].is_string(), "{method}: {e}");
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mut c = config();
    c.max_body_bytes = 1024;
    let s = start(c).await;
    let big = chat(&"word ".repeat(400), json!({"max_tokens": 1}));
    let e = error_of(s.post("/v1/chat/completions", &big).await, 413).await;
    assert_eq!(e["code"], "request_too_large");
    assert_eq!(s.short_chat_status().await, 200);
}

#[tokio::test]
async fn api_key_is_required_except_for_health() {
    let mut c = config();
    c.api_key = Some("sekret".into());
    let s = start(c).await;
    assert_eq!(s.get("/health").await.status(), 200);
    let e = error_of(s.get("/v1/models").await, 401).await;
    assert_eq!(e["code"], "invalid_api_key");
    let wrong = s.get_with("/v1/models", AUTHORIZATION, "Bearer nope").await;
    error_of(wrong, 401).await;
    let body = chat("hi", json!({"max_tokens": 2}));
    let chat_url = format!("{}/v1/chat/completions", s.url);
    let r = s.http.post(&chat_url).json(&body).send().await.unwrap();
    error_of(r, 401).await;
    let ok = s
        .get_with("/v1/models", AUTHORIZATION, "Bearer sekret")
        .await;
    assert_eq!(ok.status(), 200);
    let r = s
        .http
        .post(&chat_url)
        .header(AUTHORIZATION, "Bearer sekret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn loopback_server_refuses_foreign_host_headers() {
    let s = start(config()).await;
    let port = s.addr.port();
    for host in [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ] {
        let r = s.get_with("/v1/models", HOST, host).await;
        let e = error_of(r, 403).await;
        assert_eq!(e["type"], "permission_error", "{host}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_string(),
    ] {
        let r = s.get_with("/v1/models", HOST, &host).await;
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn other_bind_addresses_skip_the_host_guard() {
    let mut c = config();
    c.host = "0.0.0.0".parse().unwrap();
    c.api_key = Some("k".into()); // an exposed server needs one (/health never does)
    let s = start(c).await;
    let r = s.get_with("/health", HOST, "my-box.lan:8080").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cors_only_for_allowed_origins() {
    let s = start(config()).await;
    for origin in [
        "http://localhost:5173",
        "tauri://localhost",
        "http://127.0.0.1:3000",
    ] {
        let r = s.get_with("/v1/models", ORIGIN, origin).await;
        assert_eq!(r.status(), 200, "{origin}");
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        let pre = s
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", s.url),
            )
            .header(ORIGIN, origin)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success(), "{origin}: {}", pre.status());
        assert_eq!(pre.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        let methods = pre.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains("POST"), "{methods}");
    }
    for origin in ["http://evil.example", "https://localhost:5173", "null"] {
        let r = s.get_with("/v1/models", ORIGIN, origin).await;
        assert!(!r.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        error_of(r, 403).await;
        let r = s
            .http
            .post(format!("{}/v1/chat/completions", s.url))
            .header(ORIGIN, origin)
            .header("content-type", "text/plain")
            .body(chat("hi", json!({"max_tokens": 1})).to_string())
            .send()
            .await
            .unwrap();
        error_of(r, 403).await;
    }
    // a configured list replaces the defaults
    let mut c = config();
    c.allowed_origins = vec!["https://app.example".into()];
    let s = start(c).await;
    let r = s
        .get_with("/v1/models", ORIGIN, "https://app.example")
        .await;
    assert_eq!(
        r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let r = s
        .get_with("/v1/models", ORIGIN, "http://localhost:5173")
        .await;
    error_of(r, 403).await;
}
