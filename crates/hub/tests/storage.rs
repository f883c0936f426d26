//! The storage layer on real SQLite files in temp dirs: round trips of each
//! table, the journal under concurrency and across reopening, recovery from
//! corrupt files and migrations (`storage/recovery.rs`), the audit trail
//! (`storage/audit.rs`) and a real `kill -9` of a writing process
//! (`storage/crash.rs`). Writes are awaited, never slept on.

#[path = "storage/audit.rs"]
mod audit;
#[path = "storage/crash.rs"]
mod crash;
#[path = "storage/recovery.rs"]
mod recovery;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep_hub::storage::{to_unix_ms, App, Storage, StorageError, StoredSubscription, DB_FILE};
use serde_json::json;

pub fn open(dir: &Path) -> Storage {
    let (storage, report) = Storage::open(dir).expect("open storage");
    assert_eq!(report.moved_aside, None, "{report:?}");
    storage
}

/// A time with millisecond precision, as stored.
pub fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn subscription(endpoint_id: &str, lease_ms: i64) -> StoredSubscription {
    StoredSubscription {
        endpoint_id: endpoint_id.into(),
        topic: "topic-1".into(),
        events: "Patient-open,Patient-close".into(),
        subscriber_name: Some("PACS".into()),
        client_id: None,
        lease_until: at(lease_ms),
        created_at: at(1_000),
        callback: None,
    }
}

#[tokio::test]
async fn apps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let mut app = App {
        client_id: "ris".into(),
        name: "The RIS".into(),
        scopes: "fhircast/Patient-open.write fhircast/*.read".into(),
        topics: vec!["topic-1".into(), "topic, with comma".into()],
        created_at: at(5_000),
        revoked_at: None,
        secret_generation: 2,
        jwks: Some(r#"{"keys":[{"kty":"EC"}]}"#.into()),
        jwks_url: Some("https://ris.example/jwks".into()),
        acknowledges: false,
    };
    storage.save_app(&app).await.unwrap();
    assert_eq!(storage.load_apps().unwrap(), vec![app.clone()]);

    // A second save updates everything but created_at.
    let mut changed = app.clone();
    changed.name = "RIS 2".into();
    changed.created_at = at(9_000);
    changed.acknowledges = true;
    storage.save_app(&changed).await.unwrap();
    app.name = "RIS 2".into();
    app.acknowledges = true;
    assert_eq!(storage.load_apps().unwrap(), vec![app.clone()]);

    assert!(storage.revoke_app("ris", at(7_000)).await.unwrap());
    assert!(!storage.revoke_app("nobody", at(7_000)).await.unwrap());
    drop(storage);

    let storage = open(dir.path());
    app.revoked_at = Some(at(7_000));
    assert_eq!(storage.load_apps().unwrap(), vec![app]);
    assert!(storage.delete_app("ris").await.unwrap());
    assert!(!storage.delete_app("ris").await.unwrap());
    assert!(storage.load_apps().unwrap().is_empty());
}

#[tokio::test]
async fn subscriptions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let a = subscription("a".repeat(40).as_str(), 100_000);
    let mut b = subscription("b".repeat(40).as_str(), 200_000);
    b.subscriber_name = None;
    b.client_id = Some("pacs".into());
    storage.upsert_subscription(&a).await.unwrap();
    storage.upsert_subscription(&b).await.unwrap();

    // Renewal: new lease and events, created_at kept.
    let mut renewed = a.clone();
    renewed.lease_until = at(300_000);
    renewed.events = "Patient-open".into();
    renewed.callback = Some("http://127.0.0.1:9000/fhircast?app=ris".into());
    renewed.created_at = at(50_000);
    storage.upsert_subscription(&renewed).await.unwrap();
    renewed.created_at = a.created_at;

    assert!(storage.delete_subscription(&b.endpoint_id).await.unwrap());
    assert!(!storage.delete_subscription("gone").await.unwrap());
    drop(storage);

    let storage = open(dir.path());
    assert_eq!(storage.load_subscriptions().unwrap(), vec![renewed]);
}

#[tokio::test]
async fn contexts_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let before = SystemTime::now() - Duration::from_millis(1);
    let first = json!({"open": [{"anchor": "Patient/p1", "versionId": "v1"}]});
    let second = json!({"open": [{"anchor": "Patient/p2", "versionId": "v2",
                                  "content": {"entry": ["ünïcødé"]}}], "current": true});
    storage.save_contexts("t1", &first).await.unwrap();
    storage.save_contexts("t1", &second).await.unwrap();
    storage.save_contexts("t2", &first).await.unwrap();
    storage.save_contexts("t3", &first).await.unwrap();
    storage.delete_contexts("t3").await.unwrap();
    drop(storage);

    let storage = open(dir.path());
    let loaded = storage.load_contexts().unwrap();
    let topics: Vec<_> = loaded.iter().map(|(t, v, _)| (t.as_str(), v)).collect();
    assert_eq!(topics, vec![("t1", &second), ("t2", &first)]);
    for (_, _, saved_at) in &loaded {
        assert!(*saved_at >= before && *saved_at <= SystemTime::now());
    }
}

#[tokio::test]
async fn journal_seqs_increase_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let mut seqs = Vec::new();
    for n in 0..50 {
        let message = json!({"id": format!("e{n}"), "event": {"hub.event": "Patient-open"}});
        let seq = storage
            .append_event("t", &format!("e{n}"), "Patient-open", &message.to_string())
            .await
            .unwrap();
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    drop(storage);

    let storage = open(dir.path());
    let entries = storage.journal_after(0, 1000).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e.event_id, format!("e{n}"));
        assert_eq!(e.event_name, "Patient-open");
        assert_eq!(e.topic, "t");
        let message: serde_json::Value = serde_json::from_str(&e.message_json).unwrap();
        assert_eq!(message["id"], format!("e{n}"));
    }
    // Paging, and seqs are never reused after a restart.
    assert_eq!(storage.journal_after(seqs[47], 10).unwrap().len(), 2);
    let next = storage
        .append_event("t", "e50", "Patient-close", "{}")
        .await
        .unwrap();
    assert!(next > seqs[49]);

    // Pruning by age removes the old entries only.
    let pruned = storage
        .prune_journal(SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(pruned, 51);
    assert!(storage.journal_after(0, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let id = format!("e{n}");
                let seq = storage.append_event("t", &id, "Patient-open", "{}").await;
                (seq.unwrap(), id)
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    let stats = storage.stats();
    eprintln!("1000 appends in {} commits", stats.commits);
    assert!(stats.writes >= 1000 && stats.commits <= stats.writes);
    drop(storage);

    let storage = open(dir.path());
    let mut entries = storage.journal_after(0, 2000).unwrap();
    assert_eq!(entries.len(), 1000);
    done.sort();
    entries.sort_by_key(|e| e.seq);
    for ((seq, id), entry) in done.iter().zip(&entries) {
        assert_eq!((*seq, id), (entry.seq, &entry.event_id));
    }
}

/// SQLite's automatic checkpoint is off; the writer checkpoints the WAL
/// after answering. Writing ~10 000 pages of WAL (40 MB) leaves a WAL of at
/// most the forced-checkpoint size plus one append (without checkpoints it
/// would hold them all), and every event comes back after reopening.
#[tokio::test]
async fn the_writer_checkpoints_the_wal_and_loses_nothing() {
    const EVENTS: usize = 2500;
    /// `writer.rs`: a checkpoint runs after the batch that finds this many.
    const CHECKPOINT_NOW_PAGES: i64 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let message = |n: usize| format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(16 * 1024));
    for n in 0..EVENTS {
        let id = format!("e{n}");
        storage
            .append_event("t", &id, "Patient-open", &message(n))
            .await
            .unwrap();
    }
    // Answered after any checkpoint the last append's batch made due now.
    storage.flush().await.unwrap();
    let stats = storage.stats();
    assert!(stats.checkpoints >= 1, "{stats:?}");
    assert!(stats.wal_pages < CHECKPOINT_NOW_PAGES as u64, "{stats:?}");

    // SQLite's own count, from another connection: pages in the WAL now.
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let (busy, in_wal): (i64, i64) = db
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    assert!(
        (0..CHECKPOINT_NOW_PAGES).contains(&in_wal),
        "{in_wal} pages in the WAL"
    );
    drop(db);
    drop(storage);

    let storage = open(dir.path());
    let entries = storage.journal_after(0, 2 * EVENTS).unwrap();
    assert_eq!(entries.len(), EVENTS);
    for (n, entry) in entries.iter().enumerate() {
        assert_eq!(entry.event_id, format!("e{n}"));
        assert_eq!(entry.message_json, message(n));
    }
}

#[tokio::test]
async fn a_failed_write_is_reported_and_the_rest_of_the_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.flush().await.unwrap();
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute_batch("DROP TABLE contexts").unwrap();
    drop(db);

    let ok = storage.append_event("t", "e1", "Patient-open", "{}");
    let bad = storage.save_contexts("t", &json!({}));
    let ok_too = storage.mark_alive(at(42_000));
    assert!(ok.await.is_ok());
    let err = bad.await.unwrap_err();
    assert!(matches!(err, StorageError::Sqlite(_)), "{err}");
    assert!(err.to_string().contains("contexts"), "{err}");
    ok_too.await.unwrap();
    assert_eq!(storage.journal_after(0, 10).unwrap().len(), 1);
    assert_eq!(storage.last_alive().unwrap(), Some(at(42_000)));
}

#[test]
fn pending_wait_works_outside_a_runtime() {
    let storage = Storage::open_in_memory().unwrap();
    let seq = storage.append_event("t", "e1", "Patient-open", "{}").wait();
    assert_eq!(seq.unwrap(), 1);
    storage.mark_alive(at(5)).wait().unwrap();
    assert_eq!(storage.last_alive().unwrap(), Some(at(5)));
}

#[tokio::test]
async fn in_memory_storage_keeps_everything_until_dropped() {
    let storage = Storage::open_in_memory().unwrap();
    let other = Storage::open_in_memory().unwrap();
    assert_eq!(storage.path(), None);
    storage
        .upsert_subscription(&subscription("e", 1))
        .await
        .unwrap();
    storage.save_contexts("t", &json!([1])).await.unwrap();
    assert_eq!(storage.load_subscriptions().unwrap().len(), 1);
    assert_eq!(storage.load_contexts().unwrap().len(), 1);
    assert!(other.load_subscriptions().unwrap().is_empty(), "private");
}

#[test]
fn times_convert_to_unix_milliseconds() {
    assert_eq!(to_unix_ms(at(1_234)), 1_234);
    assert_eq!(to_unix_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
    assert_eq!(
        lockstep_hub::storage::from_unix_ms(-5),
        UNIX_EPOCH - Duration::from_millis(5)
    );
    // Absurd values from a damaged row never panic.
    let _ = lockstep_hub::storage::from_unix_ms(i64::MIN);
    let _ = lockstep_hub::storage::from_unix_ms(i64::MAX);
}
