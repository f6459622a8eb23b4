//! GGUF -> MLX format. [`crate::gguf_tensors`] reads the tensors (quantized types arrive in
//! MLX's affine form, group size 32, K-quants included); we rename them to Hugging Face keys,
//! undo llama.cpp's Q/K row permutation, write config.json with a "quantization" block
//! (per-module overrides where bit widths differ), and rebuild the tokenizer and chat template
//! from the GGUF metadata.
//!
//! Output is written to a temporary sibling folder and renamed into place when complete, so an
//! interrupted import never leaves a folder that looks like a model.
//!
//! A .gguf file is untrusted input: the tensor table is checked against the file before MLX
//! maps it, and hyperparameters before anything divides by them. Each import records where it
//! came from ([`crate::provenance`]), so a later file with the same name is never taken for it.
use crate::config::QuantizationConfig;
use crate::error::{EngineError, Result};
use crate::provenance::{Match, SourceFile};
use crate::staging::StagingDir;
use cortex_mlx::{Array, Dtype};
use cortex_tokenizer::gguf::{self, GgufMetadata};
use cortex_tokenizer::Tokenizer;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// GGML tensor types the importer reads ([`crate::gguf_tensors`]).
pub use crate::gguf_tensors::SUPPORTED_TYPES;
/// The architectures the importer reads, by llama.cpp's name (`general.architecture`).
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3",
];

/// How llama.cpp's converter (convert_hf_to_gguf.py) wrote one architecture, and what the
/// Hugging Face layout our loader reads calls it.
struct Arch {
    /// `general.architecture`
    name: &'static str,
    model_type: &'static str,
    class: &'static str,
    /// llama's converter interleaves each head's rotary halves in Q and K (the others use
    /// llama.cpp's NeoX rope and leave the rows as they are).
    permuted_qk: bool,
    /// Gemma's converter stores every RMSNorm weight w as 1 + w (llama.cpp multiplies by the
    /// stored value; Hugging Face's Gemma by 1 + w).
    norm_plus_one: bool,
    /// Gemma 2/3's four norms per layer: llama.cpp's ffn_norm is the pre-feed-forward norm
    /// there, and attn_post_norm the post-attention one.
    sandwich_norms: bool,
    /// Phi-3's ffn_up holds [gate; up] (Hugging Face's gate_up_proj).
    fused_gate_up: bool,
}

/// What most architectures are: none of the above.
const PLAIN: Arch = Arch {
    name: "",
    model_type: "",
    class: "",
    permuted_qk: false,
    norm_plus_one: false,
    sandwich_norms: false,
    fused_gate_up: false,
};

const ARCHS: &[Arch] = &[
    Arch {
        name: "llama",
        model_type: "llama",
        class: "LlamaForCausalLM",
        permuted_qk: true,
        ..PLAIN
    },
    Arch {
        name: "qwen2",
        model_type: "qwen2",
        class: "Qwen2ForCausalLM",
        ..PLAIN
    },
    Arch {
        name: "qwen3",
        model_type: "qwen3",
        class: "Qwen3ForCausalLM",
        ..PLAIN
    },
    Arch {
        name: "phi3",
        model_type: "phi3",
        class: "Phi3ForCausalLM",
        fused_gate_up: true,
        ..PLAIN
    },
    Arch {
        name: "gemma",
        model_type: "gemma",
        class: "GemmaForCausalLM",
        norm_plus_one: true,
        ..PLAIN
    },
    Arch {
        name: "gemma2",
        model_type: "gemma2",
        class: "Gemma2ForCausalLM",
        norm_plus_one: true,
        sandwich_norms: true,
        ..PLAIN
    },
    Arch {
        name: "gemma3",
        model_type: "gemma3_text",
        class: "Gemma3ForCausalLM",
        norm_plus_one: true,
        sandwich_norms: true,
        ..PLAIN
    },
];

fn ggml_type_name(t: u32) -> String {
    let names = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    names
        .get(t as usize)
        .map_or_else(|| format!("type {t}"), |s| s.to_string())
}

/// Hyperparameters read from `{arch}.*` keys.
struct Hparams {
    layers: u32,
    hidden: u32,
    ffn: u32,
    heads: u32,
    kv_heads: u32,
    eps: f32,
    theta: f32,
    ctx: u32,
    head_dim: u32,
    /// rotary dimensions per head (`rope.dimension_count`; Phi-3 may rotate only part)
    rope_dims: u32,
}

fn hparams(meta: &GgufMetadata, arch: &str) -> Result<Hparams> {
    let key = |k: &str| format!("{arch}.{k}");
    let invalid = |k: &str, requirement| EngineError::GgufHyperparameter {
        key: key(k),
        requirement,
    };
    // Every size is a positive int32 (MLX shapes): nothing below divides by zero or overflows.
    let size = |k: &str, v: u32| {
        if v == 0 || v > i32::MAX as u32 {
            Err(invalid(k, "a positive 32-bit size"))
        } else {
            Ok(v)
        }
    };
    let need = |k: &str| {
        let v = meta
            .get_u32(&key(k))
            .map_err(|e| EngineError::Gguf(e.to_string()))?;
        size(k, v)
    };
    let opt_u32 = |k: &str| {
        meta.opt_u32(&key(k))
            .map_err(|e| EngineError::Gguf(e.to_string()))
    };
    let opt_f32 = |k: &str| meta.get_f32(&key(k)).ok();
    let heads = need("attention.head_count")?;
    let hidden = need("embedding_length")?;
    let kv_heads = match opt_u32("attention.head_count_kv")? {
        Some(v) => size("attention.head_count_kv", v)?,
        None => heads,
    };
    if heads % kv_heads != 0 {
        return Err(invalid(
            "attention.head_count",
            "a multiple of attention.head_count_kv",
        ));
    }
    let head_dim = match opt_u32("attention.key_length")? {
        Some(v) => size("attention.key_length", v)?,
        None => size("attention.key_length", hidden / heads)?,
    };
    if !matches!(heads.checked_mul(head_dim), Some(n) if n <= i32::MAX as u32) {
        return Err(invalid(
            "attention.key_length",
            "small enough that head_count x key_length fits 32 bits",
        ));
    }
    let rope_dims = match opt_u32("rope.dimension_count")? {
        Some(v) if v <= head_dim => size("rope.dimension_count", v)?,
        Some(_) => {
            return Err(invalid(
                "rope.dimension_count",
                "at most attention.key_length",
            ))
        }
        None => head_dim,
    };
    Ok(Hparams {
        rope_dims,
        layers: need("block_count")?,
        hidden,
        ffn: need("feed_forward_length")?,
        heads,
        kv_heads,
        eps: opt_f32("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        theta: opt_f32("rope.freq_base").unwrap_or(10000.0),
        ctx: opt_u32("context_length")?.unwrap_or(2048),
        head_dim,
    })
}

/// llama.cpp tensor names -> Hugging Face names (None: dropped).
fn hf_name(name: &str, arch: &Arch) -> Option<String> {
    let (base, suffix) = name.rsplit_once('.')?;
    let mapped = match base {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        // rope tables, turned into config.json entries
        "rope_freqs" | "rope_factors_long" | "rope_factors_short" => base.to_string(),
        _ => {
            let rest = base.strip_prefix("blk.")?;
            let (idx, part) = rest.split_once('.')?;
            let hf = match part {
                "attn_norm" => "input_layernorm",
                "ffn_norm" if arch.sandwich_norms => "pre_feedforward_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "post_attention_norm" => "post_attention_layernorm",
                "post_ffw_norm" => "post_feedforward_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_qkv" => "self_attn.qkv_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" if arch.fused_gate_up => "mlp.gate_up_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{idx}.{hf}")
        }
    };
    Some(format!("{mapped}.{suffix}"))
}

/// Undo llama.cpp's interleaving of each head's rotary halves: rows were reordered as
/// reshape(n_head, 2, hd/2, in).swap(1, 2); applying reshape(n_head, hd/2, 2, in).swap(1, 2)
/// restores them. Quantization is per row, so packed weights, scales and biases permute alike.
fn unpermute(a: &Array, n_head: u32) -> Result<Array> {
    let (rows, cols) = (a.dim(0), a.dim(1));
    let n = n_head as i32;
    let hd = rows / n;
    Ok(a.reshape(&[n, hd / 2, 2, cols])?
        .swapaxes(1, 2)?
        .reshape(&[rows, cols])?)
}

/// What reading the tensors needs: supported types only, every tensor's data inside the file,
/// and dimensions that fit MLX's int32 shapes.
fn check_tensors(src: &Path, meta: &GgufMetadata) -> Result<()> {
    for t in &meta.tensors {
        if !SUPPORTED_TYPES.iter().any(|(id, _)| *id == t.ggml_type) {
            return Err(EngineError::UnsupportedGgufType {
                tensor: t.name.clone(),
                ggml_type: t.ggml_type,
                type_name: ggml_type_name(t.ggml_type),
            });
        }
    }
    let bad = |source| EngineError::BadGguf {
        path: src.to_path_buf(),
        source,
    };
    meta.check_tensor_data().map_err(bad)?;
    for t in &meta.tensors {
        if t.shape.iter().any(|d| *d > i32::MAX as u64) {
            return Err(bad(gguf::GgufError::BadTensor {
                name: t.name.clone(),
                detail: "has a dimension wider than 32 bits".into(),
            }));
        }
    }
    Ok(())
}

/// What an import writes, read and checked before anything is written.
struct Plan {
    meta: GgufMetadata,
    arch: &'static Arch,
    hp: Hparams,
    tokenizer: Tokenizer,
}

fn plan(src: &Path) -> Result<Plan> {
    let meta = gguf::read_metadata(src).map_err(|source| EngineError::BadGguf {
        path: src.to_path_buf(),
        source,
    })?;
    let arch = meta
        .opt_str("general.architecture")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let Some(arch) = ARCHS.iter().find(|a| a.name == arch) else {
        return Err(EngineError::UnsupportedModelType {
            model_type: format!("gguf:{arch}"),
            supported: SUPPORTED_ARCHS.iter().map(|s| s.to_string()).collect(),
        });
    };
    check_tensors(src, &meta)?;
    let hp = hparams(&meta, arch.name)?;
    let tokenizer = Tokenizer::from_gguf(&meta)?;
    Ok(Plan {
        meta,
        arch,
        hp,
        tokenizer,
    })
}

/// Writes the import of `source` into a new staging folder next to `first_choice`.
fn stage(source: &SourceFile, first_choice: &Path) -> Result<StagingDir> {
    let plan = plan(source.path())?;
    let staging = StagingDir::create(first_choice, "importing")
        .map_err(|(path, e)| EngineError::io(path)(e))?;
    write_model(source.path(), &plan, staging.path())?;
    source.record(staging.path())?;
    Ok(staging)
}

/// Imports `src` into `dest` (which must not exist yet). Returns `dest`.
pub fn import_gguf(src: &Path, dest: &Path) -> Result<PathBuf> {
    let source = SourceFile::open(src)?;
    let exists = || EngineError::InvalidRequest(format!("{} already exists", dest.display()));
    if dest.exists() {
        return Err(exists());
    }
    let staging = stage(&source, dest)?;
    staging.commit().map_err(|(path, e)| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(),
        _ => EngineError::io(path)(e),
    })
}

/// The folder under `models` holding the import of the .gguf file `src`, importing it first if
/// there is none. Folders are named after the file (`Llama.gguf` -> `Llama`), then, when that
/// name holds something else, after the file and its content hash (`Llama-1a2b3c4d`, longer
/// hashes after that); a folder is reused only if its recorded source matches `src`'s bytes.
/// Concurrent imports each stage their own folder, and one that loses the race for a name
/// takes the winner's folder if it holds the same file, else the next name.
pub fn import_or_reuse(src: &Path, models: &Path) -> Result<PathBuf> {
    let source = SourceFile::open(src)?;
    let stem = folder_stem(src);
    let name = |k: usize| -> Result<String> {
        Ok(match k {
            0 => stem.clone(),
            _ => format!("{stem}-{}", &source.sha256()?[..[8, 16, 64][k - 1]]),
        })
    };
    const CANDIDATES: usize = 4;
    let mut first_free = None;
    for k in 0..CANDIDATES {
        let dest = models.join(name(k)?);
        match source.matches(&dest)? {
            Match::Same => return Ok(dest),
            Match::Free => {
                first_free = Some(k);
                break;
            }
            Match::Other => {}
        }
    }
    let no_name = || EngineError::NoFolderName {
        src: src.to_path_buf(),
        models: models.to_path_buf(),
        tried: (0..CANDIDATES)
            .filter_map(|k| name(k).ok())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let start = first_free.ok_or_else(no_name)?;
    let mut staging = stage(&source, &models.join(name(start)?))?;
    for k in start..CANDIDATES {
        let dest = models.join(name(k)?);
        loop {
            match source.matches(&dest)? {
                Match::Same => return Ok(dest),
                Match::Other => break,
                Match::Free => match staging.commit_to(&dest) {
                    Ok(()) => return Ok(dest),
                    // Taken since we looked: see by whom.
                    Err(_) if std::fs::symlink_metadata(&dest).is_ok() => continue,
                    Err((path, e)) => return Err(EngineError::io(path)(e)),
                },
            }
        }
    }
    Err(no_name())
}

/// The folder name a .gguf file's import starts from: its stem, without leading dots (a
/// hidden folder would collide with staging folders), or "model".
fn folder_stem(src: &Path) -> String {
    let stem = src
        .file_stem()
        .map(|s| s.to_string_lossy().trim_start_matches('.').to_string())
        .unwrap_or_default();
    if stem.is_empty() {
        "model".into()
    } else {
        stem
    }
}

/// Whether float16 holds every value of `a` exactly (NaNs count as held).
fn fits_f16(a: &Array) -> Result<bool> {
    let a = a.astype(Dtype::Float32)?;
    let back = a.astype(Dtype::Float16)?.astype(Dtype::Float32)?;
    let (a, back) = (a.to_vec::<f32>()?, back.to_vec::<f32>()?);
    Ok(a.iter()
        .zip(&back)
        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())))
}

fn write_model(src: &Path, plan: &Plan, out: &Path) -> Result<()> {
    let (meta, arch, hp, tok) = (&plan.meta, plan.arch, &plan.hp, &plan.tokenizer);
    std::fs::create_dir_all(out).map_err(EngineError::io(out))?;
    // Scales, biases and norms: float16 on a GPU. On the CPU norms are float32 (MLX emulates
    // float16 there), and so are scales and biases unless float16 holds them exactly (the
    // blocks of Q4_0, Q4_1, Q8_0 store float16; k-quants multiply two scales): the CPU
    // kernels read 16-bit ones as stored, a sixth fewer bytes per 4-bit weight.
    let gpu = cortex_mlx::default_device_is_gpu();
    let side_dtype = if gpu { Dtype::Float16 } else { Dtype::Float32 };
    let mut tensors = BTreeMap::new();
    let mut bits_of: BTreeMap<String, i32> = BTreeMap::new();
    for (name, a) in crate::gguf_tensors::read_all(src, meta)? {
        let Some(hf) = hf_name(&name, arch) else {
            continue;
        };
        let mut a = a;
        if arch.permuted_qk && hf.contains("self_attn.q_proj.") {
            a = unpermute(&a, hp.heads)?;
        } else if arch.permuted_qk && hf.contains("self_attn.k_proj.") {
            a = unpermute(&a, hp.kv_heads)?;
        }
        if arch.norm_plus_one && hf.ends_with("norm.weight") && a.dtype().is_float() {
            a = a.add_scalar(-1.0)?;
        }
        if a.dtype() == Dtype::Uint32 {
            // packed affine weight: bits = packed columns * 32 / input columns
            let module = hf.trim_end_matches(".weight").to_string();
            let in_cols = if module == "model.embed_tokens" || module == "lm_head" {
                hp.hidden
            } else {
                input_dim(&module, hp)
            };
            // in_cols > 0 (hparams checked it); i64: packed columns x 32 may pass i32.
            let bits = i64::from(a.dim(1)) * 32 / i64::from(in_cols);
            bits_of.insert(module, i32::try_from(bits).unwrap_or(0));
        } else if a.dtype().is_float()
            && (hf.ends_with(".scales") || hf.ends_with(".biases") || a.ndim() == 1)
        {
            let quant_side = hf.ends_with(".scales") || hf.ends_with(".biases");
            a = if !gpu && quant_side && fits_f16(&a)? {
                a.astype(Dtype::Float16)?
            } else {
                a.astype(side_dtype)?
            };
        }
        tensors.insert(hf, a);
    }
    let quant = quantization_block(&bits_of);
    let tied = !tensors.contains_key("lm_head.weight");
    let mut config = json!({
        "architectures": [arch.class],
        "model_type": arch.model_type,
        "hidden_size": hp.hidden,
        "intermediate_size": hp.ffn,
        "num_attention_heads": hp.heads,
        "num_key_value_heads": hp.kv_heads,
        "num_hidden_layers": hp.layers,
        "head_dim": hp.head_dim,
        "rms_norm_eps": hp.eps,
        "rope_theta": hp.theta,
        "max_position_embeddings": hp.ctx,
        "vocab_size": tensors.get("model.embed_tokens.weight").map_or(0, |a| a.dim(0)),
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    });
    arch_config(arch, hp, meta, &mut tensors, &mut config)?;
    // rope tables this architecture does not use are not weights
    tensors.retain(|k, _| !k.starts_with("rope_"));
    if let Some(q) = &quant {
        config["quantization"] = q.to_value();
        config["quantization_config"] = q.to_value();
    }
    if let Ok(Some(name)) = meta.opt_str("general.name") {
        config["_name_or_path"] = json!(name);
    }
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| EngineError::Gguf(e.to_string()))?;
    write_file(&out.join("config.json"), text.as_bytes())?;
    let st_meta = [("format".to_string(), "mlx".to_string())]
        .into_iter()
        .collect();
    cortex_mlx::save_safetensors(&out.join("model.safetensors"), &tensors, &st_meta)?;
    tok.save_dir(out)?;
    let gen = json!({ "eos_token_id": tok.eos_token_ids() });
    write_file(
        &out.join("generation_config.json"),
        gen.to_string().as_bytes(),
    )?;
    Ok(())
}

/// The config.json entries one architecture adds: what llama.cpp reads from `{arch}.*` keys
/// and what it assumes without reading (Gemma 2/3's layer patterns, query scale and Gemma 3's
/// local rope base), so the import computes what llama.cpp computes on the same file.
fn arch_config(
    arch: &Arch,
    hp: &Hparams,
    meta: &GgufMetadata,
    tensors: &mut BTreeMap<String, Array>,
    config: &mut serde_json::Value,
) -> Result<()> {
    let key = |k: &str| format!("{}.{k}", arch.name);
    let opt_f32 = |k: &str| meta.get_f32(&key(k)).ok();
    let opt_u32 = |k: &str| {
        meta.opt_u32(&key(k))
            .map_err(|e| EngineError::Gguf(e.to_string()))
    };
    // llama.cpp's Gemma 2 and 3 scale queries by 1/sqrt(head_dim), but by
    // 1/sqrt(hidden/heads) for the 27B models (46 and 62 layers).
    let query_scalar = |big_layers: u32| {
        if hp.layers == big_layers {
            hp.hidden / hp.heads
        } else {
            hp.head_dim
        }
    };
    if arch.name.starts_with("gemma") {
        config["hidden_activation"] = json!("gelu_pytorch_tanh");
        config["hidden_act"] = json!("gelu_pytorch_tanh");
    }
    match arch.name {
        "llama" => {
            if let Some(f) = tensors.remove("rope_freqs.weight") {
                config["rope_scaling"] = llama3_scaling(&f.to_f32_vec()?, hp)?;
            }
        }
        "phi3" => {
            config["partial_rotary_factor"] = json!(hp.rope_dims as f32 / hp.head_dim as f32);
            let orig = opt_u32("rope.scaling.original_context_length")?.unwrap_or(hp.ctx);
            config["original_max_position_embeddings"] = json!(orig);
            let long = tensors.remove("rope_factors_long.weight");
            let short = tensors.remove("rope_factors_short.weight");
            if let (Some(long), Some(short)) = (long, short) {
                config["rope_scaling"] = json!({
                    "type": "longrope",
                    "long_factor": long.to_f32_vec()?,
                    "short_factor": short.to_f32_vec()?,
                });
            }
        }
        "gemma2" => {
            // llama.cpp's defaults when the keys are absent
            config["attn_logit_softcapping"] =
                json!(opt_f32("attn_logit_softcapping").unwrap_or(50.0));
            config["final_logit_softcapping"] =
                json!(opt_f32("final_logit_softcapping").unwrap_or(30.0));
            config["sliding_window"] = json!(opt_u32("attention.sliding_window")?.unwrap_or(4096));
            config["query_pre_attn_scalar"] = json!(query_scalar(46));
            let types: Vec<&str> = (0..hp.layers)
                .map(|i| {
                    if i % 2 == 0 {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                })
                .collect();
            config["layer_types"] = json!(types);
        }
        "gemma3" => {
            let window = opt_u32("attention.sliding_window")?.ok_or_else(|| {
                EngineError::GgufHyperparameter {
                    key: key("attention.sliding_window"),
                    requirement: "present (llama.cpp requires it for gemma3)",
                }
            })?;
            config["sliding_window"] = json!(window);
            // every sixth layer attends globally; local layers rotate with base 10,000, unscaled
            config["sliding_window_pattern"] = json!(6);
            config["rope_local_base_freq"] = json!(10000.0);
            config["query_pre_attn_scalar"] = json!(query_scalar(62));
            config["attn_logit_softcapping"] = serde_json::Value::Null;
            config["final_logit_softcapping"] = serde_json::Value::Null;
            let kind = meta
                .opt_str(&key("rope.scaling.type"))
                .map_err(|e| EngineError::Gguf(e.to_string()))?;
            let factor = opt_f32("rope.scaling.factor")
                .or_else(|| opt_f32("rope.scale_linear"))
                .filter(|f| *f > 0.0 && *f != 1.0);
            match kind {
                None | Some("linear") => {
                    if let Some(f) = factor {
                        config["rope_scaling"] = json!({"rope_type": "linear", "factor": f});
                    }
                }
                Some("none") => {}
                Some(other) => {
                    return Err(EngineError::Gguf(format!(
                        "{}: rope scaling {other:?} is not supported for gemma3",
                        key("rope.scaling.type")
                    )))
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// llama.cpp stores Llama 3 rope scaling as a per-frequency period multiplier (rope_freqs).
/// Hugging Face configs (and mlx-lm) describe it by (factor, low/high_freq_factor, original
/// context). The multipliers are 1 for short wavelengths, `factor` for long ones, and
/// 1/((1-s)/factor + s) between, with s linear in 1/wavelength: s = a/wavelen - b where
/// a = old_ctx/(high-low), b = low/(high-low). Fitting a and b on the middle band and fixing
/// low = 1 recovers parameters that reproduce every multiplier.
fn llama3_scaling(factors: &[f32], hp: &Hparams) -> Result<serde_json::Value> {
    let dims = hp.head_dim as f64;
    let factor = factors.iter().cloned().fold(1.0f32, f32::max) as f64;
    let wavelen =
        |i: usize| 2.0 * std::f64::consts::PI * (hp.theta as f64).powf(2.0 * i as f64 / dims);
    let mid: Vec<(f64, f64)> = factors
        .iter()
        .enumerate()
        .filter(|(_, f)| (**f as f64) > 1.0 + 1e-4 && (**f as f64) < factor - 1e-4)
        .map(|(i, f)| {
            let s = (1.0 / *f as f64 - 1.0 / factor) / (1.0 - 1.0 / factor);
            (1.0 / wavelen(i), s)
        })
        .collect();
    let unfit = || {
        EngineError::Gguf(
            "rope_freqs does not follow Llama 3 scaling (need two mid-band values)".into(),
        )
    };
    let (&(x0, s0), &(x1, s1)) = (
        mid.first().ok_or_else(unfit)?,
        mid.last().ok_or_else(unfit)?,
    );
    if mid.len() < 2 || (x1 - x0).abs() < 1e-12 {
        return Err(unfit());
    }
    let a = (s1 - s0) / (x1 - x0);
    let b = a * x0 - s0;
    if a <= 0.0 || b <= 0.0 {
        return Err(unfit());
    }
    let (low, high) = (1.0, 1.0 + 1.0 / b);
    Ok(json!({
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": a * (high - low),
    }))
}

fn input_dim(module: &str, hp: &Hparams) -> u32 {
    if module.ends_with("mlp.down_proj") {
        hp.ffn
    } else if module.ends_with("self_attn.o_proj") {
        hp.heads * hp.head_dim
    } else {
        hp.hidden
    }
}

/// The most common bit width becomes the default; other modules get overrides.
fn quantization_block(bits_of: &BTreeMap<String, i32>) -> Option<QuantizationConfig> {
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for b in bits_of.values() {
        *counts.entry(*b).or_default() += 1;
    }
    let default_bits = counts.iter().max_by_key(|(_, c)| **c).map(|(b, _)| *b)?;
    let overrides = bits_of
        .iter()
        .filter(|(_, b)| **b != default_bits)
        .map(|(m, b)| (m.clone(), Some((32, *b))))
        .collect();
    Some(QuantizationConfig {
        group_size: 32,
        bits: default_bits,
        overrides,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(EngineError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_list_is_the_table() {
        let table: Vec<&str> = ARCHS.iter().map(|a| a.name).collect();
        assert_eq!(table, SUPPORTED_ARCHS);
    }
}
