//! Bad input gives a typed error naming the problem, never a crash.
mod common;
use cortex_engine::EngineError;
use std::path::Path;

fn load_err(dir: &Path) -> EngineError {
    match cortex_engine::load(dir) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn unknown_model_type_lists_supported() {
    let dir = common::scratch_dir("bad-type");
    common::copy_model("tiny-llama", &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"nonesuch\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    match load_err(&dir) {
        EngineError::UnsupportedModelType {
            model_type,
            supported,
        } => {
            assert_eq!(model_type, "nonesuch");
            assert!(supported.iter().any(|s| s == "llama"));
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn missing_and_truncated_safetensors() {
    let dir = common::scratch_dir("bad-st");
    common::copy_model("tiny-llama", &dir);
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, EngineError::CorruptSafetensors { .. }), "{e}");
    std::fs::remove_file(&st).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, EngineError::MissingFile { .. }), "{e}");

    // a shard named by the index but absent
    let dir = common::scratch_dir("bad-shard");
    common::copy_model("tiny-llama-sharded", &dir);
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_err(&dir);
    assert!(
        matches!(&e, EngineError::MissingFile { path } if path.ends_with("model-00002-of-00002.safetensors")),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_the_tensor() {
    let dir = common::scratch_dir("bad-shape");
    common::copy_model("tiny-llama", &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 224", "\"intermediate_size\": 200");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    match load_err(&dir) {
        EngineError::ShapeMismatch {
            name,
            expected,
            actual,
        } => {
            assert!(name.contains("mlp"), "{name}");
            assert_ne!(expected, actual);
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn missing_tokenizer_and_config() {
    let dir = common::scratch_dir("no-tok");
    common::copy_model("tiny-llama", &dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, EngineError::Tokenizer(_)), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(matches!(load_err(&dir), EngineError::MissingFile { .. }));
    let garbage = common::scratch_dir("garbage");
    std::fs::write(garbage.join("config.json"), "{not json").unwrap();
    assert!(matches!(load_err(&garbage), EngineError::Config { .. }));
}

#[test]
fn bad_sampler_parameters_are_rejected() {
    let p = cortex_engine::SamplerParams {
        top_p: 0.0,
        ..Default::default()
    };
    assert!(matches!(p.validate(), Err(EngineError::InvalidRequest(_))));
    let p = cortex_engine::SamplerParams {
        temperature: -1.0,
        ..Default::default()
    };
    assert!(p.validate().is_err());
}
