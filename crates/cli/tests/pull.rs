//! `cortex pull` as a user runs it: Ctrl-C stops a download cleanly and keeps the partial file
//! for the next run to resume.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    std::env::var_os("CORTEX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn partial_len(cache: &Path) -> u64 {
    let blobs = cache.join("models--t--m/blobs");
    std::fs::read_dir(blobs)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn ctrl_c_cancels_cleanly_and_keeps_the_partial_file() {
    let tmp = std::env::temp_dir().join(format!("cortex-pull-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let repo = tmp.join("hub/t/m");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(
        repo.join("big.bin"),
        (0..3_000_000u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let mut hub = Command::new(python())
        .arg(root().join("tests/hub/server.py"))
        .args(["--root", tmp.join("hub").to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tests/hub/server.py");
    let mut line = String::new();
    BufReader::new(hub.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_string();
    // The hub sends 200 kB of the file, then holds the connection for 3 s.
    let faults =
        r#"[{"path_glob": "/cdn/*", "kind": "stall", "bytes": 200000, "seconds": 3, "times": 1}]"#;
    let post = format!(
        "import urllib.request; urllib.request.urlopen(urllib.request.Request('{url}/_faults', data=b'{faults}', \
         headers={{'Content-Type': 'application/json'}}, method='POST'))"
    );
    assert!(Command::new(python())
        .args(["-c", &post])
        .status()
        .unwrap()
        .success());

    let cache = tmp.join("cache");
    let child = Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args(["pull", "t/m", "--include", "big.bin"])
        .env("HF_ENDPOINT", &url)
        .env("HF_HUB_CACHE", &cache)
        .env_remove("HF_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while partial_len(&cache) < 200_000 {
        assert!(
            Instant::now() < deadline,
            "the pull never wrote its first 200 kB"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let _ = hub.kill();
    let _ = hub.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cancelled") && stderr.contains("resume"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no snapshot path is printed");
    let kept = partial_len(&cache);
    assert!(
        (200_000..3_000_000).contains(&kept),
        "partial file kept for resume: {kept} bytes"
    );
    assert!(
        !cache.join("models--t--m/snapshots").exists()
            || std::fs::read_dir(cache.join("models--t--m/snapshots"))
                .unwrap()
                .count()
                == 0
    );
    std::fs::remove_dir_all(&tmp).ok();
}
