//! A writer killed with SIGKILL in the middle of its writes leaves a database that passes
//! `PRAGMA integrity_check`, holds no half-written transaction, and can be written again.
//!
//! The test binary runs itself as the writer: `crash_writer_child` does nothing unless the
//! environment names a database, in which case it writes until it is killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{check_invariants, count, raw};
use cortex_catalog::{
    Catalog, DownloadState, DownloadUpdate, FinishReason, MessageStats, MessageUpdate,
    NewConversation, NewDownload, NewMessage, Role,
};

const WRITER_ENV: &str = "CORTEX_CATALOG_CRASH_WRITER";

#[tokio::test]
async fn crash_writer_child() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let c = Catalog::open(&path).await.unwrap();
    for i in 0u64.. {
        let conv = c
            .create_conversation(&NewConversation {
                title: format!("chat {i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let q = c
            .add_message(
                &conv.id,
                &NewMessage::new(None, Role::User, format!("question {i}")),
            )
            .await
            .unwrap();
        let a = c
            .add_message(&conv.id, &NewMessage::new(Some(&q.id), Role::Assistant, ""))
            .await
            .unwrap();
        let stats = MessageStats {
            prompt_tokens: 5,
            completion_tokens: 7,
            cached_tokens: 0,
            ttft_ms: 3,
            tokens_per_s: 9.0,
            finish_reason: FinishReason::Stop,
        };
        let end = MessageUpdate {
            content: Some(format!("answer {i} ").repeat(50)),
            stats: Some(Some(stats)),
            error: None,
        };
        c.update_message(&a.id, &end).await.unwrap();
        let d = c
            .create_download(&NewDownload {
                repo: format!("org/m{i}"),
                revision: "main".into(),
                include: None,
            })
            .await
            .unwrap();
        let progress = DownloadUpdate {
            state: Some(DownloadState::Running),
            done_bytes: Some(i as i64),
            ..Default::default()
        };
        c.update_download(&d.id, &progress).await.unwrap();
        println!("wrote {i}");
    }
}

/// Runs the writer on `path` until it reports `rounds` loops, then kills it with SIGKILL.
fn write_then_kill(path: &std::path::Path, rounds: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let target = format!("wrote {rounds}");
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == target => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("the writer stopped before {target:?}: {e}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no rollback, no checkpoint
    child.wait().unwrap();
}

#[test]
fn a_writer_killed_mid_write_leaves_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 1..=5 {
        write_then_kill(&path, 20 * round);
        runtime.block_on(async {
            let pool = raw(&path).await;
            check_invariants(&pool).await;
            // add_message inserts the message and moves the leaf in one transaction: the leaf is
            // always the newest message of its conversation, never a message without the move.
            let stale = count(
                &pool,
                "SELECT COUNT(*) FROM conversations c WHERE c.current_leaf_id IS NOT \
                 (SELECT id FROM messages m WHERE m.conversation_id = c.id ORDER BY seq DESC LIMIT 1)",
            )
            .await;
            assert_eq!(stale, 0, "a message whose leaf move was lost, or the reverse");
            let messages = count(&pool, "SELECT COUNT(*) FROM messages").await;
            assert!(messages >= 2 * 20 * round as i64, "{messages} messages");
            pool.close().await;

            // The catalog opens and takes writes after the crash.
            let c = Catalog::open(&path).await.unwrap();
            let conv = c.create_conversation(&NewConversation::default()).await.unwrap();
            c.add_message(&conv.id, &NewMessage::new(None, Role::User, "after the crash")).await.unwrap();
            assert!(!c.list_conversations(Some("after the crash")).await.unwrap().is_empty());
            c.close().await;
        });
    }
}
