//! Shared by the integration tests: catalogs with a manual clock, raw access to check the schema's
//! invariants, and builders of model folders and safetensors files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cortex_catalog::{Catalog, ManualClock, ModelFormat, ModelInfo, ModelSource, NewModel};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

/// A fixed, arbitrary instant: tests never read the real clock.
pub const T0: i64 = 1_700_000_000_000;

pub struct TestCatalog {
    pub catalog: Catalog,
    pub clock: Arc<ManualClock>,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

pub async fn open() -> TestCatalog {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/catalog.db");
    let clock = Arc::new(ManualClock::new(T0));
    let catalog = Catalog::open(&path)
        .await
        .unwrap()
        .with_clock(clock.clone());
    TestCatalog {
        catalog,
        clock,
        path,
        _dir: dir,
    }
}

/// A second, raw connection pool on a catalog file (for checks the API does not offer).
pub async fn raw(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

pub async fn count(pool: &SqlitePool, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// The schema's invariants, checked on the raw database.
pub async fn check_invariants(pool: &SqlitePool) {
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let fk = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(fk.is_empty(), "{} foreign key violations", fk.len());
    let stray_parents = count(
        pool,
        "SELECT COUNT(*) FROM messages c JOIN messages p ON p.id = c.parent_id \
         WHERE p.conversation_id <> c.conversation_id OR p.seq >= c.seq",
    )
    .await;
    assert_eq!(
        stray_parents, 0,
        "a parent in another conversation, or younger than its child"
    );
    let stray_leaves = count(
        pool,
        "SELECT COUNT(*) FROM conversations c WHERE c.current_leaf_id IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM messages m WHERE m.id = c.current_leaf_id AND m.conversation_id = c.id)",
    )
    .await;
    assert_eq!(stray_leaves, 0, "a current leaf outside its conversation");
    // The full-text index agrees with the messages table.
    sqlx::query("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        .execute(pool)
        .await
        .unwrap();
}

pub fn info(size_bytes: i64) -> ModelInfo {
    ModelInfo {
        format: ModelFormat::Mlx,
        architecture: Some("llama".into()),
        parameters: Some(135_000_000),
        quantization: None,
        dtype: Some("bfloat16".into()),
        size_bytes,
    }
}

pub fn folder_model(name: &str, path: &Path) -> NewModel {
    NewModel {
        name: name.into(),
        path: path.to_path_buf(),
        source: ModelSource::Folder {
            path: path.to_string_lossy().into_owned(),
        },
        info: info(1000),
    }
}

/// A safetensors file with these (name, dtype, shape) tensors, zero-filled, and `metadata`.
pub fn write_safetensors(path: &Path, tensors: &[(&str, &str, &[u64])], metadata: &[(&str, &str)]) {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0u64;
    for (name, dtype, shape) in tensors {
        let width = match *dtype {
            "F32" | "U32" => 4,
            "F16" | "BF16" => 2,
            _ => 1,
        };
        let bytes = shape.iter().product::<u64>() * width;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.resize(out.len() + offset as usize, 0);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, out).unwrap();
}

/// A small unquantized llama folder: config.json + one safetensors file of 4*8 + 8 parameters.
pub fn write_plain_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llama", "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    write_safetensors(
        &dir.join("model.safetensors"),
        &[("w.weight", "BF16", &[4, 8]), ("norm.weight", "BF16", &[8])],
        &[],
    );
}
