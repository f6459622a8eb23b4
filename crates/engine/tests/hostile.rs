//! Hostile model files (issue 11): a folder or .gguf from the internet is untrusted input. Each
//! test here is a fixed hole: it failed before the fix.
mod common;
use cortex_engine::gguf_import::import_gguf;
use cortex_engine::weights::{check_safetensors, safetensors_files};
use cortex_engine::EngineError;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A safetensors file: 8-byte little-endian header length, the JSON header, `data_len` zeros.
fn write_safetensors(path: &Path, header: &Value, data_len: usize) {
    let h = serde_json::to_vec(header).unwrap();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.resize(bytes.len() + data_len, 0);
    std::fs::write(path, bytes).unwrap();
}

fn write_index(dir: &Path, file: &str) {
    let index = json!({ "weight_map": { "model.embed_tokens.weight": file } });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

// ---- item 1: weight_map names and symlinks stay inside the model folder ----

#[test]
fn weight_map_cannot_name_files_outside_the_folder() {
    let root = common::scratch_dir("hostile-index");
    let dir = root.join("model");
    common::copy_model("tiny-llama", &dir);
    // a perfectly valid safetensors file outside the folder, and a folder inside it
    let outside = root.join("outside.safetensors");
    std::fs::copy(dir.join("model.safetensors"), &outside).unwrap();
    std::fs::create_dir(dir.join("shard.safetensors")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::copy(dir.join("model.safetensors"), dir.join("sub/x.safetensors")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, dir.join("link.safetensors")).unwrap();
    let abs = outside.to_str().unwrap().to_string();
    let mut names = vec![
        "../outside.safetensors",
        abs.as_str(),
        "sub/../../outside.safetensors",
        "sub/x.safetensors",
        "..",
        ".",
        "",
        "shard.safetensors",
    ];
    if cfg!(unix) {
        names.push("link.safetensors");
    }
    for name in names {
        write_index(&dir, name);
        match safetensors_files(&dir) {
            Ok(files) => panic!("weight_map value {name:?} accepted: {files:?}"),
            Err(e) => assert!(
                matches!(e, EngineError::UnsafeWeightFile { .. }),
                "{name:?}: wrong error {e}"
            ),
        }
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_folder_is_refused_without_an_index() {
    let root = common::scratch_dir("hostile-link");
    let dir = root.join("model");
    common::copy_model("tiny-llama", &dir);
    std::fs::rename(dir.join("model.safetensors"), root.join("real.safetensors")).unwrap();
    std::os::unix::fs::symlink("../real.safetensors", dir.join("model.safetensors")).unwrap();
    let e = safetensors_files(&dir).expect_err("a symlink out of the folder was followed");
    assert!(matches!(e, EngineError::UnsafeWeightFile { .. }), "{e}");
}

/// The Hugging Face cache's own layout stays loadable: snapshots/<commit>/<file> are relative
/// symlinks into the repo's blobs/ folder.
#[cfg(unix)]
#[test]
fn hf_cache_snapshot_symlinks_into_blobs_still_load() {
    let repo = common::scratch_dir("hostile-hfcache").join("models--org--tiny");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for e in std::fs::read_dir(common::fixtures().join("tiny-llama-sharded"))
        .unwrap()
        .flatten()
    {
        let etag = format!("etag-{}", e.file_name().to_string_lossy());
        std::fs::copy(e.path(), repo.join("blobs").join(&etag)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snap.join(e.file_name()))
            .unwrap();
    }
    assert_eq!(safetensors_files(&snap).unwrap().len(), 2);
    cortex_engine::load(&snap).expect("an HF cache snapshot loads");
}

/// The header-length error once read "header length 3698092131745752680 exceeds the file (24
/// bytes)": the first 8 bytes and the size of whatever file it was pointed at.
#[test]
fn a_corrupt_header_error_does_not_echo_the_file() {
    let dir = common::scratch_dir("hostile-echo");
    common::copy_model("tiny-llama", &dir);
    let secret = b"hunter2-api-token-abcdef";
    std::fs::write(dir.join("model.safetensors"), secret).unwrap();
    let e = match cortex_engine::load(&dir) {
        Ok(_) => panic!("loaded a 24-byte safetensors file"),
        Err(e) => e,
    };
    assert!(matches!(e, EngineError::CorruptSafetensors { .. }), "{e}");
    let msg = e.to_string();
    let as_number = u64::from_le_bytes(secret[..8].try_into().unwrap()).to_string();
    for leak in [as_number.as_str(), "24 bytes", "hunter2"] {
        assert!(!msg.contains(leak), "error echoes {leak:?}: {msg}");
    }
}

// ---- item 2: every safetensors header entry is checked before MLX reads it ----

#[test]
fn hostile_safetensors_headers_are_rejected_before_mlx() {
    let dir = common::scratch_dir("hostile-st");
    let t = |dtype: &str, shape: Value, begin: Value, end: Value| json!({ "dtype": dtype, "shape": shape, "data_offsets": [begin, end] });
    let big = 1u64 << 40;
    let cases: Vec<(&str, Value, usize)> = vec![
        (
            "unknown dtype",
            json!({ "a": t("F99", json!([2]), json!(0), json!(8)) }),
            8,
        ),
        (
            "float64 (MLX cannot load it)",
            json!({ "a": t("F64", json!([1]), json!(0), json!(8)) }),
            8,
        ),
        (
            "negative dim",
            json!({ "a": t("F32", json!([-1, 2]), json!(0), json!(8)) }),
            8,
        ),
        (
            "fractional dim",
            json!({ "a": t("F32", json!([2.0]), json!(0), json!(8)) }),
            8,
        ),
        (
            "dim wider than int32",
            json!({ "a": t("U8", json!([1u64 << 32 | 1]), json!(0), json!(1)) }),
            8,
        ),
        (
            "begin after end",
            json!({ "a": t("U8", json!([0]), json!(8), json!(0)) }),
            8,
        ),
        (
            "product overflows",
            json!({ "a": t("F32", json!([big, big]), json!(0), json!(0)) }),
            8,
        ),
        (
            "size mismatch",
            json!({ "a": t("F32", json!([2, 2]), json!(0), json!(8)) }),
            16,
        ),
        (
            "past the end",
            json!({ "a": t("F32", json!([4]), json!(0), json!(16)) }),
            8,
        ),
        (
            "begin past the end",
            json!({ "a": t("U8", json!([0]), json!(100), json!(100)) }),
            8,
        ),
        (
            "negative offset",
            json!({ "a": t("U8", json!([0]), json!(-8), json!(0)) }),
            8,
        ),
        (
            "overlapping tensors",
            json!({
                "a": t("F32", json!([2]), json!(0), json!(8)),
                "b": t("F32", json!([2]), json!(4), json!(12)),
            }),
            12,
        ),
        (
            "no dtype",
            json!({ "a": { "shape": [2], "data_offsets": [0, 8] } }),
            8,
        ),
        (
            "three offsets",
            json!({ "a": { "dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8] } }),
            8,
        ),
        ("entry not an object", json!({ "a": 5 }), 8),
        ("header not an object", json!([1, 2]), 8),
        (
            "metadata not strings",
            json!({ "__metadata__": { "format": 5 } }),
            0,
        ),
    ];
    let mut accepted = Vec::new();
    for (i, (what, header, data_len)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.safetensors"));
        write_safetensors(&path, header, *data_len);
        match check_safetensors(&path) {
            Ok(()) => accepted.push(*what),
            Err(e) => assert!(
                matches!(e, EngineError::CorruptSafetensors { .. }),
                "{what}: wrong error {e}"
            ),
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");

    // An absurd header length is refused (before allocating it).
    let path = dir.join("huge-header.safetensors");
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        check_safetensors(&path),
        Err(EngineError::CorruptSafetensors { .. })
    ));
}

#[test]
fn a_valid_hand_made_safetensors_file_passes_and_loads() {
    let dir = common::scratch_dir("hostile-st-ok");
    let path = dir.join("ok.safetensors");
    let header = json!({
        "__metadata__": { "format": "mlx" },
        "a": { "dtype": "F32", "shape": [2], "data_offsets": [0, 8] },
        "b": { "dtype": "U8", "shape": [3, 1], "data_offsets": [8, 11] },
        "empty": { "dtype": "BF16", "shape": [0, 4], "data_offsets": [11, 11] },
        "scalar": { "dtype": "I32", "shape": [], "data_offsets": [11, 15] },
    });
    write_safetensors(&path, &header, 15);
    check_safetensors(&path).unwrap();
    let st = cortex_mlx::load_safetensors(&path).unwrap();
    assert_eq!(st.tensors["b"].shape(), vec![3, 1]);
    assert_eq!(st.tensors["empty"].shape(), vec![0, 4]);
    assert_eq!(st.metadata["format"], "mlx");
}

// ---- item 3: GGUF tensor extents and hyperparameters ----

fn gguf_fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join("gguf").join(name)).unwrap()
}

/// Overwrites the u32 value of metadata `key` (GGUF: u64 length, key bytes, u32 type, value).
fn patch_u32(bytes: &mut [u8], key: &str, value: u32) {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("{key} not in the fixture"));
    let ty = at + needle.len();
    assert_eq!(bytes[ty..ty + 4], 4u32.to_le_bytes(), "{key} is not a u32");
    bytes[ty + 4..ty + 8].copy_from_slice(&value.to_le_bytes());
}

/// The fixture with one more tensor-table entry (at the front; offsets are relative to the
/// data section, so the other tensors keep their data).
fn add_tensor(bytes: &[u8], name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Vec<u8> {
    let meta = cortex_tokenizer::gguf::parse_metadata(bytes, bytes.len() as u64).unwrap();
    let first = &meta.tensors[0].name;
    let mut needle = (first.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(first.as_bytes());
    let start = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    let table_len: usize = meta
        .tensors
        .iter()
        .map(|t| 8 + t.name.len() + 4 + 8 * t.shape.len() + 4 + 8)
        .sum();
    let mut info = (name.len() as u64).to_le_bytes().to_vec();
    info.extend_from_slice(name.as_bytes());
    info.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        info.extend_from_slice(&d.to_le_bytes());
    }
    info.extend_from_slice(&ggml_type.to_le_bytes());
    info.extend_from_slice(&offset.to_le_bytes());
    let mut out = bytes[..start].to_vec();
    let count = u64::from_le_bytes(out[8..16].try_into().unwrap()) + 1;
    out[8..16].copy_from_slice(&count.to_le_bytes());
    out.extend(info);
    out.extend_from_slice(&bytes[start..start + table_len]);
    let padded = (out.len() as u64).div_ceil(meta.alignment) * meta.alignment;
    out.resize(padded as usize, 0);
    out.extend_from_slice(&bytes[meta.data_offset as usize..]);
    out
}

#[test]
fn gguf_tensor_extents_are_checked_before_mlx_maps_them() {
    let dir = common::scratch_dir("hostile-gguf-extent");
    let bytes = gguf_fixture("tiny-llama-f32.gguf");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The last tensor (output_norm, 512 bytes) ends 16 bytes past the end of the file; its
        // offset still lies inside it.
        ("cut short", bytes[..bytes.len() - 16].to_vec()),
        // 2^62 float32s: 2^64 bytes, which wraps to 0 without overflow checks (MLX 0.32 loads
        // it as an array over no data). The importer drops the unknown name, so it must be
        // refused up front.
        (
            "size overflows",
            add_tensor(&bytes, "bogus.weight", &[1 << 21, 1 << 21, 1 << 20], 0, 0),
        ),
        (
            "five dims",
            add_tensor(&bytes, "bogus.weight", &[1, 1, 1, 1, 2], 0, 0),
        ),
        (
            "dim wider than int32",
            add_tensor(&bytes, "bogus.weight", &[1 << 32, 0], 0, 0),
        ),
        (
            "row not whole blocks",
            add_tensor(&bytes, "bogus.weight", &[40, 1], 8, 0),
        ),
    ];
    let mut imported = Vec::new();
    for (i, (what, file)) in cases.iter().enumerate() {
        let src = dir.join(format!("case{i}.gguf"));
        std::fs::write(&src, file).unwrap();
        let out = dir.join(format!("models/case{i}"));
        match import_gguf(&src, &out) {
            Ok(_) => imported.push(*what),
            Err(e) => assert!(
                matches!(e, EngineError::BadGguf { .. }),
                "{what}: wrong error {e}"
            ),
        }
        assert!(!out.exists() || imported.contains(what));
    }
    assert!(imported.is_empty(), "imported: {imported:?}");
}

#[test]
fn zero_heads_or_hidden_size_in_gguf_is_a_typed_error() {
    let dir = common::scratch_dir("hostile-gguf-hp");
    for key in [
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.embedding_length",
        "llama.attention.key_length",
        "llama.block_count",
    ] {
        let mut bytes = gguf_fixture("tiny-llama-f32.gguf");
        patch_u32(&mut bytes, key, 0);
        let src = dir.join(format!("{key}.gguf"));
        std::fs::write(&src, &bytes).unwrap();
        let out = dir.join("models").join(key);
        let r = std::panic::catch_unwind(|| import_gguf(&src, &out));
        match r {
            Err(_) => panic!("{key} = 0 panicked"),
            Ok(Ok(_)) => panic!("{key} = 0 was imported"),
            Ok(Err(e)) => assert!(
                matches!(e, EngineError::GgufHyperparameter { .. }),
                "{key}: wrong error {e}"
            ),
        }
    }
}

#[test]
fn zero_heads_in_config_json_is_a_typed_error() {
    for model in [
        "tiny-llama",
        "tiny-qwen2",
        "tiny-qwen3",
        "tiny-phi3",
        "tiny-gemma2",
    ] {
        for (field, value) in [
            ("num_attention_heads", 0),
            ("num_key_value_heads", 0),
            ("hidden_size", 0),
        ] {
            let dir = common::scratch_dir(&format!("hostile-heads-{model}-{field}"));
            common::copy_model(model, &dir);
            let path = dir.join("config.json");
            let mut cfg: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            cfg.as_object_mut().unwrap().remove("head_dim");
            cfg[field] = value.into();
            std::fs::write(&path, cfg.to_string()).unwrap();
            let r = std::panic::catch_unwind(|| cortex_engine::load(&dir).map(|_| ()));
            match r {
                Err(_) => panic!("{model}: {field} = 0 panicked"),
                Ok(Ok(())) => panic!("{model}: {field} = 0 loaded"),
                Ok(Err(e)) => assert!(
                    matches!(e, EngineError::Config { .. }),
                    "{model}: {field} = 0: wrong error {e}"
                ),
            }
        }
    }
}

// ---- item 6: GGUF import names ----

fn quantized(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .contains("\"quantization\"")
}

#[test]
fn a_gguf_import_never_reuses_a_folder_made_from_another_file() {
    let root = common::scratch_dir("hostile-import-name");
    let models = root.join("models");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let (f32_src, q8_src) = (root.join("a/Llama.gguf"), root.join("b/Llama.gguf"));
    std::fs::copy(
        common::fixtures().join("gguf/tiny-llama-f32.gguf"),
        &f32_src,
    )
    .unwrap();
    std::fs::copy(common::fixtures().join("gguf/tiny-llama-q8.gguf"), &q8_src).unwrap();

    let resolve = |p: &Path| cortex_engine::loader::resolve(p.to_str().unwrap(), &models).unwrap();
    let first = resolve(&f32_src);
    assert!(!quantized(&first));
    let second = resolve(&q8_src);
    assert_ne!(first, second, "the Q8 file reused the F32 file's folder");
    assert!(quantized(&second));
    // Each file finds its own import again.
    assert_eq!(resolve(&f32_src), first);
    assert_eq!(resolve(&q8_src), second);
    // A copy of the same bytes (new mtime) is still the same model.
    let copy = root.join("Llama.gguf");
    std::fs::copy(&q8_src, &copy).unwrap();
    assert_eq!(resolve(&copy), second);

    // A folder of that name that is no import of this file is not taken for one either.
    let other = root.join("models2");
    common::copy_model("tiny-llama", &other.join("Llama"));
    let got = cortex_engine::loader::resolve(q8_src.to_str().unwrap(), &other).unwrap();
    assert_ne!(got, other.join("Llama"));
    assert!(quantized(&got));
}

#[test]
fn staging_folders_are_unique_per_write() {
    let root = common::scratch_dir("hostile-staging");
    let dest = root.join("models/Llama");
    let a = cortex_engine::staging::StagingDir::create(&dest, "importing").unwrap();
    std::fs::write(a.path().join("marker"), b"a").unwrap();
    let b = cortex_engine::staging::StagingDir::create(&dest, "importing").unwrap();
    assert_ne!(a.path(), b.path(), "two writes share one staging folder");
    assert!(
        a.path().join("marker").exists(),
        "the second write wiped the first"
    );
}

#[test]
fn concurrent_imports_of_one_stem_each_get_their_own_model() {
    let root = common::scratch_dir("hostile-concurrent");
    let models = root.join("models");
    let mut srcs: Vec<(PathBuf, &str)> = Vec::new();
    for (sub, fixture) in [
        ("a", "tiny-llama-f32.gguf"),
        ("b", "tiny-llama-q8.gguf"),
        ("c", "tiny-llama-q8.gguf"),
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        let p = root.join(sub).join("Same.gguf");
        std::fs::copy(common::fixtures().join("gguf").join(fixture), &p).unwrap();
        srcs.push((p, fixture));
    }
    let barrier = std::sync::Barrier::new(srcs.len());
    let results: Vec<(PathBuf, &str)> = std::thread::scope(|s| {
        let handles: Vec<_> = srcs
            .iter()
            .map(|(p, fixture)| {
                let (barrier, models) = (&barrier, &models);
                s.spawn(move || {
                    barrier.wait();
                    let dir = cortex_engine::loader::resolve(p.to_str().unwrap(), models);
                    (
                        dir.unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                        *fixture,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (f32_dir, q8_dirs): (Vec<_>, Vec<_>) = results.iter().partition(|(_, f)| f.contains("f32"));
    assert!(!quantized(&f32_dir[0].0));
    for (d, _) in &q8_dirs {
        assert!(quantized(d), "{} holds the wrong model", d.display());
        assert_ne!(*d, f32_dir[0].0);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
}
