//! Many readers and writers at once, through two catalogs opened on the same file, never fail:
//! writers wait for each other instead of returning "database is locked".

mod common;

use common::{check_invariants, count, folder_model, open, raw};
use cortex_catalog::{
    Catalog, DownloadUpdate, MessageUpdate, NewConversation, NewDownload, NewMessage, Role,
};

const TASKS: usize = 8;
const ROUNDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_and_writers_never_fail() {
    let t = open().await;
    let second = Catalog::open(&t.path)
        .await
        .unwrap()
        .with_clock(t.clock.clone());
    let catalogs = [t.catalog.clone(), second.clone()];

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..TASKS {
        let c = catalogs[w % 2].clone();
        tasks.spawn(async move {
            let conv = c
                .create_conversation(&NewConversation {
                    title: format!("writer {w}"),
                    ..Default::default()
                })
                .await?;
            let mut parent: Option<String> = None;
            for r in 0..ROUNDS {
                let role = if r % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                let m = c
                    .add_message(
                        &conv.id,
                        &NewMessage::new(parent.as_deref(), role, format!("w{w} r{r}")),
                    )
                    .await?;
                c.update_message(
                    &m.id,
                    &MessageUpdate {
                        content: Some(format!("w{w} r{r} done")),
                        ..Default::default()
                    },
                )
                .await?;
                parent = Some(m.id);
                let d = c
                    .create_download(&NewDownload {
                        repo: format!("org/w{w}r{r}"),
                        revision: "main".into(),
                        include: None,
                    })
                    .await?;
                c.update_download(
                    &d.id,
                    &DownloadUpdate {
                        done_bytes: Some(r as i64),
                        ..Default::default()
                    },
                )
                .await?;
                c.set_setting(&format!("writer.{w}"), &serde_json::json!(r))
                    .await?;
                let model = c
                    .upsert_model(&folder_model(
                        &format!("m{w}-{r}"),
                        format!("/m/{w}/{r}").as_ref(),
                    ))
                    .await?
                    .model;
                c.touch_model(&model.id).await?;
            }
            Ok::<_, cortex_catalog::CatalogError>(())
        });
    }
    for r in 0..TASKS {
        let c = catalogs[(r + 1) % 2].clone();
        tasks.spawn(async move {
            for i in 0..ROUNDS * 3 {
                let convs = c
                    .list_conversations(if i % 3 == 0 { Some("done") } else { None })
                    .await?;
                if let Some(conv) = convs.first() {
                    c.list_messages(&conv.id).await?;
                    if let Some(leaf) = c.get_conversation(&conv.id).await?.current_leaf_id {
                        c.path_to_root(&leaf).await?;
                    }
                }
                c.list_models().await?;
                c.unfinished_downloads().await?;
                c.all_settings().await?;
            }
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task panicked").expect("an operation failed");
    }

    let pool = raw(&t.path).await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM messages").await,
        (TASKS * ROUNDS) as i64
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM downloads").await,
        (TASKS * ROUNDS) as i64
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM models").await,
        (TASKS * ROUNDS) as i64
    );
    check_invariants(&pool).await;
    for conv in t.catalog.list_conversations(None).await.unwrap() {
        let leaf = conv.current_leaf_id.unwrap();
        assert_eq!(
            t.catalog.path_to_root(&leaf).await.unwrap().len(),
            ROUNDS,
            "one unbroken chain per writer"
        );
    }
}
