//! Finding models on disk and deleting them: the models folder (one folder per model) and the
//! shared Hugging Face cache (one snapshot per model). Plain std + serde_json: no network, no
//! database, no MLX. Reads only config.json, the index and safetensors headers, never tensor data.
//!
//! Deletion never leaves the root it is given: a path that resolves outside it (through `..` or a
//! symlink) is refused, and symlinks inside are removed, never followed.

mod fs;
mod hf_cache;
mod safetensors;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use fs::delete_model_dir;
pub use hf_cache::{delete_hf_snapshot, scan_hf_cache};

use crate::error::{CatalogError, Result};
use crate::models::{ModelFormat, ModelInfo, ModelSource, NewModel, Quantization};
use safetensors::QuantConfig;

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanResult {
    /// Complete models, ordered by path.
    pub models: Vec<NewModel>,
    /// Folders that look like models but cannot be used, with the reason.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// How deep under the models folder a model folder may sit (`name/` or `org/name/`, plus one).
const MAX_DEPTH: usize = 3;

/// Every model folder under `dir`: a folder holding config.json and complete safetensors weights.
/// Hidden folders (work in progress) and symlinked folders are not entered. A missing `dir` holds
/// no models.
pub fn scan_models_dir(dir: &Path) -> Result<ScanResult> {
    let mut result = ScanResult::default();
    if !dir.is_dir() {
        return Ok(result);
    }
    walk(dir, dir, 1, &mut result)?;
    Ok(result)
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut ScanResult) -> Result<()> {
    for path in fs::sorted_entries(dir)? {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| CatalogError::io(&path, e))?;
        if hidden || !meta.is_dir() {
            continue;
        }
        if !path.join("config.json").is_file() {
            if depth < MAX_DEPTH {
                walk(root, &path, depth + 1, out)?;
            }
            continue;
        }
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let size = fs::dir_size(&path);
        match size.and_then(|size| read_model_info(&path, size)) {
            Ok(info) => out.models.push(NewModel {
                name,
                source: ModelSource::Folder {
                    path: path.to_string_lossy().into_owned(),
                },
                path,
                info,
            }),
            Err(e) => out.skipped.push(Skipped {
                path,
                reason: e.to_string(),
            }),
        }
    }
    Ok(())
}

/// What config.json and the safetensors headers of the model folder `dir` say; `size_bytes` is
/// measured by the caller (a snapshot's size is its blobs'). Fails if the weights are missing or
/// incomplete: no .safetensors file, or a shard the index names is absent.
pub fn read_model_info(dir: &Path, size_bytes: u64) -> Result<ModelInfo> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| CatalogError::io(&config_path, e))?;
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        CatalogError::invalid("config.json", format!("{}: {e}", config_path.display()))
    })?;
    if !config.is_object() {
        return Err(CatalogError::invalid("config.json", "not a JSON object"));
    }

    let weights = weight_files(dir)?;
    let headers = weights
        .iter()
        .map(|p| safetensors::read_header(p))
        .collect::<Result<Vec<_>>>()?;
    let quant = QuantConfig::from_config(&config);
    let mlx_tagged = headers
        .iter()
        .any(|h| h.metadata.get("format").is_some_and(|f| f == "mlx"));
    let str_field = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(ModelInfo {
        format: if mlx_tagged || quant.is_some() {
            ModelFormat::Mlx
        } else {
            ModelFormat::Safetensors
        },
        architecture: str_field("model_type"),
        parameters: safetensors::count_parameters(&headers, quant.as_ref()),
        quantization: quant.as_ref().map(|q| Quantization {
            bits: q.bits,
            group_size: q.group_size,
        }),
        dtype: str_field("torch_dtype")
            .or_else(|| str_field("dtype"))
            .or_else(|| safetensors::dominant_float_dtype(&headers)),
        size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
    })
}

/// The .safetensors files of a model folder, checked against model.safetensors.index.json when
/// there is one (a download in progress has some shards and not others).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let weights: Vec<PathBuf> = fs::sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
        .collect();
    if weights.is_empty() {
        return Err(CatalogError::invalid(
            "model folder",
            format!("{}: no .safetensors weights", dir.display()),
        ));
    }
    let index_path = dir.join("model.safetensors.index.json");
    if let Ok(text) = std::fs::read_to_string(&index_path) {
        let index: Value = serde_json::from_str(&text).map_err(|e| {
            CatalogError::invalid(
                "safetensors index",
                format!("{}: {e}", index_path.display()),
            )
        })?;
        let shards = index
            .get("weight_map")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.values());
        for shard in shards.filter_map(Value::as_str) {
            let shard_path = dir.join(shard);
            if !shard_path.is_file() {
                return Err(CatalogError::invalid(
                    "model folder",
                    format!("{}: shard {shard} is missing", dir.display()),
                ));
            }
        }
    }
    Ok(weights)
}
