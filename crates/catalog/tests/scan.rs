//! Discovery and deletion on fixture folders: a models folder and a fake Hugging Face cache with
//! two snapshots sharing a blob. Deletion must free exactly the right bytes and never leave its root.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{write_plain_model, write_safetensors};
use cortex_catalog::scan::{delete_hf_snapshot, delete_model_dir, scan_hf_cache, scan_models_dir};
use cortex_catalog::{CatalogError, ModelFormat, ModelSource, Quantization};

fn size(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// A 4-bit MLX model: a 16x64 linear packed in 8 words per row, 8-bit `lm_head` override.
fn write_quantized_model(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("config.json"),
        r#"{"model_type": "qwen2", "quantization": {"group_size": 32, "bits": 4, "lm_head": {"group_size": 32, "bits": 8}}}"#,
    )
    .unwrap();
    write_safetensors(
        &dir.join("model.safetensors"),
        &[
            ("l.weight", "U32", &[16, 8]),
            ("l.scales", "F16", &[16, 2]),
            ("l.biases", "F16", &[16, 2]),
            ("lm_head.weight", "U32", &[16, 16]),
            ("lm_head.scales", "F16", &[16, 2]),
            ("lm_head.biases", "F16", &[16, 2]),
            ("norm.weight", "F16", &[64]),
        ],
        &[("format", "mlx")],
    );
}

#[test]
fn models_dir_scan_reads_metadata_and_skips_what_is_not_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    write_plain_model(&root.join("org/plain"));
    write_quantized_model(&root.join("quant"));
    write_plain_model(&root.join(".converting/x"));
    fs::create_dir_all(root.join("no-weights")).unwrap();
    fs::write(root.join("no-weights/config.json"), "{}").unwrap();
    fs::create_dir_all(root.join("broken")).unwrap();
    fs::write(root.join("broken/config.json"), "{not json").unwrap();
    write_plain_model(&root.join("sharded"));
    fs::write(
        root.join("sharded/model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    write_plain_model(&tmp.path().join("outside"));
    symlink(tmp.path().join("outside"), root.join("linked")).unwrap();
    write_plain_model(&root.join("a/b/c/too-deep"));

    let found = scan_models_dir(&root).unwrap();
    let names: Vec<&str> = found.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["org/plain", "quant"]);
    let skipped: Vec<PathBuf> = found.skipped.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        skipped,
        [
            root.join("broken"),
            root.join("no-weights"),
            root.join("sharded")
        ]
    );
    assert!(
        found.skipped[2]
            .reason
            .contains("model-00002-of-00002.safetensors"),
        "{:?}",
        found.skipped[2]
    );

    let plain = &found.models[0];
    assert_eq!(plain.path, root.join("org/plain"));
    assert_eq!(
        plain.source,
        ModelSource::Folder {
            path: root.join("org/plain").to_string_lossy().into_owned()
        }
    );
    assert_eq!(plain.info.format, ModelFormat::Safetensors);
    assert_eq!(plain.info.architecture.as_deref(), Some("llama"));
    assert_eq!(plain.info.dtype.as_deref(), Some("bfloat16"));
    assert_eq!(plain.info.parameters, Some(4 * 8 + 8));
    assert_eq!(plain.info.quantization, None);
    let plain_bytes =
        size(&root.join("org/plain/config.json")) + size(&root.join("org/plain/model.safetensors"));
    assert_eq!(plain.info.size_bytes as u64, plain_bytes);

    let quant = &found.models[1];
    assert_eq!(quant.info.format, ModelFormat::Mlx);
    assert_eq!(
        quant.info.quantization,
        Some(Quantization {
            bits: 4,
            group_size: 32
        })
    );
    assert_eq!(quant.info.parameters, Some(16 * 64 + 16 * 64 + 64));
    assert_eq!(
        quant.info.dtype.as_deref(),
        Some("float16"),
        "from the headers when config.json has none"
    );

    assert!(scan_models_dir(&tmp.path().join("missing"))
        .unwrap()
        .models
        .is_empty());
}

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

/// models--org--tiny with snapshots C1 (pr/1) and C2 (main) sharing config.json's blob, plus a
/// partial blob; and models--org--partial whose only snapshot lacks its weights.
fn write_hf_cache(cache: &Path) -> PathBuf {
    let repo = cache.join("models--org--tiny");
    let blobs = repo.join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join("cfg"),
        r#"{"model_type": "llama", "torch_dtype": "float32"}"#,
    )
    .unwrap();
    write_safetensors(&blobs.join("w1"), &[("w", "F32", &[10])], &[]);
    write_safetensors(&blobs.join("w2"), &[("w", "F32", &[20])], &[]);
    fs::write(blobs.join("w3.incomplete"), vec![0u8; 77]).unwrap();
    for (commit, weights) in [(C1, "w1"), (C2, "w2")] {
        let snap = repo.join("snapshots").join(commit);
        fs::create_dir_all(&snap).unwrap();
        symlink("../../blobs/cfg", snap.join("config.json")).unwrap();
        symlink(
            format!("../../blobs/{weights}"),
            snap.join("model.safetensors"),
        )
        .unwrap();
    }
    fs::create_dir_all(repo.join("refs/pr")).unwrap();
    fs::write(repo.join("refs/main"), C2).unwrap();
    fs::write(repo.join("refs/pr/1"), format!("{C1}\n")).unwrap();

    let partial = cache.join("models--org--partial/snapshots").join(C1);
    fs::create_dir_all(&partial).unwrap();
    fs::write(partial.join("config.json"), "{}").unwrap();
    fs::create_dir_all(cache.join("datasets--org--data/snapshots/x")).unwrap();
    repo
}

#[test]
fn hf_cache_scan_finds_each_snapshot_with_its_blob_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = write_hf_cache(&cache);
    let found = scan_hf_cache(&cache).unwrap();
    assert_eq!(found.models.len(), 2);
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(
        found.skipped[0].path,
        cache.join("models--org--partial/snapshots").join(C1)
    );

    let (one, two) = (&found.models[0], &found.models[1]);
    assert_eq!(one.path, repo.join("snapshots").join(C1));
    assert_eq!(one.name, "org/tiny");
    assert_eq!(
        one.source,
        ModelSource::Hub {
            repo: "org/tiny".into(),
            revision: "pr/1".into(),
            commit: Some(C1.into())
        }
    );
    assert_eq!(
        two.source,
        ModelSource::Hub {
            repo: "org/tiny".into(),
            revision: "main".into(),
            commit: Some(C2.into())
        }
    );
    let blobs = repo.join("blobs");
    assert_eq!(
        one.info.size_bytes as u64,
        size(&blobs.join("cfg")) + size(&blobs.join("w1"))
    );
    assert_eq!(
        two.info.size_bytes as u64,
        size(&blobs.join("cfg")) + size(&blobs.join("w2"))
    );
    assert_eq!(
        (one.info.parameters, two.info.parameters),
        (Some(10), Some(20))
    );
    assert_eq!(two.info.dtype.as_deref(), Some("float32"));
    assert!(scan_hf_cache(&tmp.path().join("missing"))
        .unwrap()
        .models
        .is_empty());
}

#[test]
fn deleting_a_snapshot_frees_only_its_own_blobs_then_the_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = write_hf_cache(&cache);
    let blobs = repo.join("blobs");
    let (cfg, w1, w2) = (
        size(&blobs.join("cfg")),
        size(&blobs.join("w1")),
        size(&blobs.join("w2")),
    );

    assert_eq!(delete_hf_snapshot(&cache, "org/tiny", C1).unwrap(), w1);
    assert!(!repo.join("snapshots").join(C1).exists());
    assert!(!blobs.join("w1").exists());
    assert!(
        blobs.join("cfg").exists() && blobs.join("w2").exists(),
        "shared and other blobs stay"
    );
    assert!(
        !repo.join("refs/pr").exists(),
        "the ref to the commit and its empty folder are gone"
    );
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), C2);
    let left = scan_hf_cache(&cache).unwrap();
    assert_eq!(left.models.len(), 1);

    let err = delete_hf_snapshot(&cache, "org/tiny", C1).unwrap_err();
    assert!(matches!(err, CatalogError::NotFound { .. }), "{err}");

    // The last snapshot takes the whole repo folder with it, partial blobs included.
    assert_eq!(
        delete_hf_snapshot(&cache, "org/tiny", C2).unwrap(),
        cfg + w2 + 77
    );
    assert!(!repo.exists());
    assert!(cache.join("models--org--partial").exists());
}

#[test]
fn hf_deletion_refuses_paths_that_leave_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = write_hf_cache(&cache);
    let outside = tmp.path().join("precious");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();

    for (r, c) in [
        ("../precious", C1),
        ("org/tiny", ".."),
        ("org/tiny", "../../x"),
        ("a/b/c", C1),
        ("", C1),
    ] {
        let err = delete_hf_snapshot(&cache, r, c).unwrap_err();
        assert!(
            matches!(err, CatalogError::Invalid { .. }),
            "{r} {c}: {err}"
        );
    }
    // A snapshot that is a symlink to a folder outside, and a repo folder that is one.
    symlink(&outside, repo.join("snapshots/3333")).unwrap();
    assert!(matches!(
        delete_hf_snapshot(&cache, "org/tiny", "3333"),
        Err(CatalogError::Invalid { .. })
    ));
    symlink(&outside, cache.join("models--org--escape")).unwrap();
    assert!(matches!(
        delete_hf_snapshot(&cache, "org/escape", C1),
        Err(CatalogError::Invalid { .. })
    ));
    // A link inside a snapshot that points outside the blobs is removed, its target kept.
    symlink(
        outside.join("keep.txt"),
        repo.join("snapshots").join(C1).join("extra.txt"),
    )
    .unwrap();
    fs::remove_file(repo.join("snapshots/3333")).unwrap();
    let w1 = size(&repo.join("blobs/w1"));
    assert_eq!(delete_hf_snapshot(&cache, "org/tiny", C1).unwrap(), w1);
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn model_dir_deletion_stays_inside_its_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let model = root.join("org/plain");
    write_plain_model(&model);
    let outside = tmp.path().join("precious");
    write_plain_model(&outside);
    symlink(&outside, root.join("linked")).unwrap();
    symlink(outside.join("config.json"), model.join("link-out.json")).unwrap();

    for bad in [
        root.clone(),
        root.join("../precious"),
        root.join("linked"),
        tmp.path().to_path_buf(),
    ] {
        let err = delete_model_dir(&root, &bad).unwrap_err();
        assert!(
            matches!(err, CatalogError::Invalid { .. }),
            "{}: {err}",
            bad.display()
        );
    }
    assert!(matches!(
        delete_model_dir(&root, &root.join("missing")),
        Err(CatalogError::NotFound { .. })
    ));

    let expected = size(&model.join("config.json")) + size(&model.join("model.safetensors"));
    assert_eq!(
        delete_model_dir(&root, &model).unwrap(),
        expected,
        "the symlink's target is not counted"
    );
    assert!(!model.exists());
    assert!(outside.join("config.json").exists() && outside.join("model.safetensors").exists());
    assert!(root.join("org").exists());
}
