//! Conversations as message trees: creation, patches, leaves, siblings, paths, search, cascade.
//! The schema's invariants are checked after the operations of every test.

mod common;

use common::{check_invariants, open, raw, T0};
use cortex_catalog::{
    CatalogError, ConversationPatch, ErrorInfo, FinishReason, MessageStats, MessageUpdate,
    ModelSettings, NewConversation, NewMessage, Role,
};

fn user(parent: Option<&str>, text: &str) -> NewMessage {
    NewMessage::new(parent, Role::User, text)
}

fn assistant(parent: &str, text: &str) -> NewMessage {
    NewMessage::new(Some(parent), Role::Assistant, text)
}

#[tokio::test]
async fn create_get_patch_and_delete() {
    let t = open().await;
    let c = &t.catalog;
    let new = NewConversation {
        title: "Trip".into(),
        system_prompt: Some("You plan trips.".into()),
        settings: ModelSettings {
            temperature: Some(0.5),
            ..Default::default()
        },
        ..Default::default()
    };
    let conv = c.create_conversation(&new).await.unwrap();
    assert!(conv.id.starts_with("cnv_"));
    assert_eq!(
        (
            conv.created_at,
            conv.updated_at,
            conv.current_leaf_id.as_deref()
        ),
        (T0, T0, None)
    );
    assert_eq!(c.get_conversation(&conv.id).await.unwrap(), conv);

    t.clock.advance(5);
    let patch = ConversationPatch {
        title: Some("Trip to Lyon".into()),
        system_prompt: Some(None),
        settings: Some(ModelSettings {
            max_tokens: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    };
    let patched = c.update_conversation(&conv.id, &patch).await.unwrap();
    assert_eq!(patched.title, "Trip to Lyon");
    assert_eq!(patched.system_prompt, None);
    assert_eq!(patched.settings.max_tokens, Some(100));
    assert_eq!(patched.updated_at, T0 + 5);
    assert_eq!(patched.created_at, T0);

    let bad_model = ConversationPatch {
        model_id: Some(Some("mdl_missing".into())),
        ..Default::default()
    };
    assert!(matches!(
        c.update_conversation(&conv.id, &bad_model).await,
        Err(CatalogError::Invalid { .. })
    ));
    let bad_new = NewConversation {
        model_id: Some("mdl_missing".into()),
        ..Default::default()
    };
    assert!(matches!(
        c.create_conversation(&bad_new).await,
        Err(CatalogError::Invalid { .. })
    ));
    let bad_settings = ConversationPatch {
        settings: Some(ModelSettings {
            temperature: Some(-1.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        c.update_conversation(&conv.id, &bad_settings).await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.update_conversation("cnv_x", &patch).await,
        Err(CatalogError::NotFound { .. })
    ));

    c.delete_conversation(&conv.id).await.unwrap();
    assert!(matches!(
        c.get_conversation(&conv.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        c.delete_conversation(&conv.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    check_invariants(&raw(&t.path).await).await;
}

#[tokio::test]
async fn a_tree_with_edits_and_regenerations() {
    let t = open().await;
    let c = &t.catalog;
    let conv = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let q1 = c
        .add_message(&conv.id, &user(None, "capital of France?"))
        .await
        .unwrap();
    let a1 = c
        .add_message(&conv.id, &assistant(&q1.id, "Paris."))
        .await
        .unwrap();
    // Regenerate: a sibling of a1, at the same instant (ordering must then fall back to insertion).
    let a1b = c
        .add_message(&conv.id, &assistant(&q1.id, "It is Paris."))
        .await
        .unwrap();
    t.clock.advance(1);
    // Edit the first question: a second root.
    let q1b = c
        .add_message(&conv.id, &user(None, "capital of Italy?"))
        .await
        .unwrap();
    let a2 = c
        .add_message(&conv.id, &assistant(&q1b.id, "Rome."))
        .await
        .unwrap();
    let q2 = c
        .add_message(&conv.id, &user(Some(&a1.id), "and Spain?"))
        .await
        .unwrap();

    assert_eq!(
        c.get_conversation(&conv.id)
            .await
            .unwrap()
            .current_leaf_id
            .as_deref(),
        Some(q2.id.as_str())
    );
    let ids = |ms: Vec<cortex_catalog::Message>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(c.list_messages(&conv.id).await.unwrap()),
        [
            q1.id.as_str(),
            a1.id.as_str(),
            a1b.id.as_str(),
            q1b.id.as_str(),
            a2.id.as_str(),
            q2.id.as_str()
        ]
    );
    assert_eq!(
        ids(c.children(&q1.id).await.unwrap()),
        [a1.id.as_str(), a1b.id.as_str()]
    );
    assert!(c.children(&q2.id).await.unwrap().is_empty());
    assert_eq!(
        ids(c.path_to_root(&q2.id).await.unwrap()),
        [q1.id.as_str(), a1.id.as_str(), q2.id.as_str()]
    );
    assert_eq!(
        ids(c.path_to_root(&a2.id).await.unwrap()),
        [q1b.id.as_str(), a2.id.as_str()]
    );
    assert_eq!(ids(c.path_to_root(&q1.id).await.unwrap()), [q1.id.as_str()]);

    // Switch branches.
    let switched = c.set_current_leaf(&conv.id, &a1b.id).await.unwrap();
    assert_eq!(switched.current_leaf_id.as_deref(), Some(a1b.id.as_str()));
    let cleared = c
        .update_conversation(
            &conv.id,
            &ConversationPatch {
                current_leaf_id: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.current_leaf_id, None);
    check_invariants(&raw(&t.path).await).await;
}

#[tokio::test]
async fn parents_and_leaves_must_belong_to_the_conversation() {
    let t = open().await;
    let c = &t.catalog;
    let one = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let two = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let m1 = c.add_message(&one.id, &user(None, "hi")).await.unwrap();
    let m2 = c.add_message(&two.id, &user(None, "hello")).await.unwrap();

    let err = c
        .add_message(&two.id, &user(Some(&m1.id), "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Invalid {
                what: "parent_id",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        c.add_message(&two.id, &user(Some("msg_nope"), "x")).await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.add_message("cnv_nope", &user(None, "x")).await,
        Err(CatalogError::NotFound { .. })
    ));

    let err = c.set_current_leaf(&two.id, &m1.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Invalid {
                what: "current_leaf_id",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        c.set_current_leaf(&two.id, "msg_nope").await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.set_current_leaf("cnv_nope", &m2.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert_eq!(
        c.get_conversation(&two.id)
            .await
            .unwrap()
            .current_leaf_id
            .as_deref(),
        Some(m2.id.as_str())
    );

    for missing in [
        c.list_messages("cnv_nope").await,
        c.children("msg_nope").await,
        c.path_to_root("msg_nope").await,
    ] {
        assert!(matches!(missing, Err(CatalogError::NotFound { .. })));
    }
    check_invariants(&raw(&t.path).await).await;
}

#[tokio::test]
async fn a_streamed_reply_is_saved_at_its_start_and_its_end() {
    let t = open().await;
    let c = &t.catalog;
    let conv = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let q = c
        .add_message(&conv.id, &user(None, "count to 3"))
        .await
        .unwrap();
    let mut started = assistant(&q.id, "");
    started.model_id = Some("mdl_0123456789abcdef".into());
    let a = c.add_message(&conv.id, &started).await.unwrap();
    assert_eq!(
        (a.content.as_str(), a.stats.as_ref(), a.role),
        ("", None, Role::Assistant)
    );

    t.clock.advance(100);
    let partial = c
        .update_message(
            &a.id,
            &MessageUpdate {
                content: Some("1, 2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(partial.content, "1, 2");
    let stats = MessageStats {
        prompt_tokens: 12,
        completion_tokens: 5,
        cached_tokens: 3,
        ttft_ms: 40,
        tokens_per_s: 21.5,
        finish_reason: FinishReason::Stop,
    };
    let done = MessageUpdate {
        content: Some("1, 2, 3".into()),
        stats: Some(Some(stats.clone())),
        ..Default::default()
    };
    let final_ = c.update_message(&a.id, &done).await.unwrap();
    assert_eq!(final_.content, "1, 2, 3");
    assert_eq!(final_.stats, Some(stats));
    assert_eq!(final_.created_at, T0, "created_at is the start");
    assert_eq!(
        c.get_conversation(&conv.id).await.unwrap().updated_at,
        T0 + 100
    );
    assert_eq!(c.get_message(&a.id).await.unwrap(), final_);

    let failed = MessageUpdate {
        error: Some(Some(ErrorInfo::new("model_load_failed", "out of memory"))),
        stats: Some(None),
        ..Default::default()
    };
    let f = c.update_message(&a.id, &failed).await.unwrap();
    assert_eq!(
        (f.stats, f.error.map(|e| e.code)),
        (None, Some("model_load_failed".to_string()))
    );
    let bad = MessageUpdate {
        stats: Some(Some(MessageStats {
            tokens_per_s: f64::NAN,
            ..final_.stats.clone().unwrap()
        })),
        ..Default::default()
    };
    assert!(matches!(
        c.update_message(&a.id, &bad).await,
        Err(CatalogError::Invalid { .. })
    ));
    assert!(matches!(
        c.update_message("msg_nope", &MessageUpdate::default())
            .await,
        Err(CatalogError::NotFound { .. })
    ));

    let json = serde_json::to_value(&final_).unwrap();
    assert_eq!(json["stats"]["finish_reason"], "stop");
    assert_eq!(json["role"], "assistant");
    check_invariants(&raw(&t.path).await).await;
}

#[tokio::test]
async fn deleting_a_conversation_deletes_its_whole_tree_only() {
    let t = open().await;
    let c = &t.catalog;
    let keep = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let drop = c
        .create_conversation(&NewConversation::default())
        .await
        .unwrap();
    let k = c.add_message(&keep.id, &user(None, "keep")).await.unwrap();
    let mut parent = c.add_message(&drop.id, &user(None, "root")).await.unwrap();
    for i in 0..20 {
        let role = if i % 2 == 0 {
            Role::Assistant
        } else {
            Role::User
        };
        parent = c
            .add_message(
                &drop.id,
                &NewMessage::new(Some(&parent.id), role, format!("m{i}")),
            )
            .await
            .unwrap();
        c.add_message(
            &drop.id,
            &NewMessage::new(Some(&parent.id), Role::Assistant, "side"),
        )
        .await
        .unwrap();
    }
    c.delete_conversation(&drop.id).await.unwrap();
    let pool = raw(&t.path).await;
    assert_eq!(
        common::count(&pool, "SELECT COUNT(*) FROM messages").await,
        1
    );
    assert_eq!(c.list_messages(&keep.id).await.unwrap()[0], k);
    check_invariants(&pool).await;
}

#[tokio::test]
async fn conversation_json_has_the_app_api_shape() {
    let t = open().await;
    let conv = t
        .catalog
        .create_conversation(&NewConversation {
            title: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let json = serde_json::to_value(&conv).unwrap();
    for key in [
        "id",
        "title",
        "model_id",
        "system_prompt",
        "settings",
        "current_leaf_id",
        "created_at",
        "updated_at",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    let m = t
        .catalog
        .add_message(&conv.id, &user(None, "hi"))
        .await
        .unwrap();
    let json = serde_json::to_value(&m).unwrap();
    for key in [
        "id",
        "parent_id",
        "role",
        "content",
        "created_at",
        "model_id",
        "stats",
        "error",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
}
