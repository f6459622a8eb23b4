//! The non-tensor files of an MLX model folder: config.json, the safetensors index, the
//! tokenizer/template/generation files copied from the source, and the README model card.
use super::plan::Plan;
use super::{ConvertOptions, QuantizeOptions, WeightMap};
use crate::error::{ConvertError, Result};
use cortex_engine::config::QuantizationConfig;
use cortex_mlx::Dtype;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;

/// Files copied verbatim when present (tokenizers, templates, generation defaults).
const SIDE_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "tiktoken.model",
    "chat_template.json",
    "chat_template.jinja",
    "generation_config.json",
];
/// Extensions copied too (extra templates, tiktoken vocabularies).
const SIDE_EXTENSIONS: &[&str] = &["jinja", "tiktoken"];

/// JSON with 4-space indentation, as Python's `json.dump(..., indent=4)` writes it.
fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .map_err(|e| ConvertError::io(path)(std::io::Error::other(e)))?;
    std::fs::write(path, buf).map_err(ConvertError::io(path))
}

pub fn write_index(out: &Path, plan: &Plan, weight_map: &WeightMap) -> Result<()> {
    let index = json!({
        "metadata": {
            "total_size": plan.total_bytes(),
            "total_parameters": plan.parameters,
        },
        "weight_map": weight_map,
    });
    write_json(&out.join("model.safetensors.index.json"), &index)
}

/// The source config as mlx_lm saves it: sorted keys, `_name_or_path` and `vision_config`
/// dropped, `eos_token_id` taken from generation_config.json when that sets one, and the
/// quantization block under both `quantization` and `quantization_config`.
pub fn write_config(
    src: &Path,
    out: &Path,
    config: &Value,
    quantize: Option<QuantizeOptions>,
) -> Result<()> {
    let mut obj = config.as_object().cloned().unwrap_or_default();
    obj.remove("_name_or_path");
    obj.remove("vision_config");
    if let Some(eos) = generation_eos(src) {
        obj.insert("eos_token_id".into(), eos);
    }
    if let Some(q) = quantize {
        let block = QuantizationConfig {
            group_size: q.group_size,
            bits: q.bits,
            overrides: Vec::new(),
        }
        .to_value();
        obj.insert("quantization".into(), block.clone());
        obj.insert("quantization_config".into(), block);
    }
    let sorted: std::collections::BTreeMap<String, Value> = obj.into_iter().collect();
    write_json(&out.join("config.json"), &json!(sorted))
}

/// generation_config.json's eos_token_id when it is set and truthy (mlx_lm's rule).
fn generation_eos(src: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(src.join("generation_config.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let eos = v.get("eos_token_id")?;
    let truthy = match eos {
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    truthy.then(|| eos.clone())
}

pub fn copy_side_files(src: &Path, out: &Path) -> Result<()> {
    let entries = std::fs::read_dir(src).map_err(ConvertError::io(src))?;
    for entry in entries {
        let path = entry.map_err(ConvertError::io(src))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let by_ext = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| SIDE_EXTENSIONS.contains(&e));
        if path.is_file() && (SIDE_FILES.contains(&name) || by_ext) {
            let to = out.join(name);
            std::fs::copy(&path, &to).map_err(ConvertError::io(&to))?;
        }
    }
    Ok(())
}

pub fn write_model_card(
    out: &Path,
    src: &Path,
    opts: &ConvertOptions,
    dtype: Option<Dtype>,
) -> Result<()> {
    let source = opts.base_model.clone().unwrap_or_else(|| {
        src.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut card =
        String::from("---\nlibrary_name: mlx\npipeline_tag: text-generation\ntags:\n- mlx\n");
    if let Some(base) = &opts.base_model {
        card.push_str(&format!("base_model: {base}\n"));
    }
    card.push_str("---\n\n");
    let what = match opts.quantize {
        Some(q) => format!(
            "{}-bit affine quantization, group size {}",
            q.bits, q.group_size
        ),
        None => "no quantization".to_string(),
    };
    let dtype = dtype.map_or_else(|| "source dtypes".to_string(), |d| d.to_string());
    card.push_str(&format!(
        "# {source} (MLX)\n\nConverted to MLX format by CortexStream from `{source}`: {what}, \
         {dtype} tensors.\n"
    ));
    let path = out.join("README.md");
    std::fs::write(&path, card).map_err(ConvertError::io(&path))
}
