//! Helpers shared by the hub crate's integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter for the test hub and reference tools: CORTEX_TEST_PYTHON, else the project
/// venv, else python3.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CORTEX_TEST_PYTHON") {
        return p.into();
    }
    let venv = workspace().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Starts tests/hub/server.py on `root` (plus `extra` arguments) on a free loopback port;
/// returns the process and its base URL, read from the server's `LISTENING <url>` line.
pub fn start_test_hub(root: &Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(python())
        .arg(workspace().join("tests/hub/server.py"))
        .args(["--root", root.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start tests/hub/server.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_string();
    (child, url)
}
