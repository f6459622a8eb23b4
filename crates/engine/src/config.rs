//! Reading config.json: Hugging Face field names, plus the "quantization" block MLX format adds.
use crate::error::{EngineError, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A parsed config.json and where it came from (for error messages).
#[derive(Clone, Debug)]
pub struct RawConfig {
    pub path: PathBuf,
    pub value: Value,
}

impl RawConfig {
    pub fn read(dir: &Path) -> Result<RawConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(EngineError::io(&path))?;
        let value = serde_json::from_str(&text).map_err(|e| EngineError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(RawConfig { path, value })
    }

    pub fn model_type(&self) -> Result<String> {
        self.value
            .get("model_type")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| EngineError::Config {
                path: self.path.clone(),
                detail: "no \"model_type\" field".into(),
            })
    }

    /// The dtype the checkpoint was saved in (`torch_dtype`, or `dtype` in newer configs).
    pub fn checkpoint_dtype(&self) -> Option<cortex_mlx::Dtype> {
        checkpoint_dtype(&self.value)
    }

    /// Deserializes the architecture's typed config, naming the file on failure.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.value.clone()).map_err(|e| EngineError::Config {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    pub fn quantization(&self) -> Result<Option<QuantizationConfig>> {
        let block = self
            .value
            .get("quantization")
            .or_else(|| self.value.get("quantization_config"));
        match block {
            None | Some(Value::Null) => Ok(None),
            Some(v) => QuantizationConfig::from_value(v)
                .map(Some)
                .map_err(|detail| EngineError::Config {
                    path: self.path.clone(),
                    detail,
                }),
        }
    }
}

/// MLX's affine quantization: a default (group_size, bits) and per-module overrides
/// (a module path mapped to its own parameters, or `false` for "left in full precision").
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizationConfig {
    pub group_size: i32,
    pub bits: i32,
    pub overrides: Vec<(String, Option<(i32, i32)>)>,
}

impl QuantizationConfig {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let obj = v.as_object().ok_or("\"quantization\" must be an object")?;
        let int = |o: &serde_json::Map<String, Value>, k: &str| {
            o.get(k).and_then(Value::as_i64).map(|x| x as i32)
        };
        let group_size = int(obj, "group_size").ok_or("quantization.group_size missing")?;
        let bits = int(obj, "bits").ok_or("quantization.bits missing")?;
        if let Some(mode) = obj.get("mode").and_then(Value::as_str) {
            if mode != "affine" {
                return Err(format!(
                    "quantization mode {mode:?} is not supported (only \"affine\")"
                ));
            }
        }
        check_params(group_size, bits)?;
        let mut overrides = Vec::new();
        for (k, val) in obj {
            match val {
                Value::Object(o) => {
                    let g = int(o, "group_size").unwrap_or(group_size);
                    let b = int(o, "bits").unwrap_or(bits);
                    check_params(g, b)?;
                    overrides.push((k.clone(), Some((g, b))));
                }
                Value::Bool(false) => overrides.push((k.clone(), None)),
                _ => {}
            }
        }
        Ok(QuantizationConfig {
            group_size,
            bits,
            overrides,
        })
    }

    /// (group_size, bits) for the module at `path`.
    pub fn params_for(&self, path: &str) -> (i32, i32) {
        self.overrides
            .iter()
            .find(|(k, _)| k == path)
            .and_then(|(_, p)| *p)
            .unwrap_or((self.group_size, self.bits))
    }

    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("group_size".into(), self.group_size.into());
        m.insert("bits".into(), self.bits.into());
        m.insert("mode".into(), "affine".into());
        for (k, p) in &self.overrides {
            let v = match p {
                Some((g, b)) => serde_json::json!({ "group_size": g, "bits": b }),
                None => Value::Bool(false),
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    }
}

pub fn check_params(group_size: i32, bits: i32) -> std::result::Result<(), String> {
    if ![32, 64, 128].contains(&group_size) {
        return Err(format!(
            "quantization group_size {group_size} not supported (32, 64 or 128)"
        ));
    }
    if !(2..=8).contains(&bits) || bits == 7 {
        return Err(format!(
            "quantization bits {bits} not supported (2, 3, 4, 5, 6 or 8)"
        ));
    }
    Ok(())
}

/// rope_scaling as Hugging Face writes it (`type` or `rope_type`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    pub factor: Option<f32>,
    pub low_freq_factor: Option<f32>,
    pub high_freq_factor: Option<f32>,
    pub original_max_position_embeddings: Option<f32>,
}

/// [`RawConfig::checkpoint_dtype`] of a config.json value (a hub model's, before download).
pub fn checkpoint_dtype(config: &Value) -> Option<cortex_mlx::Dtype> {
    config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .or_else(|| config.get("text_config").and_then(|t| t.get("torch_dtype")))
        .and_then(Value::as_str)
        .and_then(cortex_mlx::Dtype::parse)
}
