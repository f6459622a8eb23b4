//! Migrations apply from an empty file and from every earlier version, with rows present: the
//! database is migrated up to version k, given the rows a catalog of that version would hold
//! (fixtures/seed_<v>.sql, the newest seed not newer than k), then opened, which applies the rest.
//! A new migration is covered without changing this test; one that changes tables adds a seed.

mod common;

use std::borrow::Cow;

use common::{check_invariants, raw};
use cortex_catalog::{Catalog, CatalogError, DownloadState, ModelSource, MIGRATOR};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// (version, SQL) of every seed fixture, oldest first.
fn seeds() -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seeds: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            let version = name
                .strip_prefix("seed_")?
                .strip_suffix(".sql")?
                .parse()
                .ok()?;
            Some((version, std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    seeds.sort();
    seeds
}

#[tokio::test]
async fn migrations_apply_from_empty_and_from_every_earlier_version_keeping_rows() {
    let all: Vec<_> = MIGRATOR.iter().cloned().collect();
    assert!(all.len() >= 2);
    let seeds = seeds();
    for applied in 0..=all.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let partial = Migrator {
            migrations: Cow::Owned(all[..applied].to_vec()),
            ..Migrator::DEFAULT
        };
        partial.run(&pool).await.unwrap();
        let version = all[..applied].last().map_or(0, |m| m.version);
        let seed = seeds.iter().rev().find(|(v, _)| *v <= version);
        if let Some((_, sql)) = seed {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let catalog = Catalog::open(&path).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&raw(&path).await)
                .await
                .unwrap();
        assert_eq!(versions, all.iter().map(|m| m.version).collect::<Vec<_>>());
        if seed.is_some() {
            check_seeded(&catalog).await;
        } else {
            assert!(catalog.list_models().await.unwrap().is_empty());
        }
        check_invariants(&raw(&path).await).await;
    }
}

async fn check_seeded(c: &Catalog) {
    let m = c.get_model("mdl_00000000000000a1").await.unwrap();
    assert_eq!(
        m.source,
        ModelSource::Hub {
            repo: "org/seeded".into(),
            revision: "main".into(),
            commit: None
        }
    );
    assert_eq!(m.settings.temperature, Some(0.25));
    let conv = c.get_conversation("cnv_00000000000000c1").await.unwrap();
    assert_eq!(conv.settings.max_tokens, Some(64));
    assert_eq!(
        conv.current_leaf_id.as_deref(),
        Some("msg_00000000000000e2")
    );
    let path = c.path_to_root("msg_00000000000000e2").await.unwrap();
    assert_eq!(path.len(), 2);
    assert_eq!(path[1].stats.as_ref().map(|s| s.completion_tokens), Some(8));
    // Messages written before the search index existed are searchable.
    let found = c.list_conversations(Some("rottnest")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        c.unfinished_downloads().await.unwrap()[0].state,
        DownloadState::Paused
    );
    assert_eq!(c.unfinished_conversions().await.unwrap().len(), 1);
    assert_eq!(
        c.get_setting("theme").await.unwrap(),
        Some(serde_json::json!("dark"))
    );
}

#[tokio::test]
async fn a_catalog_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    Catalog::open(&path).await.unwrap().close().await;
    let pool = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = Catalog::open(&path).await.unwrap_err();
    assert!(matches!(err, CatalogError::Migrate(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogs_opening_a_new_file_at_once_all_succeed() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let opens: Vec<_> = (0..4)
            .map(|_| tokio::spawn(Catalog::open(path.clone())))
            .collect();
        for open in opens {
            let catalog = open.await.unwrap().unwrap();
            catalog.list_models().await.unwrap();
            catalog.close().await;
        }
    }
}
