//! Every Tauri command through tauri's mock runtime (no display): the IPC argument names the
//! UI sends (ui/src/services/tauri.ts), the JSON each returns, its typed errors, the streamed
//! reply over a Channel, app events re-emitted to the window, and the local API server switch.
//! A scratch home whose models folder holds tiny-llama as `tiny`; the local test hub serves a
//! copy as `test-org/tiny`.
use cortex_hub::download::HubConfig;
use cortex_service::{AppConfig, RegistryConfig};
use cortex_testkit::{copy_dir, fixture, Scratch, TestHub};
use cortexstream_desktop::{commands, handler, Desktop, COMMAND_NAMES};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::ipc::{CallbackFn, Channel, InvokeBody, InvokeResponseBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::webview::InvokeRequest;
use tauri::{Listener, Manager, WebviewWindow, WebviewWindowBuilder};

struct Harness {
    app: tauri::App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
    home: Scratch,
}

fn config(home: &Path, hub: Option<&str>) -> AppConfig {
    let models = home.join("models");
    if !models.join("tiny").exists() {
        copy_dir(&fixture("tiny-llama"), &models.join("tiny"));
    }
    AppConfig {
        home: home.to_path_buf(),
        registry: RegistryConfig {
            models_dir: models,
            idle_unload: None,
            ..RegistryConfig::default()
        },
        hub: HubConfig {
            // port 9 (discard): nothing listens, the hub is unreachable
            endpoint: hub.unwrap_or("http://127.0.0.1:9").to_string(),
            token: None,
            cache_dir: home.join("hf/hub"),
        },
        ensure_default_model: false,
        resume_unfinished: true,
    }
}

fn harness_in(home: Scratch, hub: Option<&str>) -> Harness {
    let desktop = tauri::async_runtime::block_on(Desktop::open(config(home.path(), hub)))
        .expect("open the app");
    let app = mock_builder()
        .invoke_handler(handler())
        .build(mock_context(noop_assets()))
        .expect("mock app");
    cortexstream_desktop::forward_events(app.handle().clone(), &desktop.app);
    app.manage(desktop);
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("mock window");
    Harness { app, window, home }
}

fn harness(tag: &str, hub: Option<&str>) -> Harness {
    harness_in(Scratch::new(&format!("desktop-{tag}")), hub)
}

impl Harness {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let request = InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: tauri::test::INVOKE_KEY.to_string(),
        };
        get_ipc_response(&self.window, request).map(|body| match body {
            InvokeResponseBody::Json(s) => serde_json::from_str(&s).unwrap(),
            InvokeResponseBody::Raw(b) => Value::String(String::from_utf8_lossy(&b).into()),
        })
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.call(cmd, args.clone())
            .unwrap_or_else(|e| panic!("{cmd} {args}: {e}"))
    }

    /// Asserts a typed `{code, message}` error and returns the code.
    fn err(&self, cmd: &str, args: Value) -> String {
        let e = self
            .call(cmd, args.clone())
            .err()
            .unwrap_or_else(|| panic!("{cmd} {args} succeeded"));
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{cmd}: {e}"
        );
        e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{cmd}: untyped error {e}"))
            .to_string()
    }

    fn model_id(&self, name: &str) -> String {
        let lib = self.ok("list_models", json!({}));
        lib["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no model {name} in {lib}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn desktop(&self) -> tauri::State<'_, Desktop> {
        self.app.state::<Desktop>()
    }

    /// Runs send_message (or regenerate) with a Channel that records the events.
    fn reply(
        &self,
        conversation: &str,
        message: Option<Value>,
        regenerate: Option<&str>,
    ) -> Vec<Value> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let channel = Channel::new(move |body| {
            if let InvokeResponseBody::Json(s) = body {
                sink.lock().unwrap().push(serde_json::from_str(&s).unwrap());
            }
            Ok(())
        });
        let d = self.desktop();
        let run = async {
            match (message, regenerate) {
                (Some(m), _) => {
                    commands::send_message(d, conversation.into(), arg(m), channel).await
                }
                (None, Some(id)) => {
                    let r = arg(json!({ "message_id": id }));
                    commands::regenerate(d, conversation.into(), r, channel).await
                }
                _ => unreachable!(),
            }
        };
        tauri::async_runtime::block_on(run).expect("reply");
        let v = events.lock().unwrap().clone();
        v
    }
}

fn arg<T: serde::de::DeserializeOwned>(v: Value) -> cortexstream_desktop::error::Arg<T> {
    serde_json::from_value(v).unwrap()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> Option<Value>) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_command_is_registered_and_the_capability_grants_exactly_those() {
    let h = harness("names", None);
    for name in COMMAND_NAMES {
        // no arguments: each either runs or complains about its arguments, never "not found"
        if let Err(e) = h.call(name, json!({})) {
            let text = e.to_string();
            assert!(!text.contains("not found"), "{name}: {text}");
        }
    }
    let unknown = h.call("drop_all_tables", json!({})).unwrap_err();
    assert!(unknown.to_string().contains("not found"), "{unknown}");

    let cap: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("capabilities/main.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cap["windows"], json!(["main"]));
    let granted: BTreeSet<String> = cap["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let mut expected: BTreeSet<String> = COMMAND_NAMES
        .iter()
        .map(|n| format!("allow-{}", n.replace('_', "-")))
        .collect();
    expected.insert("core:event:allow-listen".into());
    expected.insert("core:event:allow-unlisten".into());
    assert_eq!(granted, expected);
}

#[test]
fn system_and_settings() {
    let h = harness("settings", None);
    let sys = h.ok("get_system", json!({}));
    assert_eq!(sys["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(sys["models_dir"], json!(h.home.path().join("models")));
    assert_eq!(sys["has_hf_token"], false);

    let s = h.ok("get_settings", json!({}));
    assert_eq!(s["theme"], "system");
    let s = h.ok(
        "update_settings",
        json!({"update": {"theme": "dark", "kv_memory_mb": 256}}),
    );
    assert_eq!(s["theme"], "dark");
    assert_eq!(s["kv_memory_mb"], 256);
    assert_eq!(h.ok("get_settings", json!({}))["theme"], "dark");
    // a bad shape is the app's invalid_input, not Tauri's untyped string
    assert_eq!(
        h.err("update_settings", json!({"update": {"colour": "red"}})),
        "invalid_input"
    );
    assert_eq!(
        h.err("update_settings", json!({"update": {"theme": "neon"}})),
        "invalid_input"
    );
}

#[test]
fn library_commands() {
    let h = harness("library", None);
    let id = h.model_id("tiny");
    let m = h.ok("get_model", json!({"id": id}));
    assert_eq!(m["name"], "tiny");
    let m = h.ok(
        "update_model",
        json!({"id": id, "update": {"name": "Tiny model", "settings": {"max_tokens": 4}}}),
    );
    assert_eq!(m["name"], "Tiny model");
    assert_eq!(m["settings"]["max_tokens"], 4);
    assert_eq!(
        h.err("update_model", json!({"id": id, "update": {"size": 1}})),
        "invalid_input"
    );
    assert_eq!(h.err("get_model", json!({"id": "nope"})), "not_found");

    let m = h.ok("load_model", json!({"id": id}));
    assert_eq!(m["loaded"], true, "{m}");
    let m = h.ok("unload_model", json!({"id": id}));
    assert_eq!(m["loaded"], false, "{m}");

    // import a folder from elsewhere: it joins the library, and removing it keeps the files
    let elsewhere = Scratch::new("desktop-import-src");
    copy_dir(&fixture("tiny-llama"), &elsewhere.path().join("my-model"));
    let imported = h.ok(
        "import_model",
        json!({"request": {"path": elsewhere.path().join("my-model"), "name": "Mine"}}),
    );
    assert_eq!(imported["name"], "Mine");
    assert_eq!(
        h.err(
            "import_model",
            json!({"request": {"path": "/no/such/folder"}})
        ),
        "invalid_input"
    );
    let gone = h.ok("delete_model", json!({"id": imported["id"]}));
    assert!(gone["freed_bytes"].is_u64(), "{gone}");
    assert_eq!(
        h.err("get_model", json!({"id": imported["id"]})),
        "not_found"
    );
}

#[test]
fn conversations_and_streamed_replies() {
    let h = harness("chat", None);
    let model = h.model_id("tiny");
    h.ok(
        "update_model",
        json!({"id": model, "update": {"settings": {"max_tokens": 5, "temperature": 0}}}),
    );
    let c = h.ok(
        "create_conversation",
        json!({"request": {"model_id": model}}),
    );
    let cid = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        h.err("create_conversation", json!({"request": {"model": "x"}})),
        "invalid_input"
    );

    let ev = h.reply(&cid, Some(json!({"content": "Hello there"})), None);
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..2],
        ["user_message", "assistant_started"],
        "{types:?}"
    );
    assert_eq!(types.last(), Some(&"done"), "{types:?}");
    let done = &ev.last().unwrap()["message"];
    let streamed: String = ev
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(done["content"].as_str().unwrap(), streamed);
    assert_eq!(done["stats"]["completion_tokens"], 5);
    let reply1 = done["id"].as_str().unwrap().to_string();

    // regenerate: a sibling with the same greedy text
    let ev = h.reply(&cid, None, Some(&reply1));
    let sibling = &ev.last().unwrap()["message"];
    assert_eq!(sibling["parent_id"], ev[0]["message"]["parent_id"]);
    assert_eq!(sibling["content"], done["content"]);

    // the same command over IPC, with the channel id the UI's Channel serialises to
    let r = h.ok(
        "send_message",
        json!({"conversationId": cid, "request": {"parent_id": sibling["id"], "content": "More"}, "onEvent": "__CHANNEL__:7"}),
    );
    assert_eq!(r, Value::Null);
    assert_eq!(
        h.err(
            "send_message",
            json!({"conversationId": cid, "request": {"text": "x"}, "onEvent": "__CHANNEL__:8"})
        ),
        "invalid_input"
    );
    assert_eq!(
        h.err("send_message", json!({"conversationId": "nope", "request": {"content": "x"}, "onEvent": "__CHANNEL__:9"})),
        "not_found"
    );

    let tree = h.ok("get_conversation", json!({"id": cid}));
    assert_eq!(tree["messages"].as_array().unwrap().len(), 5, "{tree}");
    assert_eq!(tree["conversation"]["title"], "Hello there");
    let c = h.ok(
        "update_conversation",
        json!({"id": cid, "update": {"title": "Renamed"}}),
    );
    assert_eq!(c["title"], "Renamed");
    let list = h.ok("list_conversations", json!({"q": "Renamed"}));
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    let list = h.ok("list_conversations", json!({"q": null}));
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(
        h.ok("stop_reply", json!({"conversationId": cid})),
        json!({"stopped": false})
    );
    h.ok("delete_conversation", json!({"id": cid}));
    assert_eq!(h.err("get_conversation", json!({"id": cid})), "not_found");
}

#[test]
fn a_window_that_stops_listening_stops_the_reply_and_keeps_it() {
    let h = harness("gone", None);
    let model = h.model_id("tiny");
    h.ok(
        "update_model",
        json!({"id": model, "update": {"settings": {"max_tokens": 200, "temperature": 0}}}),
    );
    let c = h.ok(
        "create_conversation",
        json!({"request": {"model_id": model}}),
    );
    let cid = c["id"].as_str().unwrap().to_string();
    let seen = Arc::new(Mutex::new(0usize));
    let count = seen.clone();
    // the window accepts three events, then is gone
    let channel = Channel::new(move |_| {
        let mut n = count.lock().unwrap();
        *n += 1;
        if *n > 3 {
            Err(tauri::Error::WebviewNotFound)
        } else {
            Ok(())
        }
    });
    let d = h.desktop();
    let r = tauri::async_runtime::block_on(commands::send_message(
        d,
        cid.clone(),
        arg(json!({"content": "Tell me a long story"})),
        channel,
    ));
    assert_eq!(r.unwrap_err().code(), "cancelled");
    // the reply ends and what was written is saved
    let tree = wait_for("the stopped reply saved", Duration::from_secs(30), || {
        let t = h.ok("get_conversation", json!({"id": cid}));
        let last = t["messages"].as_array()?.last()?.clone();
        (last["role"] == "assistant" && last["stats"]["finish_reason"] == "cancelled").then_some(t)
    });
    let reply = tree["messages"].as_array().unwrap().last().unwrap();
    assert!(
        reply["stats"]["completion_tokens"].as_u64().unwrap() < 200,
        "{reply}"
    );
}

#[test]
fn hub_downloads_and_conversions() {
    let repos = Scratch::new("desktop-hub-root");
    copy_dir(&fixture("tiny-llama"), &repos.path().join("test-org/tiny"));
    std::fs::write(
        repos.path().join("test-org/tiny/README.md"),
        "---\nlicense: apache-2.0\n---\n# Tiny\n",
    )
    .unwrap();
    let hub = TestHub::start(repos.path(), &[]);
    let h = harness("hub", Some(&hub.url));
    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = events.clone();
    h.app.listen_any("app_event", move |e| {
        sink.lock()
            .unwrap()
            .push(serde_json::from_str(e.payload()).unwrap());
    });

    let found = h.ok("search_hub", json!({"query": {"q": "tiny"}}));
    let ids: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"test-org/tiny"), "{found}");
    let page = h.ok("get_hub_model", json!({"query": {"id": "test-org/tiny"}}));
    assert_eq!(page["id"], "test-org/tiny", "{page}");
    assert_eq!(
        h.err(
            "get_hub_model",
            json!({"query": {"id": "test-org/missing"}})
        ),
        "not_found"
    );
    assert_eq!(
        h.err("search_hub", json!({"query": {"q": 5}})),
        "invalid_input"
    );

    let d = h.ok(
        "start_download",
        json!({"request": {"repo": "test-org/tiny"}}),
    );
    let did = d["id"].as_str().unwrap().to_string();
    let done = wait_for("the download", Duration::from_secs(60), || {
        let list = h.ok("list_downloads", json!({}));
        let d = list["downloads"]
            .as_array()?
            .iter()
            .find(|d| d["id"] == did.as_str())?
            .clone();
        assert_ne!(d["state"], "failed", "{d}");
        (d["state"] == "completed").then_some(d)
    });
    assert_eq!(done["bytes_done"], done["bytes_total"], "{done}");
    assert_eq!(h.err("pause_download", json!({"id": did})), "conflict");
    assert_eq!(h.err("resume_download", json!({"id": "nope"})), "not_found");
    assert_eq!(h.err("retry_download", json!({"id": "nope"})), "not_found");
    assert_eq!(h.err("cancel_download", json!({"id": "nope"})), "not_found");
    h.ok("forget_download", json!({"id": did}));
    assert!(h.ok("list_downloads", json!({}))["downloads"]
        .as_array()
        .unwrap()
        .is_empty());
    // the downloaded model is in the library, and its progress reached the window as events
    let lib = h.ok("list_models", json!({}));
    let model = lib["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["source"]["repo"] == "test-org/tiny")
        .unwrap_or_else(|| panic!("the download is not in the library: {lib}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = events.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|e| e["type"] == "download" && e["download"]["state"] == "completed"),
        "{got:?}"
    );
    assert!(got.iter().any(|e| e["type"] == "models_changed"), "{got:?}");

    let est = h.ok(
        "estimate_conversion",
        json!({"options": {"model_id": model, "bits": 4, "group_size": 32}}),
    );
    assert!(est["output_bytes"].as_u64().unwrap() > 0, "{est}");
    assert_eq!(
        h.err(
            "estimate_conversion",
            json!({"options": {"model_id": model, "bits": 7}})
        ),
        "invalid_input"
    );
    let conv = h.ok(
        "start_conversion",
        json!({"request": {"model_id": model, "bits": 4, "group_size": 32, "name": "tiny-4bit"}}),
    );
    let cid = conv["id"].as_str().unwrap().to_string();
    wait_for("the conversion", Duration::from_secs(120), || {
        let list = h.ok("list_conversions", json!({}));
        let c = list["conversions"]
            .as_array()?
            .iter()
            .find(|c| c["id"] == cid.as_str())?
            .clone();
        assert_ne!(c["state"], "failed", "{c}");
        (c["state"] == "completed").then_some(c)
    });
    h.model_id("tiny-4bit");
    assert_eq!(
        h.err("cancel_conversion", json!({"id": "nope"})),
        "not_found"
    );
}

#[test]
fn an_unreachable_hub_is_a_typed_error() {
    let h = harness("offline", None);
    assert_eq!(
        h.err("search_hub", json!({"query": {"q": "llama"}})),
        "hub_unreachable"
    );
    assert_eq!(
        h.err("get_hub_model", json!({"query": {"id": "org/model"}})),
        "hub_unreachable"
    );
}

#[test]
fn links_open_only_when_they_are_web_links() {
    let h = harness("links", None);
    for url in [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "tauri://localhost/x",
        "nonsense",
    ] {
        assert_eq!(
            h.err("open_link", json!({"url": url})),
            "invalid_input",
            "{url}"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /health on 127.0.0.1:port: the status line, or None when nothing answers.
fn health(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().next().map(str::to_string)
}

#[test]
fn the_local_api_server_switch() {
    let h = harness("api", None);
    let s = h.ok("get_api_server", json!({}));
    assert_eq!(
        s,
        json!({"enabled": false, "port": 8080, "allow_lan": false, "api_key": null, "running": false, "url": null})
    );

    let port = free_port();
    let s = h.ok(
        "set_api_server",
        json!({"update": {"enabled": true, "port": port}}),
    );
    assert_eq!(s["running"], true);
    assert_eq!(s["url"], format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(health(port).as_deref(), Some("HTTP/1.1 200 OK"));

    // a port another program holds: a conflict, and the old server keeps nothing half-started
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    assert_eq!(
        h.err("set_api_server", json!({"update": {"port": taken_port}})),
        "conflict"
    );
    assert_eq!(h.ok("get_api_server", json!({}))["running"], false);
    drop(taken);
    assert_eq!(
        h.err("set_api_server", json!({"update": {"port": 0}})),
        "invalid_input"
    );
    assert_eq!(
        h.err("set_api_server", json!({"update": {"api_key": "short"}})),
        "invalid_input"
    );
    assert_eq!(
        h.err("set_api_server", json!({"update": {"host": "0.0.0.0"}})),
        "invalid_input"
    );

    // the network needs a key: one is made
    let s = h.ok(
        "set_api_server",
        json!({"update": {"enabled": true, "port": port, "allow_lan": true}}),
    );
    assert_eq!(s["running"], true, "{s}");
    let key = s["api_key"].as_str().unwrap().to_string();
    assert!(key.len() >= 32, "{key}");
    let s = h.ok("set_api_server", json!({"update": {"allow_lan": false}}));
    assert_eq!(s["url"], format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(s["api_key"], key.as_str(), "the key stays until removed");
    let s = h.ok("set_api_server", json!({"update": {"enabled": false}}));
    assert_eq!(s["running"], false);
    assert_eq!(health(port), None, "stopped means the port is closed");
    h.ok("set_api_server", json!({"update": {"enabled": true}}));
    tauri::async_runtime::block_on(h.desktop().shutdown());
    assert_eq!(health(port), None);

    // the stored choice comes back at the next start over the same home
    let Harness { app, window, home } = h;
    drop(window);
    drop(app);
    let h2 = harness_in(home, None);
    let s = h2.ok("get_api_server", json!({}));
    assert_eq!(s["running"], true, "{s}");
    assert_eq!(health(port).as_deref(), Some("HTTP/1.1 200 OK"));
    tauri::async_runtime::block_on(h2.desktop().shutdown());
}
