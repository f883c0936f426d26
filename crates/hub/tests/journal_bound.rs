//! Issue 14.7: the event journal is bounded by size as well as by age.
//! With a 1 MB bound, ~6 MB of events are published through a real hub;
//! after it stops (a checkpoint), `lockstep.db` and its WAL stay within
//! the bound plus a stated margin, the newest events are still in the
//! journal and the oldest are gone; the dashboard's read model carries the
//! database size.

mod common;

use common::{event, patient, topic, TestHub};
use lockstep_hub::storage::{Storage, DB_FILE};
use serde_json::json;

const CAP: u64 = 1024 * 1024;
/// What the file may hold beyond the journal's bound: the audit trail (one
/// row per publish here), the saved context, SQLite's pages and the
/// writes that land before a pruning step.
const MARGIN: u64 = 1024 * 1024;
const EVENT_BYTES: usize = 50 * 1024;
const EVENTS: usize = 120;

/// Publishes `EVENTS` events of about `EVENT_BYTES` each; returns their ids.
async fn publish_burst(hub: &TestHub) -> Vec<String> {
    let topic = topic();
    let _pacs = hub.subscribe(&topic, "Patient-open,Patient-close").await;
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        // Open and close in turn: one saved context at most, so what grows
        // is the journal.
        let name = if n % 2 == 0 {
            "Patient-open"
        } else {
            "Patient-close"
        };
        let mut resource = patient("p1");
        resource["text"] = json!({"status": "generated", "div": format!("<div>{}</div>", "x".repeat(EVENT_BYTES))});
        let message = event(
            &topic,
            name,
            json!([{"key": "patient", "resource": resource}]),
        );
        hub.publish_ok(&message).await;
        ids.push(message["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn on_disk(data: &std::path::Path) -> u64 {
    [DB_FILE.to_owned(), format!("{DB_FILE}-wal")]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn the_journal_stays_within_its_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let hub = TestHub::start_with(|c| {
        c.data_dir = data.clone();
        c.journal_max_bytes = CAP;
    })
    .await;
    let ids = publish_burst(&hub).await;

    // The dashboard sees the database size.
    let state: serde_json::Value = hub
        .http
        .get(hub.url("/admin/api/state"))
        .header("authorization", format!("Bearer {}", hub.hub.admin_token()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = state["hub"]["databaseBytes"]
        .as_u64()
        .expect("databaseBytes");
    assert!(shown > 0, "{}", state["hub"]);
    assert_eq!(state["hub"]["journalMaxBytes"], CAP);

    hub.stop().await; // The last connection closes: SQLite checkpoints.
    let on_disk = on_disk(&data);
    let published = (EVENTS * EVENT_BYTES) as u64;
    assert!(
        published > 5 * CAP,
        "the test publishes well past the bound"
    );
    assert!(
        on_disk <= CAP + MARGIN,
        "lockstep.db + WAL = {on_disk} bytes after {published} bytes of events, bound {CAP} + margin {MARGIN}"
    );
    println!("journal bound {CAP}: {published} bytes published, {on_disk} bytes on disk");

    let (storage, _) = Storage::open(&data).unwrap();
    let journal = storage.journal_after(0, 1000).unwrap();
    let kept: Vec<&str> = journal.iter().map(|e| e.event_id.as_str()).collect();
    assert!(
        kept.len() >= 10 && kept.len() < EVENTS,
        "{} kept",
        kept.len()
    );
    assert_eq!(
        kept,
        ids[EVENTS - kept.len()..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "the newest events are kept, in order; the oldest are gone"
    );
}

/// The control: the same burst with the default bound (64 MB) keeps every
/// event, so the bound above is what pruned them.
#[tokio::test]
async fn under_the_default_bound_the_same_burst_is_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let hub = TestHub::start_with(|c| c.data_dir = data.clone()).await;
    let ids = publish_burst(&hub).await;
    hub.stop().await;
    assert!(on_disk(&data) > (EVENTS * EVENT_BYTES) as u64);
    let (storage, _) = Storage::open(&data).unwrap();
    assert_eq!(storage.journal_after(0, 1000).unwrap().len(), ids.len());
}
