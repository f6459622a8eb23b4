//! Regression tests for hostile or careless requests (issue 11, items 7, 8, 9 and 11): exposed
//! servers without a key, library-only serving (no pulls, no paths), the cap on loaded models,
//! requests without a Host, model names that are filesystem paths, listings that must show
//! names and not folders, a hub that cannot be reached, oversized logit_bias maps and bounded
//! queues.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Points the hub at a closed local port (connection refused), once, before any test of this
/// file starts a server (so no thread reads the environment while it is written).
fn env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{port}"));
        let cache =
            std::env::temp_dir().join(format!("cortex-hardening-hf-{}", std::process::id()));
        std::env::set_var("HF_HUB_CACHE", cache);
        std::env::remove_var("HF_TOKEN");
    });
}

/// Sends `request` as is and returns (status, body) of the answer.
async fn raw(s: &TestServer, request: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

// ---- item 7: exposure needs a key; exposed servers serve their library only ----------------

#[tokio::test]
async fn an_exposed_server_refuses_to_start_without_an_api_key() {
    env();
    let mut anywhere = config();
    anywhere.host = "0.0.0.0".parse().unwrap();
    let mut any_page = config();
    any_page.allowed_origins = vec!["*".into()];
    for c in [anywhere.clone(), any_page.clone()] {
        match cortex_server::Server::bind(c).await {
            Err(e @ cortex_server::ServerError::NeedsApiKey { .. }) => {
                assert!(e.to_string().contains("CORTEX_API_KEY"), "{e}")
            }
            Err(e) => panic!("expected NeedsApiKey, got {e}"),
            Ok(_) => panic!("an exposed server started without an API key"),
        }
    }
    // With a key both start, and serve their library only unless told otherwise.
    for mut c in [anywhere, any_page] {
        c.api_key = Some("k".into());
        assert!(c.serves_library_only());
        drop(cortex_server::Server::bind(c).await.unwrap());
    }
    assert!(!config().serves_library_only());
}

fn library_only() -> cortex_server::ServerConfig {
    let mut c = config();
    c.library_only = Some(true);
    c
}

#[tokio::test]
async fn a_library_only_server_refuses_paths_and_pulls_but_serves_its_library() {
    env();
    let s = start(library_only()).await;
    assert_eq!(s.short_chat_status().await, 200, "a name of the library");
    let by_path = models_dir().join("tiny").to_string_lossy().into_owned();
    for model in [
        by_path.as_str(),
        "/etc",
        "./tiny",
        "~/models/tiny",
        "tiny.gguf",
        "some-org/some-model",
        "https://huggingface.co/some-org/some-model",
    ] {
        let mut body = chat("hi", json!({"max_tokens": 1}));
        body["model"] = json!(model);
        // 403 at once: no download is tried (the hub of env() would answer 502) and no file
        // is looked at (a path that exists answers like one that does not).
        let e = error_of(s.post("/v1/chat/completions", &body).await, 403).await;
        assert_eq!(e["code"], "model_source_forbidden", "{model}: {e}");
        assert_eq!(e["param"], "model");
    }
    let mut body = chat("hi", json!({"max_tokens": 1}));
    body["model"] = json!("no-such-model");
    error_of(s.post("/v1/chat/completions", &body).await, 404).await;

    // The app API: what downloads, reads a path or writes model files is refused ...
    let refused = [
        ("POST", "/api/models/import", json!({"path": "/etc"})),
        (
            "POST",
            "/api/downloads",
            json!({"repo": "some-org/some-model"}),
        ),
        ("POST", "/api/downloads/dl_x/resume", json!({})),
        ("POST", "/api/convert", json!({"model_id": "mdl_x"})),
        ("PUT", "/api/settings", json!({"models_dir": "/etc"})),
    ];
    for (method, path, body) in refused {
        let r = s
            .http
            .request(method.parse().unwrap(), format!("{}{path}", s.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden", "{method} {path}: {v}");
    }
    // ... reading is not.
    assert_eq!(s.get("/api/models").await.status(), 200);
    assert_eq!(s.get("/api/settings").await.status(), 200);
    assert_eq!(s.get("/api/downloads").await.status(), 200);
}

/// Every answer of a few read requests, a load, a refused import, a failed lookup and a chat
/// through the app API, as one text.
async fn answers_about_the_library(s: &TestServer) -> String {
    let mut all = String::new();
    let mut text = |body: String| all.push_str(&body);
    for path in [
        "/api/system",
        "/api/settings",
        "/api/downloads",
        "/api/conversions",
        "/api/conversations",
        "/api/models/mdl_no_such_model",
        "/v1/models",
    ] {
        text(s.get(path).await.text().await.unwrap());
    }
    let library: Value = s.get("/api/models").await.json().await.unwrap();
    text(library.to_string());
    let id = library["models"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the library lists tiny: {library}"))
        .to_string();
    text(
        s.get(&format!("/api/models/{id}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    let load = s.post(&format!("/api/models/{id}/load"), &json!({})).await;
    text(load.text().await.unwrap());
    text(s.get("/v1/engine/stats").await.text().await.unwrap());
    let import = json!({"path": models_dir().join("no-such-model").to_string_lossy()});
    text(
        s.post("/api/models/import", &import)
            .await
            .text()
            .await
            .unwrap(),
    );
    let chat: Value = s
        .post("/api/conversations", &json!({"model_id": id}))
        .await
        .json()
        .await
        .unwrap();
    text(chat.to_string());
    let cid = chat["id"].as_str().unwrap();
    let reply = json!({"content": "hi", "max_tokens": 2});
    let path = format!("/api/conversations/{cid}/messages");
    text(s.post(&path, &reply).await.text().await.unwrap());
    text(
        s.get(&format!("/api/conversations/{cid}"))
            .await
            .text()
            .await
            .unwrap(),
    );
    all
}

#[tokio::test]
async fn a_library_only_server_shows_no_paths_of_this_machine() {
    env();
    // A models folder the library scan lists (it does not follow symlinks): a copy of tiny-llama.
    let models = std::env::temp_dir().join(format!("cortex-models-paths-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    let tiny = models.join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    let fixture = root().join("tests/fixtures/generated/tiny-llama");
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, tiny.join(from.file_name().unwrap())).unwrap();
    }
    let models = std::fs::canonicalize(models).unwrap();
    let mut folders = vec![
        models.to_string_lossy().into_owned(),
        models_dir().to_string_lossy().into_owned(),
    ];
    let with_models = |library_only: bool| {
        let mut c = config();
        c.registry.models_dir = models.clone();
        c.library_only = Some(library_only);
        c
    };
    // what the same requests show on the machine's own loopback server: the paths are there to
    // hide (else this test could not fail)
    let c = with_models(false);
    let home = c.home.to_string_lossy().into_owned();
    let local = answers_about_the_library(&start(c).await).await;
    assert!(
        folders.iter().any(|f| local.contains(f.as_str())),
        "a local server shows where its models are: {local}"
    );
    assert!(local.contains("\"library_only\":false"), "{local}");
    let c = with_models(true);
    folders.push(c.home.to_string_lossy().into_owned());
    folders.push(home);
    let exposed = answers_about_the_library(&start(c).await).await;
    assert!(exposed.contains("\"library_only\":true"), "{exposed}");
    assert!(
        exposed.contains("…/tiny"),
        "a model path keeps its name: {exposed}"
    );
    for folder in &folders {
        assert!(!exposed.contains(folder.as_str()), "{folder} in {exposed}");
    }
    let _ = std::fs::remove_dir_all(&models);
}

/// A scratch models folder holding tiny-llama under each of `names` (one engine per name).
fn tiny_under_names(tag: &str, names: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cortex-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = root().join("tests/fixtures/generated/tiny-llama");
    for name in names {
        std::os::unix::fs::symlink(&tiny, dir.join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn loaded_models_are_capped_and_the_least_recently_used_idle_one_goes() {
    env();
    // Three names for tiny-llama in their own folders: three engines.
    let dir = tiny_under_names("lru", &["a", "b", "c"]);
    let mut c = config();
    c.registry.models_dir = dir.clone();
    c.registry.max_loaded = Some(2);
    // refused at once when all are busy (the wait has its own test)
    c.registry.busy_wait = std::time::Duration::ZERO;
    let s = start(c).await;
    let ask = |model: &str| {
        let mut body = chat("hi", json!({"max_tokens": 1}));
        body["model"] = json!(model);
        body
    };
    let loaded = |stats: Value| -> Vec<String> {
        let mut names: Vec<String> = stats["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["names"][0].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    for m in ["a", "b"] {
        assert_eq!(s.post("/v1/chat/completions", &ask(m)).await.status(), 200);
    }
    assert_eq!(
        loaded(s.get("/v1/engine/stats").await.json().await.unwrap()),
        ["a", "b"]
    );
    // Something that is no model cannot cost a loaded model its place (it used to unload the
    // least recently used one, then fail to load).
    let junk = dir.join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(
        junk.join("config.json"),
        r#"{"model_type": "no-such-arch"}"#,
    )
    .unwrap();
    let junk_path = junk.to_string_lossy().into_owned();
    for (model, status) in [("/etc", 404), ("junk", 400), (junk_path.as_str(), 400)] {
        let r = s.post("/v1/chat/completions", &ask(model)).await;
        assert_eq!(r.status(), status, "{model}");
    }
    assert_eq!(
        loaded(s.get("/v1/engine/stats").await.json().await.unwrap()),
        ["a", "b"]
    );
    // Use a again: b is now the least recently used, so c replaces it.
    assert_eq!(
        s.post("/v1/chat/completions", &ask("a")).await.status(),
        200
    );
    assert_eq!(
        s.post("/v1/chat/completions", &ask("c")).await.status(),
        200
    );
    assert_eq!(
        loaded(s.get("/v1/engine/stats").await.json().await.unwrap()),
        ["a", "c"]
    );

    // While both loaded models answer requests, a third is refused (busy), not loaded.
    let stream = |model: &'static str| {
        let mut body = chat(
            "occupy the engine",
            json!({"max_tokens": 2000, "ignore_eos": true, "stream": true}),
        );
        body["model"] = json!(model);
        body
    };
    let mut held = Vec::new();
    for m in ["a", "c"] {
        let mut r = s.post("/v1/chat/completions", &stream(m)).await;
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap().expect("the stream starts");
        held.push(r);
    }
    let e = error_of(s.post("/v1/chat/completions", &ask("b")).await, 503).await;
    assert!(e["message"].as_str().unwrap().contains("busy"), "{e}");
    assert_eq!(
        loaded(s.get("/v1/engine/stats").await.json().await.unwrap()),
        ["a", "c"]
    );
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request for another model while every loaded one is answering waits for one to finish
/// (it used to get 503 at once), then unloads it and loads its own.
#[tokio::test]
async fn a_load_waits_for_a_busy_model_to_finish() {
    env();
    let dir = tiny_under_names("wait", &["a", "b", "c"]);
    let mut c = config();
    c.registry.models_dir = dir.clone();
    c.registry.max_loaded = Some(1);
    c.registry.busy_wait = std::time::Duration::from_secs(120);
    let s = start(c).await;
    let body = |model: &str, extra: Value| {
        let mut b = chat("hi", extra);
        b["model"] = json!(model);
        b
    };
    let endless = json!({"max_tokens": 2000, "ignore_eos": true, "stream": true});
    let mut held = s
        .post("/v1/chat/completions", &body("a", endless.clone()))
        .await;
    assert_eq!(held.status(), 200);
    held.chunk().await.unwrap().expect("the stream starts");

    // b waits while a answers: whenever b has been answered, a's request has ended (b is
    // checked first, then a), however fast the model writes a's 2,000 tokens
    let url = format!("{}/v1/chat/completions", s.url);
    let (http, b) = (s.http.clone(), body("b", json!({"max_tokens": 1})));
    let waiting = tokio::spawn(async move { http.post(url).json(&b).send().await.unwrap() });
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let answered = waiting.is_finished();
        let stats: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
        let a_active = stats["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["names"][0] == "a" && m["active_requests"].as_u64().unwrap() > 0);
        assert!(
            !(answered && a_active),
            "b was answered while a still held the only slot: {stats}"
        );
        if !a_active {
            break;
        }
    }
    // ...and loads once a's request ends (by length, or its client hangs up)
    drop(held);
    let r = waiting.await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stats: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
    assert_eq!(stats["models"][0]["names"][0], "b", "{stats}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn loads_that_start_together_do_not_overshoot_the_cap() {
    env();
    // Found by the soak benchmark: with a cap of 2, a third model loaded while another was
    // still loading (a load in progress did not count).
    let dir = tiny_under_names("race", &["a", "b", "c", "d"]);
    let mut c = config();
    c.registry.models_dir = dir.clone();
    c.registry.max_loaded = Some(1);
    let s = start(c).await;
    let ask = |model: &'static str| {
        let s = &s;
        async move {
            let mut body = chat("hi", json!({"max_tokens": 1}));
            body["model"] = json!(model);
            s.post("/v1/chat/completions", &body).await
        }
    };
    let (ra, rb, rc, rd) = tokio::join!(ask("a"), ask("b"), ask("c"), ask("d"));
    let statuses: Vec<u16> = [ra, rb, rc, rd]
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    for st in &statuses {
        assert!(*st == 200 || *st == 503, "{statuses:?}");
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    let v: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
    let loaded = v["models"].as_array().unwrap().len();
    assert_eq!(loaded, 1, "{statuses:?}: {v}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- item 8: the Host guard fails closed ----------------------------------------------------

#[tokio::test]
async fn requests_without_a_host_are_refused_on_loopback() {
    env();
    let s = start(config()).await;
    for req in [
        "GET /v1/models HTTP/1.0\r\n\r\n",
        "GET /health HTTP/1.0\r\n\r\n",
        "GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
    ] {
        let (status, body) = raw(&s, req).await;
        assert_eq!(status, 400, "{req:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "missing_host", "{req:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("Host"));
    }
    // an absolute request target names the host too, and must pass the same check
    let (status, _) = raw(
        &s,
        concat!(
            "GET http://evil.example/v1/models HTTP/1.1\r\n",
            "Host: localhost\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 403);
    // well-formed requests still pass
    let (status, _) = raw(
        &s,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

// ---- item 9: no paths in errors or listings, a fast hub failure -----------------------------

#[tokio::test]
async fn model_errors_reveal_no_paths_nor_whether_they_exist() {
    env();
    let s = start(config()).await;
    let empty = models_dir().join("not-a-model");
    std::fs::create_dir_all(&empty).unwrap();
    let not_json = models_dir().join("not-json");
    std::fs::create_dir_all(&not_json).unwrap();
    std::fs::write(not_json.join("config.json"), "{ not json").unwrap();
    let mut answers = Vec::new();
    for model in [
        "/etc".to_string(),
        "/etc/passwd".to_string(),
        "/no/such/folder".to_string(),
        "./no/such/folder".to_string(),
        "missing.gguf".to_string(),
        "no-such-model".to_string(),
        empty.to_string_lossy().into_owned(),
        not_json.to_string_lossy().into_owned(),
    ] {
        let mut body = chat("hi", json!({}));
        body["model"] = json!(model);
        let e = error_of(s.post("/v1/chat/completions", &body).await, 404).await;
        assert_eq!(e["code"], "model_not_found", "{model}: {e}");
        assert_eq!(e["param"], "model");
        let message = e["message"].as_str().unwrap().to_string();
        assert!(!message.contains("config.json"), "{model}: {message}");
        assert!(message.contains(&model), "names the model sent: {message}");
        // the same words for every name: nothing tells an existing path from a missing one
        answers.push(message.replace(&model, "MODEL"));
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!(s.short_chat_status().await, 200);
}

#[tokio::test]
async fn listings_show_names_not_folders() {
    env();
    let s = start(config()).await;
    let by_path = models_dir().join("tiny").to_string_lossy().into_owned();
    let mut body = chat("hi", json!({"max_tokens": 2}));
    body["model"] = json!(by_path);
    assert_eq!(s.post("/v1/chat/completions", &body).await.status(), 200);
    assert_eq!(s.short_chat_status().await, 200);

    let v: Value = s.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"tiny"), "{ids:?}");
    for id in &ids {
        assert!(!id.contains('/'), "a path in /v1/models: {id}");
    }
    let stats: Value = s.get("/v1/engine/stats").await.json().await.unwrap();
    let text = stats.to_string();
    let models_root = models_dir().to_string_lossy().into_owned();
    assert!(
        !text.contains(&models_root),
        "a folder in the stats: {stats}"
    );
    let m = &stats["models"][0];
    assert!(m.get("dir").is_none(), "{m}");
    assert_eq!(m["names"], json!(["tiny"]), "{m}");
}

#[tokio::test]
async fn unreachable_hub_fails_fast_with_a_typed_error() {
    env();
    let s = start(config()).await;
    let started = Instant::now();
    let mut body = chat("hi", json!({}));
    body["model"] = json!("some-org/some-model");
    let r = s.post("/v1/chat/completions", &body).await;
    let took = started.elapsed();
    let e = error_of(r, 502).await;
    assert_eq!(e["code"], "hub_unreachable", "{e}");
    // Only printed: tests assert no wall-clock times (the hub crate's own test checks that a
    // refused connection is not retried).
    eprintln!("an unreachable hub answered after {took:?}");
    assert_eq!(s.short_chat_status().await, 200);
}

// ---- item 11: bounded requests ------------------------------------------------------------

#[tokio::test]
async fn logit_bias_is_limited_to_300_entries() {
    env();
    let s = start(config()).await;
    let bias = |n: u32| -> Value { (0..n).map(|i| (i.to_string(), json!(1))).collect() };
    let e = error_of(
        s.post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 1, "logit_bias": bias(301)})),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(e["param"], "logit_bias", "{e}");
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("300"), "{e}");
    let r = s
        .post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 1, "logit_bias": bias(300)})),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// A server whose engine runs one sequence at a time, so a second request waits.
fn one_at_a_time(
    max_queue: Option<usize>,
    queue_timeout: Option<Duration>,
) -> cortex_server::ServerConfig {
    let mut c = config();
    c.registry.engine.max_running = 1;
    // room for running_stream's long answer (the tiny model's own context is 2048)
    c.registry.engine.max_context = Some(RUNNING_TOKENS + 64);
    c.max_queue = max_queue;
    c.queue_timeout = queue_timeout;
    c
}

/// Tokens of running_stream's answer: seconds of the tiny model's decode, far longer than any
/// test holds it (each drops it when done), so the tests do not depend on the engine's speed.
/// 2,000 tokens, the model's whole context, once took about a second in CI; a faster engine
/// then finished it before the queue timeouts of the test below had fired.
const RUNNING_TOKENS: usize = 30_000;

/// Starts a long stream and returns its response once its first content chunk has arrived
/// (it runs in the engine from then on).
async fn running_stream(s: &TestServer) -> reqwest::Response {
    let body = chat(
        "occupy the engine",
        json!({"max_tokens": RUNNING_TOKENS, "ignore_eos": true, "stream": true}),
    );
    let mut r = s.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    while sse_data(&seen).len() < 3 {
        let chunk = r.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    r
}

async fn engine_waiting(s: &TestServer) -> u64 {
    s.engine_stats().await["waiting"].as_u64().unwrap()
}

#[tokio::test]
async fn a_full_queue_is_503_with_retry_after() {
    env();
    let s = start(one_at_a_time(Some(1), None)).await;
    assert_eq!(s.short_chat_status().await, 200); // loaded and warm
    let running = running_stream(&s).await;
    // the second request waits: the engine runs one sequence at a time
    let waiting = {
        let (http, url) = (s.http.clone(), format!("{}/v1/chat/completions", s.url));
        let body = chat("wait for me", json!({"max_tokens": 2}));
        tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap() })
    };
    let started = Instant::now();
    while engine_waiting(&s).await < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the third is over the limit of one waiting request
    for stream in [false, true] {
        let r = s
            .post(
                "/v1/chat/completions",
                &chat("one too many", json!({"max_tokens": 2, "stream": stream})),
            )
            .await;
        let retry_after = r.headers().get("retry-after").cloned();
        let e = error_of(r, 503).await;
        assert_eq!(e["code"], "queue_full", "{e}");
        assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    }
    // once the running stream goes away the waiting request is served
    drop(running);
    let r = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.short_chat_status().await, 200);
    s.wait_idle(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn queue_timeout_drops_waiting_requests_but_not_running_streams() {
    env();
    let s = start(one_at_a_time(None, Some(Duration::from_millis(200)))).await;
    assert_eq!(s.short_chat_status().await, 200);
    let mut running = running_stream(&s).await;

    // a whole answer that cannot start in time: 503 queue_timeout with Retry-After
    let started = Instant::now();
    let r = s
        .post(
            "/v1/chat/completions",
            &chat("too late", json!({"max_tokens": 2})),
        )
        .await;
    let took = started.elapsed();
    assert!(r.headers().contains_key("retry-after"));
    let e = error_of(r, 503).await;
    assert_eq!(e["code"], "queue_timeout", "{e}");
    assert!(took >= Duration::from_millis(180), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // a stream that cannot start in time: an error event, no [DONE]
    let r = s
        .post(
            "/v1/completions",
            &json!({"model": "tiny", "prompt": "too late", "max_tokens": 2, "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let events = sse_data(&r.text().await.unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "queue_timeout", "{events:?}");

    // the stream that was already running is not cut: it goes on with content, no error, no
    // end (its answer is far longer than this test), until its client leaves
    let mut rest = String::new();
    while sse_data(&rest).len() < 50 {
        let chunk = running.chunk().await.unwrap().expect("the stream goes on");
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    let whole = &rest[..rest.rfind("\n\n").unwrap_or(0)]; // the last event may be partial
    for event in sse_data(whole) {
        let v: Value = serde_json::from_str(&event).unwrap_or_else(|_| panic!("{event}"));
        assert!(v.get("error").is_none(), "{v}");
        assert!(v["choices"][0]["finish_reason"].is_null(), "{v}");
    }
    drop(running);
    // the dropped requests and the stream left nothing behind in the engine
    s.wait_idle(Duration::from_secs(10)).await;
    assert_eq!(s.short_chat_status().await, 200);
}
