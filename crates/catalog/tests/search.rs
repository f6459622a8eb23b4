//! Listing conversations newest first, and searching their titles and message text (the trigram
//! index for queries of three or more characters, LIKE below that).

mod common;

use common::{check_invariants, open, raw};
use cortex_catalog::{MessageUpdate, NewConversation, NewMessage, Role};

fn user(parent: Option<&str>, text: &str) -> NewMessage {
    NewMessage::new(parent, Role::User, text)
}

fn assistant(parent: &str, text: &str) -> NewMessage {
    NewMessage::new(Some(parent), Role::Assistant, text)
}

#[tokio::test]
async fn list_is_newest_first_and_search_finds_titles_and_text() {
    let t = open().await;
    let c = &t.catalog;
    let mk = |title: &str| NewConversation {
        title: title.into(),
        ..Default::default()
    };
    let a = c.create_conversation(&mk("Rust lifetimes")).await.unwrap();
    t.clock.advance(1);
    let b = c.create_conversation(&mk("Cooking")).await.unwrap();
    t.clock.advance(1);
    let d = c.create_conversation(&mk("100% juice")).await.unwrap();
    t.clock.advance(1);
    let q = c
        .add_message(&b.id, &user(None, "How do I deserialize a Crème brûlée?"))
        .await
        .unwrap();
    c.add_message(&b.id, &assistant(&q.id, "You don't; you eat it."))
        .await
        .unwrap();

    let ids =
        |v: Vec<cortex_catalog::Conversation>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(c.list_conversations(None).await.unwrap()),
        [b.id.as_str(), d.id.as_str(), a.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("   ")).await.unwrap()),
        [b.id.as_str(), d.id.as_str(), a.id.as_str()]
    );
    // Substrings of three or more characters use the trigram index, case-insensitively.
    assert_eq!(
        ids(c.list_conversations(Some("SERIAL")).await.unwrap()),
        [b.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("brûlée")).await.unwrap()),
        [b.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("lifetime")).await.unwrap()),
        [a.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("\"eat it\"")).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(c.list_conversations(Some("eat it")).await.unwrap()),
        [b.id.as_str()]
    );
    // Shorter ones scan, and LIKE wildcards in the query are plain characters.
    assert_eq!(
        ids(c.list_conversations(Some("0%")).await.unwrap()),
        [d.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("%")).await.unwrap()),
        [d.id.as_str()]
    );
    assert_eq!(
        ids(c.list_conversations(Some("_")).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(c.list_conversations(Some("Ru")).await.unwrap()),
        [a.id.as_str()]
    );
    // Edited text is found by its new content only.
    c.update_message(
        &q.id,
        &MessageUpdate {
            content: Some("tarte tatin".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(c
        .list_conversations(Some("serial"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(c.list_conversations(Some("tatin")).await.unwrap()),
        [b.id.as_str()]
    );
    // Deleted conversations leave the index.
    c.delete_conversation(&b.id).await.unwrap();
    assert!(c
        .list_conversations(Some("tatin"))
        .await
        .unwrap()
        .is_empty());
    check_invariants(&raw(&t.path).await).await;
}
