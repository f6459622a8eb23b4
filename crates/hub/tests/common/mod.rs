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
