//! GGUF: our tensor decoding (every type, K-quants included) against PyPI `gguf`'s
//! dequantization, and the importer (names, llama.cpp's Q/K permutation, config, tokenizer)
//! against mlx-lm's logits and against float models of the same dequantized weights.
mod common;
use cortex_engine::gguf_import::import_gguf;
use cortex_engine::{ComputeOptions, EngineError};
use cortex_mlx::{load_safetensors, ops, Dtype};

/// Every tensor type the importer reads, decoded to MLX's layout and dequantized by MLX,
/// against PyPI `gguf`'s own dequantization: bit for bit, except Q6_K, whose 16-element
/// sub-blocks are requantized to 8 bits per 32 (held to a quarter of its own quantization step).
#[test]
fn every_quant_type_dequantizes_like_gguf_py() {
    let dir = common::fixtures().join("gguf");
    let path = dir.join("quant-types.gguf");
    let meta = cortex_tokenizer::gguf::read_metadata(&path).unwrap();
    let tensors = cortex_engine::gguf_tensors::read_all(&path, &meta).unwrap();
    let refs = load_safetensors(&dir.join("quant-types.ref.safetensors"))
        .unwrap()
        .tensors;
    for (name, bits) in [
        ("f32", 0),
        ("f16", 0),
        ("bf16", 0),
        ("q4_0", 4),
        ("q4_1", 4),
        ("q5_0", 5),
        ("q5_1", 5),
        ("q8_0", 8),
        ("q4_k", 4),
        ("q5_k", 5),
        ("q6_k", 8),
    ] {
        let key = format!("{name}.weight");
        let got = if bits == 0 {
            tensors[&key].clone()
        } else {
            let (w, s, b) = (
                &tensors[&key],
                &tensors[&format!("{name}.scales")],
                &tensors[&format!("{name}.biases")],
            );
            assert_eq!((s.dtype(), b.dtype()), (Dtype::Float32, Dtype::Float32));
            ops::dequantize(w, s, Some(b), 32, bits, Some(Dtype::Float32)).unwrap()
        };
        let want = &refs[&key];
        assert_eq!(got.shape(), want.shape(), "{name}");
        let (got, want) = (got.to_f32_vec().unwrap(), want.to_vec::<f32>().unwrap());
        if name == "q6_k" {
            // Q6_K's own step within a 16-element sub-block is |d * sc|; the 8-bit grid over a
            // 32-group's range is finer by about 255 / 63 / 2.
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let worst = common::max_abs_diff(&got, &want);
            let rms = (want.iter().map(|x| x * x).sum::<f32>() / want.len() as f32).sqrt();
            let rms_err = (got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                / want.len() as f32)
                .sqrt();
            eprintln!(
                "q6_k requantized to 8 bits: max error {worst:.3e} ({:.2e} of the largest weight), rms error / rms weight {:.2e}",
                worst / scale,
                rms_err / rms
            );
            assert!(worst <= scale / 255.0, "{worst} vs largest {scale}");
        } else {
            // equal as numbers (ggml's d * (q - 8) gives -0.0 where d * q - 8d gives 0.0)
            let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let first = got.iter().zip(&want).enumerate().find(|(_, (a, b))| a != b);
            assert_eq!(
                differ, 0,
                "{name}: {differ} values differ from gguf-py's, first (index, (ours, theirs)): {first:?}"
            );
        }
    }
}

/// A model whose layers are Q4_K, Q5_K, Q5_0 and Q5_1 imports to exactly the weights gguf-py
/// dequantizes it to: the same logits as the float32 model of those weights, up to float32
/// rounding. The imported model runs the quantized kernels (per group s * (q . x) + b * sum(x),
/// which rounds differently from sgemm over the dequantized weights), so the bound is relative
/// to the logits' size: 1e-4 of the largest (measured: 1.0e-5 of it; a wrong scale, offset or
/// nibble order moves logits by whole units).
#[test]
fn k_quant_gguf_imports_exactly() {
    let (d, spread, _) = kquant_logits("kquants");
    assert!(
        d <= 1e-4 * spread,
        "logits differ from the dequantized float model by {d} (largest logit {spread})"
    );
}

/// A file laid out like llama.cpp's Q4_K_M (Q6_K output, attn_v and ffn_down) imports; its
/// Q6_K tensors land in 8 bits per group of 32, which must cost less than Q6_K itself already
/// costs: the logits' distance from the file's own dequantized weights stays under half their
/// distance from the float weights Q6_K was made from.
#[test]
fn q4_k_m_gguf_imports_within_q6_k_error() {
    let (ours, _, config) = kquant_logits("q4_k_m");
    assert_eq!(config["quantization"]["bits"], 4);
    assert_eq!(
        config["quantization"]["lm_head"]["bits"], 8,
        "{}",
        config["quantization"]
    );
    let dir = common::fixtures().join("gguf");
    let q6_k_itself = common::max_abs_diff(
        &prompt_logits(&dir.join("tiny-q4_k_m-ref")),
        &prompt_logits(&dir.join("tiny-q4_k_m-before-q6_k")),
    );
    eprintln!("Q6_K's own error on the logits: {q6_k_itself:.3e}; the 8-bit requantization adds {ours:.3e} ({:.2}x)", ours / q6_k_itself);
    assert!(
        ours <= 0.5 * q6_k_itself,
        "requantizing Q6_K moved the logits by {ours}, Q6_K itself by {q6_k_itself}"
    );
}

fn prompt_logits(model_dir: &std::path::Path) -> Vec<f32> {
    let model = cortex_engine::load_with(model_dir, &ComputeOptions::exact_cache()).unwrap();
    let mut cache = cortex_engine::cache::SimpleKvCache::new(model.model.num_layers());
    let prompt: Vec<u32> = (0..64u32).map(|i| (i * 37 + 5) % 300).collect();
    let tokens = cortex_engine::generate::tokens_array(&prompt).unwrap();
    model
        .model
        .forward(&tokens, &mut cache)
        .unwrap()
        .to_f32_vec()
        .unwrap()
}

/// Imports tiny-KIND.gguf; returns the largest logit difference from tiny-KIND-ref (the float
/// model of gguf-py's dequantization) over a 64-token prompt, and the import's config.
fn kquant_logits(kind: &str) -> (f32, f32, serde_json::Value) {
    let dir = common::fixtures().join("gguf");
    let out = common::scratch_dir(&format!("gguf-{kind}")).join("m");
    import_gguf(&dir.join(format!("tiny-{kind}.gguf")), &out).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let (got, want) = (
        prompt_logits(&out),
        prompt_logits(&dir.join(format!("tiny-{kind}-ref"))),
    );
    let d = common::max_abs_diff(&got, &want);
    let spread = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    eprintln!("tiny-{kind}: max |imported - reference| logit {d:.3e} (largest logit {spread:.2})");
    assert!(
        spread > 0.5,
        "the fixture's logits are too flat to tell anything"
    );
    (d, spread, config)
}

fn check_logits(dir: &std::path::Path, tol: f32) -> f32 {
    let model = cortex_engine::load_with(dir, &ComputeOptions::exact_cache()).unwrap();
    let d = common::compare(&model, &common::Reference::mlx_lm("tiny-llama"), 0).prompt;
    assert!(
        d <= tol,
        "{}: logits differ from mlx-lm's on the original weights by {d}",
        dir.display()
    );
    d
}

#[test]
fn imported_f32_gguf_matches_the_original_model() {
    let out = common::scratch_dir("gguf-f32").join("tiny");
    import_gguf(&common::fixtures().join("gguf/tiny-llama-f32.gguf"), &out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing from the import");
    }
    // exact weights, so the Q/K un-permutation and every rename must be right
    check_logits(&out, 1e-4);
    // the tokenizer rebuilt from GGUF metadata encodes like the original tokenizer.json
    let ours = cortex_tokenizer::Tokenizer::from_dir(&out).unwrap();
    let orig =
        cortex_tokenizer::Tokenizer::from_dir(&common::fixtures().join("tiny-llama")).unwrap();
    for text in ["hello world", "the quick brown fox, 123!", "  spaces  "] {
        assert_eq!(
            ours.encode(text, false).unwrap(),
            orig.encode(text, false).unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn imported_q8_gguf_is_quantized_and_close() {
    let out = common::scratch_dir("gguf-q8").join("tiny");
    import_gguf(&common::fixtures().join("gguf/tiny-llama-q8.gguf"), &out).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization"]["bits"], 8);
    assert_eq!(config["quantization"]["group_size"], 32);
    let st = load_safetensors(&out.join("model.safetensors")).unwrap();
    assert_eq!(st.metadata.get("format").map(String::as_str), Some("mlx"));
    assert!(st
        .tensors
        .contains_key("model.layers.0.self_attn.q_proj.scales"));
    // 8-bit weights: within quantization error of the float model (calibration: mlx_lm's own
    // 8-bit, group-64 conversion of the same weights differs from the float logits by 0.078;
    // Q8_0 is symmetric, without a per-group minimum, and lands near 0.1)
    check_logits(&out, 0.15);
}

#[test]
fn unsupported_quant_type_is_a_typed_error() {
    let out = common::scratch_dir("gguf-iq4").join("m");
    let err = import_gguf(&common::fixtures().join("gguf/unsupported-iq4.gguf"), &out).unwrap_err();
    match &err {
        EngineError::UnsupportedGgufType {
            tensor, type_name, ..
        } => {
            assert_eq!(tensor, "blk.0.attn_q.weight");
            assert_eq!(type_name, "IQ4_NL");
        }
        other => panic!("expected UnsupportedGgufType, got {other}"),
    }
    assert!(
        err.to_string().contains("Q4_K, Q5_K, Q6_K"),
        "the message lists supported types: {err}"
    );
    assert!(!out.exists(), "a failed import leaves nothing behind");
}

#[test]
fn truncated_gguf_fails_cleanly_and_leaves_nothing() {
    let scratch = common::scratch_dir("gguf-trunc");
    let bytes = std::fs::read(common::fixtures().join("gguf/tiny-llama-f32.gguf")).unwrap();
    let src = scratch.join("cut.gguf");
    std::fs::write(&src, &bytes[..bytes.len() / 3]).unwrap();
    let out = scratch.join("models/cut");
    assert!(import_gguf(&src, &out).is_err());
    assert!(!out.exists());
    let leftovers = std::fs::read_dir(scratch.join("models"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "no temporary folder left behind");
}

/// Imports `file` into a scratch folder and loads it.
fn import_and_load(file: &std::path::Path, tag: &str) -> cortex_engine::LoadedModel {
    let out = common::scratch_dir(&format!("gguf-{tag}")).join("m");
    import_gguf(file, &out).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    cortex_engine::load_with(&out, &ComputeOptions::exact_cache())
        .unwrap_or_else(|e| panic!("{tag}: {e}"))
}

/// The largest logit difference over the prompt and every decode step.
fn worst(d: &common::Diffs) -> f32 {
    d.decode.iter().fold(d.prompt, |m, x| m.max(*x))
}

/// Architectures beyond llama, converted as llama.cpp's converter converts them (its tensor
/// names, Gemma's norms stored as 1 + w, no Q/K permutation): where the Hugging Face config
/// survives the trip through GGUF metadata, the import is the original model, to float noise.
/// (GGUF has no query_pre_attn_scalar or layer pattern for Gemma 2/3: llama.cpp assumes its
/// own, so their fixtures are the ones configured that way. The Gemma 2 one has a window that
/// the prompt overflows, which mlx-lm ignores: it is held to transformers' golden instead.)
#[test]
fn other_architectures_import_from_f32_gguf_as_the_original_model() {
    let goldens = common::root().join("tests/fixtures/hf_goldens");
    for model in [
        "tiny-qwen2",
        "tiny-qwen3",
        "tiny-phi3",
        "tiny-gemma",
        "tiny-gemma3-6layer",
        "tiny-gemma2-window",
    ] {
        let file = common::fixtures().join(format!("gguf/{model}-f32.gguf"));
        let m = import_and_load(&file, model);
        let (reference, tol, against) = if model == "tiny-gemma2-window" {
            let golden = goldens.join(format!("{model}.safetensors"));
            (common::Reference::from_file(&golden), 1e-3, "transformers")
        } else {
            (common::Reference::mlx_lm(model), 1e-4, "mlx-lm")
        };
        let d = common::compare(&m, &reference, usize::MAX);
        eprintln!("{model}: max |import - {against}| {:.2e}", worst(&d));
        assert!(
            worst(&d) <= tol,
            "{model}: the import of its GGUF differs from {against} by {} (prompt {}, decode {:?})",
            worst(&d),
            d.prompt,
            d.decode
        );
    }
}

/// llama.cpp's own logits on the same files (tests/fixtures/make_llama_cpp_refs.py): every
/// architecture in float32 and quantized by llama.cpp's quantizer to Q8_0, Q4_0, Q4_1, Q5_0,
/// Q5_1, Q4_K_M, Q5_K_M and Q6_K (with its fallbacks to Q5_0/Q5_1/Q8_0 for rows that are not
/// whole 256-element blocks, as on real models), plus the default model's GGUF as shipped.
///
/// Two checks per quantized file. (1) Against llama.cpp on the float32 file its quantizer
/// dequantizes the file to (exactly the file's weights, computed in float): within `F32_TOL`,
/// like the float32 files, so every quantized tensor decodes to llama.cpp's own values, in
/// every architecture's layout. Q6_K, which we requantize to 8 bits, may add half of what the
/// file's quantization moved the logits (measured: 0.23x). (2) Against llama.cpp running the
/// quantized file itself, which multiplies by activations it quantizes to 8 bits and we do not:
/// at most 1.5x as far as llama.cpp's own run of the same weights in float is from it, so the
/// difference is llama.cpp's activation rounding and nothing of ours.
#[test]
fn imports_match_llama_cpp_on_the_same_file() {
    /// llama.cpp sums in other orders than MLX (measured up to 1.0e-3 on tiny-gemma3-6layer,
    /// 2.2e-4 on SmolLM2); a wrongly decoded tensor moves the logits by 1e-2 and more.
    const F32_TOL: f32 = 2e-3;
    let dir = common::fixtures().join("gguf/llama-cpp");
    let manifest: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json")).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (tests/fixtures/make_all.sh runs make_llama_cpp_refs.py once \
                 bench/install_llama_cpp.sh has built llama-cpp-python)",
                dir.display()
            )
        }),
    )
    .unwrap();
    assert!(manifest.len() >= 60, "{} files", manifest.len());
    let reference =
        |stem: &str| common::Reference::from_file(&dir.join(format!("{stem}.safetensors")));
    let all = |r: &common::Reference| [r.prompt_logits.clone(), r.decode_logits.clone()].concat();
    let mut failures = Vec::new();
    for entry in &manifest {
        let stem = entry["stem"].as_str().unwrap();
        let mut file = std::path::PathBuf::from(entry["gguf"].as_str().unwrap());
        if file.is_relative() {
            file = common::fixtures().join(file);
        }
        let model = import_and_load(&file, stem);
        let theirs = reference(stem);
        let ours = worst(&common::compare(&model, &theirs, usize::MAX));
        let types = entry["tensor_types"].to_string();
        let mut check = |what: &str, got: f32, bound: f32| {
            eprintln!("{stem:<26} {types:<42} {what:<34} {got:.2e} (bound {bound:.2e})");
            if got > bound {
                failures.push(format!("{stem}: {what} {got:.3e} > {bound:.3e}"));
            }
        };
        let Some(deq) = entry["dequantized"].as_str() else {
            check("vs llama.cpp (float32 file)", ours, F32_TOL);
            continue;
        };
        let deq_ref = reference(deq);
        let vs_deq = worst(&common::compare(&model, &deq_ref, usize::MAX));
        let mut bound = F32_TOL;
        if types.contains("Q6_K") {
            let base = entry["base"].as_str().unwrap();
            let quantization =
                common::max_abs_diff(&all(&deq_ref), &all(&reference(&format!("{base}-f32"))));
            bound = bound.max(0.5 * quantization);
        }
        check("vs llama.cpp, dequantized file", vs_deq, bound);
        let activations = common::max_abs_diff(&all(&theirs), &all(&deq_ref));
        check(
            "vs llama.cpp, quantized compute",
            ours,
            1.5 * activations + F32_TOL,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An architecture the importer has no table entry for is a typed error naming the ones it
/// has, and nothing is written.
#[test]
fn unknown_architecture_is_a_typed_error() {
    let mut bytes = std::fs::read(common::fixtures().join("gguf/tiny-llama-f32.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // value: u32 type 8 (string), u64 length 5, "llama"
    assert_eq!(&bytes[at + 12..at + 17], b"llama");
    bytes[at + 12..at + 17].copy_from_slice(b"mamba");
    let dir = common::scratch_dir("gguf-arch");
    let src = dir.join("mamba.gguf");
    std::fs::write(&src, &bytes).unwrap();
    let out = dir.join("m");
    match import_gguf(&src, &out) {
        Err(EngineError::UnsupportedModelType {
            model_type,
            supported,
        }) => {
            assert_eq!(model_type, "gguf:mamba");
            for arch in [
                "llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3",
            ] {
                assert!(supported.iter().any(|s| s == arch), "{supported:?}");
            }
        }
        other => panic!("expected UnsupportedModelType, got {other:?}"),
    }
    assert!(!out.exists());
}
