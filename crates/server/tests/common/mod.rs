//! Starts `cortex serve`'s application in-process on a free port with the tiny random models
//! (tests/fixtures/generated, made by tests/fixtures/make_all.sh) in a scratch models folder.
#![allow(dead_code)]
use cortex_server::{RegistryConfig, Server, ServerConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A models folder holding `tiny` (tiny-llama: random weights, chat template, 2048 context).
pub fn models_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let tiny = root().join("tests/fixtures/generated/tiny-llama");
        assert!(
            tiny.join("model.safetensors").exists(),
            "test fixtures missing: run `PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh` (scripts/test.sh does)"
        );
        let dir = std::env::temp_dir().join(format!("cortex-server-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&tiny, dir.join("tiny")).unwrap();
        dir
    })
    .clone()
}

pub fn config() -> ServerConfig {
    let mut registry = RegistryConfig {
        models_dir: models_dir(),
        idle_unload: None,
        ..RegistryConfig::default()
    };
    registry.engine.kv_memory_bytes = Some(64 << 20);
    ServerConfig {
        port: 0,
        registry,
        home: scratch_home(),
        background_work: false,
        ..ServerConfig::default()
    }
}

/// A fresh app home (catalog) for each server.
pub fn scratch_home() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cortex-server-home-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), cortex_server::ServerError>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(config: ServerConfig) -> TestServer {
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let url = format!("http://127.0.0.1:{}", addr.port());
    TestServer {
        addr,
        url,
        http: reqwest::Client::new(),
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestServer {
    /// Triggers the graceful shutdown and waits for `Server::run` to return.
    pub async fn shutdown(&mut self, within: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = self.task.take().expect("running");
        let done = tokio::time::timeout(within, task).await;
        done.expect("shutdown timed out").unwrap().unwrap();
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// GET `path` with one extra header.
    pub async fn get_with(
        &self,
        path: &str,
        name: reqwest::header::HeaderName,
        value: &str,
    ) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header(name, value)
            .send()
            .await
            .unwrap()
    }

    /// Status of a two-token chat completion: 200 while the server goes on answering.
    pub async fn short_chat_status(&self) -> reqwest::StatusCode {
        self.post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 2})),
        )
        .await
        .status()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The engine stats of the one loaded model (panics unless exactly one is loaded).
    pub async fn engine_stats(&self) -> Value {
        let v: Value = self.get("/v1/engine/stats").await.json().await.unwrap();
        let models = v["models"].as_array().unwrap();
        assert_eq!(models.len(), 1, "{v}");
        models[0]["stats"].clone()
    }

    /// Waits until no request runs or waits and every KV block is free; returns the stats.
    pub async fn wait_idle(&self, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let s = self.engine_stats().await;
            let idle =
                s["running"] == 0 && s["waiting"] == 0 && s["free_blocks"] == s["total_blocks"];
            if idle {
                return s;
            }
            assert!(start.elapsed() < within, "engine still busy: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(|d| d.trim().to_string())
        })
        .collect()
}

/// Asserts an OpenAI error body and returns it.
pub async fn error_of(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let v: Value = resp.json().await.unwrap();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    e.clone()
}
