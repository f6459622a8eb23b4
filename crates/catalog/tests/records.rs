//! Downloads, conversions and settings.

mod common;

use common::{folder_model, open, T0};
use cortex_catalog::{
    CatalogError, ConversionState, ConversionUpdate, DownloadState, DownloadUpdate, ErrorInfo,
    NewConversion, NewDownload,
};
use serde_json::json;

fn download(repo: &str) -> NewDownload {
    NewDownload {
        repo: repo.into(),
        revision: "main".into(),
        include: Some(vec!["*.json".into(), "*.safetensors".into()]),
    }
}

#[tokio::test]
async fn downloads_lifecycle() {
    let t = open().await;
    let c = &t.catalog;
    let d = c.create_download(&download("org/a")).await.unwrap();
    assert!(d.id.starts_with("dl_"));
    assert_eq!(
        (d.state, d.total_bytes, d.done_bytes, d.created_at),
        (DownloadState::Queued, 0, 0, T0)
    );
    assert_eq!(
        d.include.as_deref(),
        Some(&["*.json".to_string(), "*.safetensors".to_string()][..])
    );

    t.clock.advance(7);
    let running = DownloadUpdate {
        state: Some(DownloadState::Running),
        total_bytes: Some(1000),
        done_bytes: Some(10),
        ..Default::default()
    };
    let d1 = c.update_download(&d.id, &running).await.unwrap();
    assert_eq!(
        (d1.state, d1.total_bytes, d1.done_bytes, d1.updated_at),
        (DownloadState::Running, 1000, 10, T0 + 7)
    );
    let progress = DownloadUpdate {
        done_bytes: Some(500),
        ..Default::default()
    };
    assert_eq!(
        c.update_download(&d.id, &progress)
            .await
            .unwrap()
            .total_bytes,
        1000,
        "untouched fields stay"
    );

    let mut err = ErrorInfo::new("unauthorized", "This repository is gated.");
    err.details = Some(json!({"repo": "org/a", "url": "https://huggingface.co/org/a"}));
    let failed = DownloadUpdate {
        state: Some(DownloadState::Failed),
        error: Some(Some(err.clone())),
        ..Default::default()
    };
    let d2 = c.update_download(&d.id, &failed).await.unwrap();
    assert_eq!(d2.error, Some(err));
    let retry = DownloadUpdate {
        state: Some(DownloadState::Retrying),
        error: Some(None),
        ..Default::default()
    };
    assert_eq!(c.update_download(&d.id, &retry).await.unwrap().error, None);

    assert!(matches!(
        c.update_download(
            &d.id,
            &DownloadUpdate {
                done_bytes: Some(-1),
                ..Default::default()
            }
        )
        .await,
        Err(CatalogError::Invalid { .. })
    ));
    let bad_model = DownloadUpdate {
        model_id: Some(Some("mdl_nope".into())),
        ..Default::default()
    };
    assert!(matches!(
        c.update_download(&d.id, &bad_model).await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.update_download("dl_nope", &progress).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        c.create_download(&download(" ")).await,
        Err(CatalogError::Invalid { .. })
    ));

    assert_eq!(
        c.get_download(&d.id).await.unwrap().state,
        DownloadState::Retrying
    );
    c.delete_download(&d.id).await.unwrap();
    assert!(matches!(
        c.get_download(&d.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        c.delete_download(&d.id).await,
        Err(CatalogError::NotFound { .. })
    ));

    let whole = c
        .create_download(&NewDownload {
            repo: "org/b".into(),
            revision: "v1".into(),
            include: None,
        })
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&whole).unwrap()["include"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn unfinished_downloads_are_every_state_but_the_final_ones() {
    let t = open().await;
    let c = &t.catalog;
    let mut by_state = Vec::new();
    for state in DownloadState::ALL {
        let d = c
            .create_download(&download(&format!("org/{state}")))
            .await
            .unwrap();
        c.update_download(
            &d.id,
            &DownloadUpdate {
                state: Some(*state),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        by_state.push((*state, d.id));
        t.clock.advance(1);
    }
    let unfinished: Vec<String> = c
        .unfinished_downloads()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let expected: Vec<String> = by_state
        .iter()
        .filter(|(s, _)| !s.is_finished())
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(unfinished, expected, "oldest first");
    assert_eq!(expected.len(), 5);
    let listed: Vec<String> = c
        .list_downloads()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut newest_first: Vec<String> = by_state.into_iter().map(|(_, id)| id).collect();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
}

#[tokio::test]
async fn conversions_lifecycle() {
    let t = open().await;
    let c = &t.catalog;
    let src = c
        .upsert_model(&folder_model("src", "/src".as_ref()))
        .await
        .unwrap()
        .model;
    let new = NewConversion {
        model_id: src.id.clone(),
        name: "src-4bit".into(),
        bits: Some(4),
        group_size: 64,
        dtype: Some("bfloat16".into()),
        total_tensors: 300,
        total_bytes: 1_000_000,
        estimated_output_bytes: 300_000,
    };
    let cv = c.create_conversion(&new).await.unwrap();
    assert!(cv.id.starts_with("cv_"));
    assert_eq!(
        (cv.state, cv.done_tensors, cv.estimated_output_bytes),
        (ConversionState::Running, 0, 300_000)
    );
    assert_eq!(c.unfinished_conversions().await.unwrap(), vec![cv.clone()]);

    t.clock.advance(3);
    let step = ConversionUpdate {
        done_tensors: Some(150),
        done_bytes: Some(500_000),
        ..Default::default()
    };
    let cv1 = c.update_conversion(&cv.id, &step).await.unwrap();
    assert_eq!(
        (
            cv1.done_tensors,
            cv1.done_bytes,
            cv1.total_tensors,
            cv1.updated_at
        ),
        (150, 500_000, 300, T0 + 3)
    );

    let out = c
        .upsert_model(&folder_model("src-4bit", "/src-4bit".as_ref()))
        .await
        .unwrap()
        .model;
    let done = ConversionUpdate {
        state: Some(ConversionState::Completed),
        result_model_id: Some(Some(out.id.clone())),
        ..Default::default()
    };
    let cv2 = c.update_conversion(&cv.id, &done).await.unwrap();
    assert_eq!(
        (cv2.state, cv2.result_model_id.as_deref()),
        (ConversionState::Completed, Some(out.id.as_str()))
    );
    assert!(c.unfinished_conversions().await.unwrap().is_empty());

    // The record outlives both models; the result reference is cleared.
    c.delete_model(&out.id).await.unwrap();
    c.delete_model(&src.id).await.unwrap();
    let after = c.get_conversion(&cv.id).await.unwrap();
    assert_eq!(
        (after.model_id.as_str(), after.result_model_id),
        (src.id.as_str(), None)
    );

    let bad_ref = ConversionUpdate {
        result_model_id: Some(Some("mdl_nope".into())),
        ..Default::default()
    };
    assert!(matches!(
        c.update_conversion(&cv.id, &bad_ref).await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.update_conversion(
            &cv.id,
            &ConversionUpdate {
                done_bytes: Some(-5),
                ..Default::default()
            }
        )
        .await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.update_conversion("cv_nope", &step).await,
        Err(CatalogError::NotFound { .. })
    ));
    for bad in [
        NewConversion {
            name: "".into(),
            ..new.clone()
        },
        NewConversion {
            group_size: 0,
            ..new.clone()
        },
        NewConversion {
            bits: Some(0),
            ..new.clone()
        },
        NewConversion {
            total_bytes: -1,
            ..new.clone()
        },
    ] {
        assert!(
            matches!(
                c.create_conversion(&bad).await,
                Err(CatalogError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }

    let failed = c.create_conversion(&new).await.unwrap();
    let err = ConversionUpdate {
        state: Some(ConversionState::Failed),
        error: Some(Some(ErrorInfo::new("disk_full", "No space left."))),
        ..Default::default()
    };
    assert_eq!(
        c.update_conversion(&failed.id, &err)
            .await
            .unwrap()
            .error
            .unwrap()
            .code,
        "disk_full"
    );
    let ids: Vec<String> = c
        .list_conversions()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [failed.id.clone(), cv.id.clone()], "newest first");
    c.delete_conversion(&cv.id).await.unwrap();
    assert!(matches!(
        c.delete_conversion(&cv.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        c.get_conversion(&cv.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    let json = serde_json::to_value(c.get_conversion(&failed.id).await.unwrap()).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["error"]["message"], "No space left.");
}

#[tokio::test]
async fn settings_get_set_delete_all() {
    let t = open().await;
    let c = &t.catalog;
    assert_eq!(c.get_setting("theme").await.unwrap(), None);
    c.set_setting("theme", &json!("dark")).await.unwrap();
    c.set_setting("kv_memory_mb", &json!(2048)).await.unwrap();
    c.set_setting("theme", &json!("light")).await.unwrap();
    c.set_setting("nested", &json!({"a": [1, null, "x"]}))
        .await
        .unwrap();
    assert_eq!(c.get_setting("theme").await.unwrap(), Some(json!("light")));
    let all = c.all_settings().await.unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["kv_memory_mb", "nested", "theme"]
    );
    assert_eq!(all["nested"], json!({"a": [1, null, "x"]}));
    assert!(c.delete_setting("theme").await.unwrap());
    assert!(!c.delete_setting("theme").await.unwrap());
    assert_eq!(c.get_setting("theme").await.unwrap(), None);
    assert!(matches!(
        c.set_setting("", &json!(1)).await,
        Err(CatalogError::Invalid { .. })
    ));
}

#[tokio::test]
async fn unreadable_stored_values_are_corrupt_not_panics() {
    let t = open().await;
    let c = &t.catalog;
    let d = c.create_download(&download("org/a")).await.unwrap();
    let pool = common::raw(&t.path).await;
    sqlx::query("UPDATE downloads SET state = 'exploded'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('bad', '{', 0)")
        .execute(&pool)
        .await
        .unwrap();
    let err = c.get_download(&d.id).await.unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err}");
    assert_eq!(err.code(), "internal");
    assert!(matches!(
        c.get_setting("bad").await,
        Err(CatalogError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn in_memory_catalog_works() {
    let c = cortex_catalog::Catalog::open_in_memory().await.unwrap();
    let d = c.create_download(&download("org/a")).await.unwrap();
    assert_eq!(c.clone().get_download(&d.id).await.unwrap(), d);
    c.set_setting("k", &json!(true)).await.unwrap();
    assert_eq!(c.get_setting("k").await.unwrap(), Some(json!(true)));
}
