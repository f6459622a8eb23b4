//! Tensor files: safetensors (lazy: data is read when first evaluated) and GGUF tensors
//! (quantized types come back in MLX's affine form: `.weight`, `.scales`, `.biases`).
use crate::array::Array;
use crate::error::{mlx_err, Error, Result};
use crate::ffi::bridge;
use crate::ops::from_list;
use std::collections::BTreeMap;
use std::path::Path;

fn path_str(op: &'static str, path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidArgument {
            op,
            message: format!("path is not valid UTF-8: {}", path.display()),
        })
}

pub struct SafetensorsFile {
    pub tensors: BTreeMap<String, Array>,
    pub metadata: BTreeMap<String, String>,
}

pub fn load_safetensors(path: &Path) -> Result<SafetensorsFile> {
    let p = path_str("load_safetensors", path)?;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let list = bridge::load_safetensors(&p, &mut keys, &mut values)
        .map_err(mlx_err("load_safetensors"))?;
    let tensors = from_list("load_safetensors", &list)?.into_iter().collect();
    let metadata = keys.into_iter().zip(values).collect();
    Ok(SafetensorsFile { tensors, metadata })
}

/// Writes `tensors` (evaluating them) with string metadata such as {"format": "mlx"}.
pub fn save_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, Array>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let p = path_str("save_safetensors", path)?;
    let mut list = bridge::list_new();
    for (name, a) in tensors {
        bridge::list_push(list.pin_mut(), &a.0, name);
    }
    let keys: Vec<String> = metadata.keys().cloned().collect();
    let values: Vec<String> = metadata.values().cloned().collect();
    bridge::save_safetensors(&p, &list, &keys, &values).map_err(mlx_err("save_safetensors"))
}

/// Loads every tensor of a GGUF file. Metadata is read separately (cortex-tokenizer's gguf
/// reader), so this only returns tensors.
pub fn load_gguf(path: &Path) -> Result<BTreeMap<String, Array>> {
    let p = path_str("load_gguf", path)?;
    let list = bridge::load_gguf(&p).map_err(mlx_err("load_gguf"))?;
    Ok(from_list("load_gguf", &list)?.into_iter().collect())
}
