//! What several crates' integration tests need (dev-dependency only): the workspace root, the
//! test interpreter, scratch folders removed on drop, the generated fixtures, and the local
//! Hugging Face test hub (tests/hub/server.py) run as a child process killed on drop.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter for the test hub and reference tools: CORTEX_TEST_PYTHON, else the project
/// venv, else python3.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CORTEX_TEST_PYTHON") {
        return p.into();
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// A scratch folder under the system temp dir, unique per process and call, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cortex-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the files (not subfolders) of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A generated fixture model folder (tests/fixtures/generated/NAME); fails with the command
/// that makes them when they are missing.
pub fn fixture(name: &str) -> PathBuf {
    let dir = workspace_root().join("tests/fixtures/generated").join(name);
    assert!(
        dir.join("config.json").exists(),
        "test fixture {name} missing: run `PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh`"
    );
    dir
}

/// The local Hugging Face test hub serving the repos under `root` (`org/name/<files>`).
pub struct TestHub {
    child: Child,
    pub url: String,
}

impl TestHub {
    /// Starts tests/hub/server.py on a free loopback port (plus `extra` arguments) and waits
    /// for its `LISTENING <url>` line.
    pub fn start(root: &Path, extra: &[&str]) -> TestHub {
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/hub/server.py"))
            .args(["--root", root.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/hub/server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = match line.trim().strip_prefix("LISTENING ") {
            Some(u) => u.to_string(),
            None => {
                let _ = child.kill();
                panic!("tests/hub/server.py did not start: {line:?}");
            }
        };
        TestHub { child, url }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
