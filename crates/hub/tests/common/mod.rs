//! Helpers shared by the hub crate's integration tests.
#![allow(dead_code)]
use std::path::Path;

pub use cortex_testkit::{python, workspace_root as workspace};

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
