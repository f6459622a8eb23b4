//! `cortex serve`'s whole HTTP application (guards, JSON extraction, request -> sampling
//! parameters, generation, SSE, the app API) driven in-process with hostile requests against the
//! tiny random model. No request may panic a handler, answer 500, or answer a /v1 error in
//! anything but OpenAI's error shape; a stream's events must be well-formed JSON; a client that
//! leaves mid-answer must leave the server as able to answer the next request.
//!
//! Input: byte 0 picks the route (and the server: local, or exposed with an API key), byte 1
//! the headers and whether the client reads the whole answer, the rest is the path tail and
//! the body (split at the first 0xff byte for routes with a path parameter).
#![no_main]
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use cortex_server::{RegistryConfig, ServerConfig};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::OnceLock;
use tower::ServiceExt;

const KEY: &str = "fuzz-key";

/// (method, path prefix, takes a tail from the input)
const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/chat/completions", false),
    ("POST", "/v1/completions", false),
    ("GET", "/v1/models", false),
    ("GET", "/v1/models/", true),
    ("GET", "/v1/engine/stats", false),
    ("POST", "/v1/", true),
    ("GET", "/health", false),
    ("GET", "/api/system", false),
    ("GET", "/api/settings", false),
    ("PUT", "/api/settings", false),
    ("GET", "/api/models", false),
    ("POST", "/api/models/import", false),
    ("POST", "/api/models/", true),
    ("GET", "/api/hub/search?", true),
    ("GET", "/api/hub/model?", true),
    ("GET", "/api/downloads", false),
    ("POST", "/api/downloads", false),
    ("POST", "/api/downloads/", true),
    ("POST", "/api/convert/estimate", false),
    ("POST", "/api/convert", false),
    ("GET", "/api/conversations", false),
    ("POST", "/api/conversations", false),
    ("GET", "/api/conversations/", true),
    ("POST", "/api/conversations/", true),
    ("PATCH", "/api/conversations/", true),
    ("OPTIONS", "/v1/chat/completions", false),
    ("GET", "/", true),
];

struct Apps {
    rt: tokio::runtime::Runtime,
    local: Router,
    exposed: Router,
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("cortex-fuzz-http-{}", std::process::id()))
}

/// The tiny model copied (not linked: the app API may delete what is in its library) into a
/// scratch models folder; the hub is an address nothing listens on, so pulls fail at once.
fn apps() -> &'static Apps {
    static APPS: OnceLock<Apps> = OnceLock::new();
    APPS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let tiny = root.join("tests/fixtures/generated/tiny-llama");
        let dir = scratch();
        let _ = std::fs::remove_dir_all(&dir);
        let models = dir.join("models");
        std::fs::create_dir_all(models.join("tiny")).expect("scratch models folder");
        for entry in std::fs::read_dir(&tiny)
            .expect("tests/fixtures/generated/tiny-llama (run tests/fixtures/make_all.sh)")
        {
            let entry = entry.expect("fixture entry");
            std::fs::copy(entry.path(), models.join("tiny").join(entry.file_name()))
                .expect("copy fixture");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut registry = RegistryConfig {
            models_dir: models,
            idle_unload: None,
            ..RegistryConfig::default()
        };
        registry.engine.kv_memory_bytes = Some(32 << 20);
        // A request without max_tokens may fill the context: keep that short, or one such
        // input runs past libFuzzer's 10 s timeout (it did at the model's 2,048).
        registry.engine.max_context = Some(256);
        let hub = cortex_hub::download::HubConfig {
            endpoint: "http://127.0.0.1:9".into(),
            token: Some("hf_fuzz_token".into()),
            cache_dir: dir.join("hub"),
        };
        let (local, exposed) = rt.block_on(async {
            let app = cortex_service::App::open(cortex_service::AppConfig {
                home: dir.join("home"),
                registry: registry.clone(),
                hub: hub.clone(),
                ensure_default_model: false,
                resume_unfinished: false,
            })
            .await
            .expect("app");
            let local = ServerConfig {
                port: 0,
                registry: registry.clone(),
                home: dir.join("home"),
                background_work: false,
                ui_dir: Some(dir.join("no-ui")),
                hub: Some(hub.clone()),
                ..ServerConfig::default()
            };
            let exposed = ServerConfig {
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                api_key: Some(KEY.into()),
                ..local.clone()
            };
            (
                cortex_server::http::router(&local, app.clone()),
                cortex_server::http::router(&exposed, app),
            )
        });
        Apps { rt, local, exposed }
    })
}

fn request(data: &[u8]) -> Option<(bool, bool, bool, Request<Body>)> {
    let (&pick, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let (method, prefix, tail) = ROUTES[pick as usize % ROUTES.len()];
    let exposed = pick as usize / ROUTES.len() % 2 == 1;
    let (tail, body) = if tail {
        match rest.iter().position(|&b| b == 0xff) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        }
    } else {
        (&[][..], rest)
    };
    // A path tail as a client could send it: printable ASCII kept, the rest percent-encoded.
    let mut path = prefix.to_string();
    for &b in tail.iter().take(200) {
        if b.is_ascii_graphic() && b != b'%' && b != b'#' {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(&path);
    if flags & 1 == 0 {
        req = req.header(
            header::HOST,
            if exposed {
                "192.0.2.1:8080"
            } else {
                "127.0.0.1:8080"
            },
        );
    }
    if flags & 2 == 0 {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    match flags >> 2 & 3 {
        1 => req = req.header(header::ORIGIN, "http://127.0.0.1:8080"),
        2 => req = req.header(header::ORIGIN, "https://evil.example"),
        3 => req = req.header("sec-fetch-site", "cross-site"),
        _ => {}
    }
    if flags & 16 == 0 {
        req = req.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    }
    let read_all = flags & 32 == 0;
    let is_events = path.starts_with("/api/events");
    let req = req.body(Body::from(body.to_vec())).ok()?;
    Some((
        exposed,
        read_all && !is_events,
        path.starts_with("/v1/"),
        req,
    ))
}

/// Every `data:` line of an event stream is JSON or `[DONE]`.
fn check_events(text: &str) {
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data != "[DONE]" {
                serde_json::from_str::<serde_json::Value>(data)
                    .unwrap_or_else(|e| panic!("event is not JSON ({e}): {data:?}"));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((exposed, read_all, openai, req)) = request(data) else {
        return;
    };
    let apps = apps();
    let router = if exposed { &apps.exposed } else { &apps.local };
    apps.rt.block_on(async {
        let res = router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a 500 for {data:?}"
        );
        let streamed = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut body = res.into_body();
        let mut bytes = Vec::new();
        // A client that leaves after the first frame: dropping the body is the disconnect.
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(d) = frame.data_ref() {
                bytes.extend_from_slice(d);
            }
            if !read_all || bytes.len() > 1 << 20 {
                return;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if streamed {
            check_events(&text);
        } else if openai && status.is_client_error() || openai && status.is_server_error() {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status} without a JSON error ({e}): {text:?}"));
            assert!(
                v["error"]["message"].is_string(),
                "{status} error shape: {text}"
            );
        }
    });
});
