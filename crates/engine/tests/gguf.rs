//! GGUF: MLX's tensor loading against PyPI `gguf`'s dequantization, and the importer
//! (names, llama.cpp's Q/K permutation, config, tokenizer) against mlx-lm's logits.
mod common;
use cortex_engine::gguf_import::import_gguf;
use cortex_engine::EngineError;
use cortex_mlx::{load_gguf, load_safetensors, ops, Dtype};

#[test]
fn every_quant_type_dequantizes_like_gguf_py() {
    let dir = common::fixtures().join("gguf");
    let tensors = load_gguf(&dir.join("quant-types.gguf")).unwrap();
    let refs = load_safetensors(&dir.join("quant-types.ref.safetensors"))
        .unwrap()
        .tensors;
    for (name, bits) in [
        ("f32", 0),
        ("f16", 0),
        ("q4_0", 4),
        ("q4_1", 4),
        ("q8_0", 8),
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
            ops::dequantize(w, s, Some(b), 32, bits, Some(Dtype::Float32)).unwrap()
        };
        let want = refs[&key].to_vec::<f32>().unwrap();
        let got = got.to_f32_vec().unwrap();
        // float16 scales: results agree to float16 rounding of the products
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
        assert_eq!(got.len(), 48 * 96, "{name}");
    }
}

fn check_logits(dir: &std::path::Path, tol: f32) -> f32 {
    let model = cortex_engine::load(dir).unwrap();
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
    let out = common::scratch_dir("gguf-q5").join("m");
    let err = import_gguf(&common::fixtures().join("gguf/unsupported-q5.gguf"), &out).unwrap_err();
    match &err {
        EngineError::UnsupportedGgufType {
            tensor, type_name, ..
        } => {
            assert_eq!(tensor, "blk.0.attn_q.weight");
            assert_eq!(type_name, "Q5_0");
        }
        other => panic!("expected UnsupportedGgufType, got {other}"),
    }
    assert!(
        err.to_string().contains("Q4_0"),
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
