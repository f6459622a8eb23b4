//! Checkpoint tensors: every *.safetensors of a folder (or those named by
//! model.safetensors.index.json), loaded lazily by MLX, cast to the compute dtype, and handed
//! out to model builders as dense or affine-quantized layers.
use crate::config::QuantizationConfig;
use crate::error::{EngineError, Result};
use crate::nn::{Embedding, Linear, LinearWeight, RmsNorm};
use cortex_mlx::{Array, Dtype};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct Weights {
    tensors: BTreeMap<String, Array>,
    quant: Option<QuantizationConfig>,
    dtype: Dtype,
}

/// The safetensors files of a model folder, in a stable order: those the index's weight_map
/// names, else every *.safetensors entry. Each must be a plain name of a regular file inside
/// the folder ([`crate::safetensors::weight_file`]).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(EngineError::io(&index))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EngineError::Config {
                path: index.clone(),
                detail: e.to_string(),
            })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::Config {
                path: index.clone(),
                detail: "no \"weight_map\" object".into(),
            })?;
        let mut files = BTreeSet::new();
        for f in map.values() {
            let name = f.as_str().ok_or_else(|| EngineError::Config {
                path: index.clone(),
                detail: "a weight_map value is not a string".into(),
            })?;
            files.insert(name);
        }
        return files
            .into_iter()
            .map(|f| crate::safetensors::weight_file(dir, f, &index))
            .collect();
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(EngineError::io(dir))? {
        let entry = entry.map_err(EngineError::io(dir))?;
        let name = entry.file_name();
        let is_weights = Path::new(&name)
            .extension()
            .is_some_and(|x| x == "safetensors");
        if !is_weights {
            continue;
        }
        let name = name.to_string_lossy();
        files.push(crate::safetensors::weight_file(dir, &name, dir)?);
    }
    files.sort();
    if files.is_empty() {
        return Err(EngineError::MissingFile {
            path: dir.join("model.safetensors"),
        });
    }
    Ok(files)
}

/// Checks the header entry by entry and that the file holds every byte it promises, so a
/// truncated download or a hostile header fails here with a clear message instead of deep
/// inside MLX (see [`crate::safetensors`]).
pub fn check_safetensors(path: &Path) -> Result<()> {
    crate::safetensors::check_file(path)
}

impl Weights {
    pub fn load_dir(
        dir: &Path,
        quant: Option<QuantizationConfig>,
        dtype: Dtype,
    ) -> Result<Weights> {
        let mut tensors = BTreeMap::new();
        for file in safetensors_files(dir)? {
            check_safetensors(&file)?;
            tensors.extend(cortex_mlx::load_safetensors(&file)?.tensors);
        }
        Ok(Weights {
            tensors,
            quant,
            dtype,
        })
    }

    pub fn from_map(
        tensors: BTreeMap<String, Array>,
        quant: Option<QuantizationConfig>,
        dtype: Dtype,
    ) -> Weights {
        Weights {
            tensors,
            quant,
            dtype,
        }
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Renames or drops checkpoint keys (each architecture's `sanitize`).
    pub fn rename(&mut self, f: impl Fn(&str) -> Option<String>) {
        let old = std::mem::take(&mut self.tensors);
        self.tensors = old
            .into_iter()
            .filter_map(|(k, v)| f(&k).map(|n| (n, v)))
            .collect();
    }

    pub fn insert(&mut self, name: String, a: Array) {
        self.tensors.insert(name, a);
    }

    /// The raw tensor as stored.
    pub fn raw(&self, name: &str) -> Result<Array> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
            })
    }

    /// A floating-point parameter cast to the compute dtype, with its shape checked.
    pub fn param(&self, name: &str, shape: &[i32]) -> Result<Array> {
        let a = self.raw(name)?;
        expect_shape(name, &a, shape)?;
        Ok(a.astype(self.dtype)?)
    }

    fn layer_weight(&self, prefix: &str, out_dim: i32, in_dim: i32) -> Result<LinearWeight> {
        let wname = format!("{prefix}.weight");
        let sname = format!("{prefix}.scales");
        if !self.has(&sname) {
            return Ok(LinearWeight::Dense(self.param(&wname, &[out_dim, in_dim])?));
        }
        // Quantized: presence of .scales decides, per layer (see DESIGN.md). Group size and
        // bits follow from the shapes, as mlx-lm infers them; the config only confirms.
        let w = self.raw(&wname)?;
        let scales = self.raw(&sname)?;
        let (packed, groups) = (w.dim(-1), scales.dim(-1));
        let bad = |detail: String| EngineError::Config {
            path: PathBuf::from("config.json"),
            detail,
        };
        if packed == 0 || groups == 0 || in_dim % groups != 0 || (packed * 32) % in_dim != 0 {
            return Err(bad(format!(
                "{prefix}: packed width {packed} / {groups} groups do not fit input size {in_dim}"
            )));
        }
        let (group_size, bits) = (in_dim / groups, packed * 32 / in_dim);
        crate::config::check_params(group_size, bits).map_err(|e| bad(format!("{prefix}: {e}")))?;
        if let Some(q) = &self.quant {
            let (g, b) = q.params_for(prefix);
            if (g, b) != (group_size, bits) {
                tracing::debug!(
                    prefix,
                    g,
                    b,
                    group_size,
                    bits,
                    "config quantization differs from tensor shapes"
                );
            }
        }
        expect_shape(&wname, &w, &[out_dim, in_dim * bits / 32])?;
        expect_shape(&sname, &scales, &[out_dim, in_dim / group_size])?;
        let bname = format!("{prefix}.biases");
        let biases = if self.has(&bname) {
            let b = self.raw(&bname)?;
            expect_shape(&bname, &b, &[out_dim, in_dim / group_size])?;
            Some(b)
        } else {
            None
        };
        // The CPU kernels read 16-bit scales and biases as stored (a sixth fewer bytes per
        // 4-bit weight than float32 ones; decode is bound by those reads). Everything else
        // gets them in the compute dtype, as MLX's ops want them.
        let as_stored = crate::nn::cpu_kernels()
            && crate::nn::quantized_path(1, bits, group_size) == crate::nn::QuantPath::CpuGemv
            && matches!(scales.dtype(), Dtype::Float16 | Dtype::Bfloat16)
            && biases.as_ref().is_some_and(|b| b.dtype() == scales.dtype());
        // With int8 activations on a CPU with SIMD int8 kernels, also the weight repacked for
        // them (the MLX layout stays for prefill): a second copy of the weight.
        let packed = match &biases {
            Some(b)
                if crate::nn::cpu_kernels()
                    && crate::compute::current_int8_activations()
                    && crate::nn::quantized_path(1, bits, group_size)
                        == crate::nn::QuantPath::CpuGemv
                    && cortex_mlx::ops::int8_repacks() =>
            {
                cortex_mlx::ops::pack_rows16(&w, &scales, b, group_size, bits)?
            }
            _ => None,
        };
        let side =
            |a: Array| -> Result<Array> { Ok(if as_stored { a } else { a.astype(self.dtype)? }) };
        Ok(LinearWeight::Quantized {
            w,
            scales: side(scales)?,
            biases: biases.map(side).transpose()?,
            group_size,
            bits,
            dtype: self.dtype,
            packed,
        })
    }

    pub fn linear(&self, prefix: &str, in_dim: i32, out_dim: i32, bias: bool) -> Result<Linear> {
        let weight = self.layer_weight(prefix, out_dim, in_dim)?;
        let bias = if bias {
            Some(self.param(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A linear layer whose bias is used when the checkpoint has one.
    pub fn linear_opt_bias(&self, prefix: &str, in_dim: i32, out_dim: i32) -> Result<Linear> {
        let has_bias = self.has(&format!("{prefix}.bias"));
        self.linear(prefix, in_dim, out_dim, has_bias)
    }

    pub fn embedding(&self, prefix: &str, vocab: i32, dim: i32) -> Result<Embedding> {
        Ok(Embedding {
            weight: self.layer_weight(prefix, vocab, dim)?,
        })
    }

    pub fn rms_norm(&self, prefix: &str, dim: i32, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.param(&format!("{prefix}.weight"), &[dim])?,
            eps,
        })
    }
}

pub fn expect_shape(name: &str, a: &Array, shape: &[i32]) -> Result<()> {
    let actual = a.shape();
    if actual != shape {
        return Err(EngineError::ShapeMismatch {
            name: name.to_string(),
            expected: shape.to_vec(),
            actual,
        });
    }
    Ok(())
}
