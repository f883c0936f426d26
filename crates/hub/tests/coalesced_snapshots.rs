//! Issue 18: context snapshots are coalesced (at most one per topic every
//! `SNAPSHOT_EVERY` or `SNAPSHOT_EVERY_EVENTS` changes) and the changes in
//! between live only in the journal. `kill -9` right after a burst of
//! acknowledged changes must still bring back exactly the current context:
//! the last snapshot plus the journal tail, replayed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::*;
use lockstep_hub::storage::{Storage, SNAPSHOT_EVERY};
use serde_json::{json, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    hub_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, port: u16) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-hub"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args([
            "--no-dashboard-link",
            "--no-auth",
            "--secret-store",
            "memory",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lockstep-hub");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hub_url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(hub_url.starts_with("http://127.0.0.1:"), "ready: {line:?}");
    Running { child, hub_url }
}

/// No pooling: the restarted hub is a new process on the same port.
fn client() -> reqwest::Client {
    lockstep_hub::tls::http_client()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn publish(http: &reqwest::Client, hub_url: &str, event: &Value) -> Value {
    let res = http.post(hub_url).json(event).send().await.unwrap();
    assert!(res.status().is_success(), "publish: {}", res.status());
    res.json().await.unwrap()
}

fn version_of(answer: &Value) -> String {
    answer["event"]["event"]["context.versionId"]
        .as_str()
        .expect("a versionId in the answer")
        .to_owned()
}

#[tokio::test]
async fn kill_9_after_a_burst_restores_the_context_from_snapshot_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = start(dir.path(), port);
    let http = client();
    let topic = topic();

    // A burst of every kind of change: opens (one resumed), content-sharing
    // updates, a close of the current context, a close of an older one.
    let burst_started = Instant::now();
    let r1 = publish(&http, &hub.hub_url, &report_open(&topic, "r1", "p1")).await;
    let mut version = version_of(&r1);
    for i in 0..3 {
        let update = report_update(
            &topic,
            "r1",
            &version,
            json!([put_observation(&format!("o{i}"))]),
        );
        version = version_of(&publish(&http, &hub.hub_url, &update).await);
    }
    publish(&http, &hub.hub_url, &report_open(&topic, "r2", "p2")).await;
    publish(&http, &hub.hub_url, &patient_open(&topic, "p3")).await;
    publish(&http, &hub.hub_url, &patient_close(&topic, "p3")).await;
    // Back to r1: resumed with its content and version.
    publish(&http, &hub.hub_url, &report_open(&topic, "r1", "p1")).await;
    let update = report_update(&topic, "r1", &version, json!([put_observation("o9")]));
    publish(&http, &hub.hub_url, &update).await;
    let before = get_json(&http, &format!("{}/{topic}", hub.hub_url)).await;
    assert_eq!(before["context.type"], "DiagnosticReport", "{before}");

    // SIGKILL: no shutdown flush, no snapshot of the tail.
    let status = Command::new("kill")
        .args(["-9", &hub.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let burst_took = burst_started.elapsed();
    let hub_url = hub.hub_url.clone();
    drop(hub);

    {
        // What is on disk: the snapshot written at the burst's first change,
        // and the rest of the burst in the journal after it.
        let (storage, _) = Storage::open(dir.path()).unwrap();
        let snapshot = storage
            .load_context_snapshots()
            .unwrap()
            .into_iter()
            .find(|s| s.topic == topic)
            .expect("the topic's contexts were saved");
        let tail = storage
            .journal_tail(&topic, snapshot.journal_seq, 1000)
            .unwrap();
        // Deterministic while the burst is shorter than SNAPSHOT_EVERY: the
        // first change saved at once; no later one nor the timer was due.
        if burst_took < SNAPSHOT_EVERY {
            assert_eq!(tail.len(), 8, "the burst after its first change");
        } else {
            eprintln!(
                "slow machine: burst took {burst_took:?}; tail {}",
                tail.len()
            );
        }
    }

    let hub = start(dir.path(), port);
    assert_eq!(hub.hub_url, hub_url);
    let after = get_json(&http, &format!("{}/{topic}", hub.hub_url)).await;
    assert_eq!(after, before, "the context after kill -9 and restart");

    // And the stack behind it: closing r1 makes nothing current, then the
    // resumed r2 still carries its own version.
    let close = event(
        &topic,
        "DiagnosticReport-close",
        json!([{"key": "report", "resource": {"resourceType": "DiagnosticReport", "id": "r1"}},
               {"key": "patient", "resource": patient("p1")}]),
    );
    publish(&http, &hub.hub_url, &close).await;
    let update = report_update(&topic, "r1", &version, json!([]));
    let res = http.post(&hub.hub_url).json(&update).send().await.unwrap();
    assert_eq!(res.status(), 409, "r1 is closed after the replay too");
}

/// The journal's size bound never prunes rows a snapshot still needs: the
/// topic's rows after its snapshot stay, however much else is pruned.
#[tokio::test]
async fn pruning_keeps_the_journal_tail_after_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (storage, _) = Storage::open(dir.path()).unwrap();
        storage
            .append_event("t", "e0", "Patient-open", "{}")
            .await
            .unwrap();
        storage
            .save_contexts_json("t", r#"{"open":[]}"#.into())
            .await
            .unwrap();
        for id in ["e1", "e2", "e3"] {
            storage
                .append_event("t", id, "Patient-open", "{}")
                .await
                .unwrap();
        }
        let big = format!("\"{}\"", "x".repeat(2000));
        for n in 0..100 {
            storage
                .append_event("u", &format!("u{n}"), "Patient-open", &big)
                .await
                .unwrap();
        }
        storage.set_journal_max_bytes(20_000);
        // Dropping the last handle prunes down to the bound before closing.
    }
    let (storage, _) = Storage::open(dir.path()).unwrap();
    let ids: Vec<String> = storage
        .journal_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert!(
        !ids.contains(&"e0".to_owned()),
        "before the snapshot: prunable"
    );
    for id in ["e1", "e2", "e3"] {
        assert!(
            ids.contains(&id.to_owned()),
            "tail row {id} pruned: {ids:?}"
        );
    }
    let others = ids.iter().filter(|i| i.starts_with('u')).count();
    assert!(
        others < 10,
        "the bound still holds for the rest: {others} rows"
    );
    assert!(ids.contains(&"u99".to_owned()), "the newest stay");
    let snapshot = &storage.load_context_snapshots().unwrap()[0];
    assert_eq!(snapshot.journal_seq, 1, "stamped with the append before it");
    let tail = storage.journal_tail("t", snapshot.journal_seq, 10).unwrap();
    assert_eq!(tail.len(), 3);
}

/// A journal tail that cannot be applied (here: a close of a context the
/// snapshot does not hold) discards the topic's context instead of
/// restoring half a session.
#[tokio::test]
async fn a_tail_that_cannot_be_replayed_discards_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let topic = topic();
    {
        let hub = TestHub::start_in(dir.path(), |c| c.persist = true).await;
        hub.publish_ok(&patient_open(&topic, "p1")).await;
        assert_eq!(hub.context(&topic).await["context.type"], "Patient");
        hub.stop().await;
    }
    {
        let (storage, _) = Storage::open(dir.path()).unwrap();
        let close = patient_close(&topic, "p-never-opened");
        storage
            .append_event(&topic, "bad", "Patient-close", &close.to_string())
            .await
            .unwrap();
        storage
            .mark_alive(std::time::SystemTime::now())
            .await
            .unwrap();
    }
    let hub = TestHub::start_in(dir.path(), |c| c.persist = true).await;
    let after = hub.context(&topic).await;
    assert_ne!(after["context.type"], "Patient", "not restored: {after}");
    let storage = hub.hub.storage().unwrap();
    storage.flush().await.unwrap();
    assert!(
        storage
            .load_contexts()
            .unwrap()
            .iter()
            .all(|(t, _, _)| t != &topic),
        "the discarded snapshot is deleted"
    );
    hub.stop().await;
}
