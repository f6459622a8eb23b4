//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// tests/fixtures/generated, made by tests/fixtures/make_all.sh. Missing fixtures fail the
/// test with the command that makes them (never a silent pass).
pub fn fixtures() -> PathBuf {
    let dir = root().join("tests/fixtures/generated");
    assert!(
        dir.join("manifest.json").exists(),
        "test fixtures missing: run `PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh` (scripts/test.sh does)"
    );
    dir
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cortex-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
