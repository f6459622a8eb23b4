//! The downloader against the local test hub (tests/hub/server.py): layout, reuse, resume,
//! faults, gated repos; and against a tiny in-process server for a hostile tree listing.
use cortex_hub::download::{
    cached_snapshot, download, DownloadError, DownloadEvent, DownloadOptions, HubConfig,
};
use cortex_hub::HubModel;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use cortex_testkit::python;

/// Deterministic pseudo-random bytes (xorshift), so corruption and ranges are visible.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A valid safetensors file of about `n` bytes (one U8 tensor of pseudo-random data).
fn safetensors(n: usize, seed: u64) -> Vec<u8> {
    let data = bytes(n, seed);
    let header = json!({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const WEIGHTS: usize = 3 * 1024 * 1024 + 77;
const BIG: usize = 5 * 1024 * 1024 + 4321;

/// The fixture repositories, written into `root`.
fn make_repos(root: &Path) {
    let m = root.join("t/m");
    std::fs::create_dir_all(m.join("sub")).unwrap();
    std::fs::write(m.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(m.join("tokenizer.json"), br#"{"version": "1.0"}"#).unwrap();
    std::fs::write(m.join("sub/extra.json"), b"{}").unwrap();
    std::fs::write(m.join("README.md"), b"# not downloaded by default\n").unwrap();
    std::fs::write(m.join("model.safetensors"), safetensors(WEIGHTS, 1)).unwrap();
    std::fs::write(m.join("big.safetensors"), safetensors(BIG, 2)).unwrap();
    let g = root.join("t/gated");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join(".hub.json"), br#"{"gated": "manual"}"#).unwrap();
    std::fs::write(g.join("config.json"), b"{}").unwrap();
    std::fs::write(g.join("model.safetensors"), safetensors(1000, 3)).unwrap();
}

struct Hub {
    /// Killed on drop, before `root` goes.
    _server: cortex_testkit::TestHub,
    url: String,
    root: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Hub {
    fn start() -> Hub {
        let root = tempfile::tempdir().unwrap();
        make_repos(root.path());
        let server = cortex_testkit::TestHub::start(root.path(), &[]);
        let url = server.url.clone();
        Hub {
            _server: server,
            url,
            root,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn source(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join("t/m").join(path)).unwrap()
    }

    fn faults(&self, faults: Value) {
        let r = self
            .http
            .post(format!("{}/_faults", self.url))
            .json(&faults)
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }

    fn log(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_log", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn clear_log(&self) {
        self.http
            .delete(format!("{}/_log", self.url))
            .send()
            .unwrap();
    }

    /// GETs that transferred file content (resolve or CDN).
    fn file_gets(&self, needle: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|e| {
                e["method"] == "GET" && e["path"].as_str().is_some_and(|p| p.contains(needle))
            })
            .filter(|e| {
                e["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/resolve/") || p.starts_with("/cdn/"))
            })
            .collect()
    }

    fn opts(&self, cache: &Path) -> DownloadOptions {
        DownloadOptions {
            config: HubConfig {
                endpoint: self.url.clone(),
                token: None,
                cache_dir: cache.to_path_buf(),
            },
            chunk_threshold: 1 << 20,
            stall_timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(20),
            disk_margin: 0,
            ..Default::default()
        }
    }
}

fn pull(
    opts: &DownloadOptions,
) -> (
    Result<cortex_hub::download::Snapshot, DownloadError>,
    Vec<DownloadEvent>,
) {
    let events = Mutex::new(Vec::new());
    let sink = |e: DownloadEvent| events.lock().unwrap().push(e);
    let r = download(
        &HubModel::new("t", "m"),
        opts,
        &AtomicBool::new(false),
        &sink,
    );
    (r, events.into_inner().unwrap())
}

fn assert_identical(hub: &Hub, snap: &Path) {
    for f in [
        "config.json",
        "tokenizer.json",
        "sub/extra.json",
        "model.safetensors",
        "big.safetensors",
    ] {
        let got = std::fs::read(snap.join(f)).unwrap();
        assert!(got == hub.source(f), "{f} differs");
    }
}

/// A download that failed verification left no blob and no snapshot behind.
fn nothing_published(cache: &Path) {
    let repo = cache.join("models--t--m");
    assert_eq!(
        std::fs::read_dir(repo.join("blobs")).unwrap().count(),
        0,
        "nothing left in blobs"
    );
    assert!(!repo.join("snapshots").exists());
}

fn no_partials(cache: &Path) {
    let blobs = cache.join("models--t--m/blobs");
    for e in std::fs::read_dir(blobs).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains(".incomplete"), "left over {name}");
    }
}

#[test]
fn full_download_then_second_pull_fetches_nothing() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let opts = hub.opts(cache.path());
    let (snap, events) = pull(&opts);
    let snap = snap.unwrap();
    assert_identical(&hub, &snap.path);
    assert!(
        !snap.path.join("README.md").exists(),
        "README is not a model file"
    );
    let repo = cache.path().join("models--t--m");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        snap.commit
    );
    let link = std::fs::read_link(snap.path.join("sub/extra.json")).unwrap();
    assert!(link.starts_with("../../../blobs"), "{link:?}");
    let link = std::fs::read_link(snap.path.join("model.safetensors")).unwrap();
    assert_eq!(
        link,
        PathBuf::from("../../blobs").join(sha256(&hub.source("model.safetensors")))
    );
    no_partials(cache.path());
    assert!(events
        .iter()
        .any(|e| matches!(e, DownloadEvent::Progress(p) if p.total_done == p.total)));
    assert!(events
        .iter()
        .any(|e| matches!(e, DownloadEvent::Finished { .. })));
    // The big file came as several ranges.
    let big: Vec<_> = hub
        .file_gets("big.safetensors")
        .into_iter()
        .filter(|e| e["path"].as_str().unwrap().starts_with("/cdn/"))
        .collect();
    assert!(big.len() >= 2, "{big:?}");

    hub.clear_log();
    let (again, _) = pull(&opts);
    let again = again.unwrap();
    assert_eq!(again.fetched_bytes, 0);
    assert!(
        hub.file_gets("").is_empty(),
        "second pull fetched files: {:?}",
        hub.file_gets("")
    );
}

#[test]
fn resume_fetches_only_the_missing_range() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let data = hub.source("model.safetensors");
    let blobs = cache.path().join("models--t--m/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let have = 1_000_000;
    std::fs::write(
        blobs.join(format!("{}.incomplete", sha256(&data))),
        &data[..have],
    )
    .unwrap();
    let mut opts = hub.opts(cache.path());
    opts.chunk_threshold = u64::MAX;
    opts.include = vec!["model.safetensors".into()];
    let snap = pull(&opts).0.unwrap();
    assert_eq!(
        std::fs::read(snap.path.join("model.safetensors")).unwrap(),
        data
    );
    assert_eq!(snap.fetched_bytes, (data.len() - have) as u64);
    let gets = hub.file_gets("model.safetensors");
    assert!(!gets.is_empty());
    for g in &gets {
        assert_eq!(
            g["range"],
            json!(format!("bytes={}-{}", have, data.len() - 1)),
            "{g}"
        );
    }
    no_partials(cache.path());
}

#[test]
fn faults_end_in_complete_verified_files() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.faults(json!([
        {"path_glob": "/cdn/*model.safetensors", "kind": "drop_after", "bytes": 100000, "times": 2},
        {"path_glob": "*/resolve/*/config.json", "kind": "status", "status": 500, "times": 2},
        {"path_glob": "*/resolve/*/tokenizer.json", "kind": "status", "status": 503, "times": 1},
        {"path_glob": "*/resolve/*/sub/extra.json", "kind": "stall", "bytes": 1, "seconds": 3, "times": 1},
        {"path_glob": "/cdn/*big.safetensors", "kind": "corrupt", "bytes": 3, "offset": 5, "times": 1},
    ]));
    let opts = hub.opts(cache.path());
    let (snap, events) = pull(&opts);
    let snap = snap.unwrap();
    assert_identical(&hub, &snap.path);
    no_partials(cache.path());
    let retried = |p: &str| {
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Retrying { path, .. } if path == p))
    };
    assert!(
        retried("model.safetensors")
            && retried("config.json")
            && retried("tokenizer.json")
            && retried("sub/extra.json")
    );
    assert!(events.iter().any(
        |e| matches!(e, DownloadEvent::ChecksumFailed { path, .. } if path == "big.safetensors")
    ));
    let faults: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|e| !e["fault"].is_null())
        .collect();
    // The stalled request is logged only once the server finishes sleeping, after we moved on.
    assert!(faults.len() >= 6, "{faults:?}");
}

#[test]
fn persistent_corruption_is_never_exposed() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.faults(json!([{"path_glob": "/cdn/*model.safetensors", "kind": "corrupt", "times": -1}]));
    let mut opts = hub.opts(cache.path());
    opts.include = vec!["model.safetensors".into()];
    let err = pull(&opts).0.unwrap_err();
    assert!(
        matches!(err, DownloadError::ChecksumMismatch { attempts: 3, .. }),
        "{err}"
    );
    nothing_published(cache.path());
}

#[test]
fn gated_repo_without_token_explains_license_and_token() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let opts = hub.opts(cache.path());
    let err = download(
        &HubModel::new("t", "gated"),
        &opts,
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, DownloadError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("license") && msg.contains("HF_TOKEN") && msg.contains("/t/gated"),
        "{msg}"
    );
    let repo = cache.path().join("models--t--gated");
    assert!(!repo.join("refs").exists() && !repo.join("snapshots").exists());
    assert_eq!(
        std::fs::read_dir(repo.join("blobs")).unwrap().count(),
        0,
        "no empty partial files"
    );
}

#[test]
fn cancelled_before_start() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let opts = hub.opts(cache.path());
    let err = download(
        &HubModel::new("t", "m"),
        &opts,
        &AtomicBool::new(true),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err:?}");
}

/// A hub that answers every request with `body`-producing rules; enough to send a hostile tree.
/// A one-route HTTP server (no extra headers, requests not kept): see [`recording_server`].
fn tiny_server(route: fn(&str) -> (u16, String)) -> String {
    recording_server(move |path| {
        let (status, body) = route(path);
        (status, String::new(), body)
    })
    .0
}

#[test]
fn tree_entry_escaping_the_cache_is_refused() {
    let url = tiny_server(|path| {
        if path.starts_with("/api/models/t/evil/revision/") {
            (
                200,
                json!({"id": "t/evil", "sha": "a".repeat(40)}).to_string(),
            )
        } else if path.starts_with("/api/models/t/evil/tree/") {
            let tree = json!([
                {"type": "file", "path": "config.json", "size": 2, "oid": "b".repeat(40)},
                {"type": "file", "path": "../../x.json", "size": 2, "oid": "c".repeat(40)},
            ]);
            (200, tree.to_string())
        } else {
            (404, "{}".into())
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        config: HubConfig {
            endpoint: url,
            token: None,
            cache_dir: cache.path().to_path_buf(),
        },
        ..Default::default()
    };
    let err = download(
        &HubModel::new("t", "evil"),
        &opts,
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, DownloadError::UnsafePath { path } if path == "../../x.json"),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn cancelled_ranged_download_resumes_each_range() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = hub.opts(cache.path());
    opts.include = vec!["big.safetensors".into()];
    opts.chunk_threshold = 1 << 20;
    // Slow the ranges down so the cancel lands mid-file.
    hub.faults(json!([{"path_glob": "/cdn/*", "kind": "stall", "bytes": 300000, "seconds": 0.5, "times": 4}]));
    let cancel = AtomicBool::new(false);
    let sink = |e: DownloadEvent| {
        if let DownloadEvent::Progress(p) = e {
            if p.file_done > 600_000 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    let err = download(&HubModel::new("t", "m"), &opts, &cancel, &sink).unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err:?}");
    let blobs = cache.path().join("models--t--m/blobs");
    let names: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".incomplete.ranges")),
        "{names:?}"
    );

    hub.clear_log();
    let (snap, _) = pull(&opts);
    let snap = snap.unwrap();
    assert_eq!(
        std::fs::read(snap.path.join("big.safetensors")).unwrap(),
        hub.source("big.safetensors")
    );
    let size = hub.source("big.safetensors").len() as u64;
    assert!(
        snap.fetched_bytes < size - 500_000,
        "resumed {} of {size}",
        snap.fetched_bytes
    );
    no_partials(cache.path());
}

/// Runs Python with HF_ENDPOINT at the test hub. huggingface_hub is part of the test venv
/// (scripts/requirements-test.txt); without it the test fails, never passes silently.
fn hf_python(hub: &Hub, code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .env("HF_ENDPOINT", &hub.url)
        .env_remove("HF_TOKEN")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'huggingface_hub'"),
        "huggingface_hub is not installed in {}: run scripts/setup-python.sh (scripts/test.sh does)",
        python().display()
    );
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn shares_the_cache_with_huggingface_hub() {
    let hub = Hub::start();
    // huggingface_hub downloads; our pull reuses every byte.
    let theirs = tempfile::tempdir().unwrap();
    let code = format!(
        "from huggingface_hub import snapshot_download\nprint(snapshot_download('t/m', cache_dir={:?}, allow_patterns=['*.json', '*.safetensors']))",
        theirs.path().to_str().unwrap()
    );
    hf_python(&hub, &code);
    hub.clear_log();
    let snap = pull(&hub.opts(theirs.path())).0.unwrap();
    assert_eq!(snap.fetched_bytes, 0);
    assert!(hub.file_gets("").is_empty(), "{:?}", hub.file_gets(""));
    assert_identical(&hub, &snap.path);

    // We download; huggingface_hub's cache scan sees a complete repo.
    let ours = tempfile::tempdir().unwrap();
    pull(&hub.opts(ours.path())).0.unwrap();
    let code = format!(
        "from huggingface_hub import scan_cache_dir\ninfo = scan_cache_dir({:?})\nassert not info.warnings, info.warnings\nr = next(iter(info.repos))\nprint(r.repo_id, r.nb_files, sorted(f.file_name for rev in r.revisions for f in rev.files))",
        ours.path().to_str().unwrap()
    );
    let out = hf_python(&hub, &code);
    assert!(out.starts_with("t/m 5 "), "{out}");
}

/// Child half of `sigkill_mid_file_then_rerun_fetches_only_the_rest`: a download run in its own
/// process so the parent can SIGKILL it mid-file. Ignored in normal runs; the parent runs it
/// with `--ignored --exact`.
#[test]
#[ignore = "child process of the SIGKILL test"]
fn sigkill_child_entry() {
    let url = std::env::var("CORTEX_KILL_TEST_URL").expect("run by the SIGKILL test");
    let cache = std::env::var("CORTEX_KILL_TEST_CACHE").expect("run by the SIGKILL test");
    let opts = DownloadOptions {
        config: HubConfig {
            endpoint: url,
            token: None,
            cache_dir: cache.into(),
        },
        chunk_threshold: u64::MAX,
        stall_timeout: Duration::from_secs(120),
        disk_margin: 0,
        include: vec!["big.safetensors".into()],
        ..Default::default()
    };
    let _ = download(
        &HubModel::new("t", "m"),
        &opts,
        &AtomicBool::new(false),
        &|_| {},
    );
}

#[test]
fn sigkill_mid_file_then_rerun_fetches_only_the_rest() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let data = hub.source("big.safetensors");
    // The server sends 2.5 MB of the file, then holds the connection long enough to kill.
    hub.faults(json!([{"path_glob": "/cdn/*", "kind": "stall", "bytes": 2_500_000, "seconds": 60, "times": 1}]));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "sigkill_child_entry", "--nocapture"])
        .env("CORTEX_KILL_TEST_URL", &hub.url)
        .env("CORTEX_KILL_TEST_CACHE", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = cache
        .path()
        .join("models--t--m/blobs")
        .join(format!("{}.incomplete", sha256(&data)));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 2_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never wrote 2 MB"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let have = std::fs::metadata(&partial).unwrap().len();
    assert!(have < data.len() as u64);
    hub.http
        .delete(format!("{}/_faults", hub.url))
        .send()
        .unwrap();
    hub.clear_log();

    let mut opts = hub.opts(cache.path());
    opts.chunk_threshold = u64::MAX;
    opts.include = vec!["big.safetensors".into()];
    let snap = pull(&opts).0.unwrap();
    assert!(
        std::fs::read(snap.path.join("big.safetensors")).unwrap() == data,
        "resumed file differs"
    );
    assert_eq!(
        snap.fetched_bytes,
        data.len() as u64 - have,
        "only the missing bytes are fetched"
    );
    for g in hub.file_gets("/cdn/") {
        assert_eq!(
            g["range"],
            json!(format!("bytes={}-{}", have, data.len() - 1)),
            "{g}"
        );
    }
    no_partials(cache.path());
}

/// With no network (connection refused, no DNS) a pull fails at once with a typed error
/// instead of waiting through every retry with backoff.
#[test]
fn unreachable_hub_fails_fast() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cache = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        config: HubConfig {
            endpoint: endpoint.clone(),
            token: None,
            cache_dir: cache.path().to_path_buf(),
        },
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = download(
        &HubModel::new("t", "m"),
        &opts,
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, DownloadError::Unreachable { endpoint: e, .. } if *e == endpoint),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let message = err.to_string();
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

/// A small (non-LFS) file is checked against its git blob id (the tree's `oid`), not only its
/// size: same-size corruption is refused and never left in `blobs/` or linked in a snapshot.
#[test]
fn small_file_not_matching_its_git_oid_is_refused() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.faults(
        json!([{"path_glob": "/t/m/resolve/*/config.json", "kind": "corrupt", "times": -1}]),
    );
    let mut opts = hub.opts(cache.path());
    opts.include = vec!["config.json".into()];
    let err = pull(&opts).0.unwrap_err();
    assert!(
        matches!(&err, DownloadError::ChecksumMismatch { path, attempts: 3, .. } if path == "config.json"),
        "{err:?}"
    );
    nothing_published(cache.path());
}

/// A server on loopback that answers with `route(path) -> (status, extra headers, body)` and
/// keeps every request it received (request line and headers).
fn recording_server(
    route: impl Fn(&str) -> (u16, String, String) + Send + 'static,
) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split(' ').nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(req);
            let (status, headers, body) = route(&path);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

/// Each page request carries the user's token, so a `Link: rel="next"` that leaves the
/// endpoint's origin is refused with a typed error and the other host gets nothing.
#[test]
fn pagination_link_to_another_origin_is_refused() {
    let (evil, evil_seen) = recording_server(|_| (200, String::new(), "[]".into()));
    let next = format!("{evil}/api/models/t/m/tree/x?cursor=1");
    let link_to = next.clone();
    let (url, _) = recording_server(move |path| {
        if path.starts_with("/api/models/t/m/revision/") {
            let info = json!({"id": "t/m", "sha": "a".repeat(40)});
            (200, String::new(), info.to_string())
        } else if path.starts_with("/api/models/t/m/tree/") {
            let tree =
                json!([{"type": "file", "path": "config.json", "size": 2, "oid": "b".repeat(40)}]);
            let link = format!("Link: <{link_to}>; rel=\"next\"\r\n");
            (200, link, tree.to_string())
        } else {
            (404, String::new(), "{}".into())
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        config: HubConfig {
            endpoint: url.clone(),
            token: Some("hf_secret_token".into()),
            cache_dir: cache.path().to_path_buf(),
        },
        max_retries: 0,
        ..Default::default()
    };
    let err = download(
        &HubModel::new("t", "m"),
        &opts,
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap_err();
    let seen = evil_seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| !r.contains("hf_secret_token")),
        "the token went to another origin: {seen:?}"
    );
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        matches!(&err, DownloadError::ForeignLink { link, endpoint } if *link == next && *endpoint == url),
        "{err:?}"
    );
}

fn revision(rev: &str) -> HubModel {
    HubModel {
        revision: Some(rev.to_string()),
        ..HubModel::new("t", "m")
    }
}

#[test]
fn a_selection_over_the_size_cap_is_refused_before_any_file_is_fetched() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = hub.opts(cache.path());
    opts.max_bytes = Some(1000);
    let (r, events) = pull(&opts);
    match r {
        Err(DownloadError::TooLarge { repo, total, limit }) => {
            assert_eq!((repo.as_str(), limit), ("t/m", 1000));
            assert!(total > 1000, "{total}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(events.is_empty(), "{events:?}");
    assert!(hub.file_gets("").is_empty(), "{:?}", hub.file_gets(""));
    assert!(cached_snapshot(&HubModel::new("t", "m"), &opts.config).is_none());

    // Under the cap it downloads, and the snapshot is then found offline.
    opts.max_bytes = Some(u64::MAX);
    let snap = pull(&opts).0.unwrap();
    let found = cached_snapshot(&HubModel::new("t", "m"), &opts.config);
    assert_eq!(found.as_deref(), Some(snap.path.as_path()));
    let pinned = revision(&snap.commit);
    assert_eq!(cached_snapshot(&pinned, &opts.config), Some(snap.path));
    // A ref that is not a commit id, or a revision that escapes refs/, finds nothing.
    std::fs::write(cache.path().join("models--t--m/refs/evil"), "../../../etc").unwrap();
    let evil = revision("evil");
    assert!(cached_snapshot(&evil, &opts.config).is_none());
    let escape = revision("../../x");
    assert!(cached_snapshot(&escape, &opts.config).is_none());
}
