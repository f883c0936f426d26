//! A real crash: a child process (this test binary, re-run in "writer"
//! mode) appends events and prints each seq once its append resolved; the
//! parent kills it with SIGKILL mid-stream, reopens the database and finds
//! every printed seq, the subscription and the saved contexts.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockstep_hub::storage::{Storage, StoredSubscription};
use serde_json::json;

const CHILD_ENV: &str = "LOCKSTEP_STORAGE_CRASH_CHILD_DIR";

/// The writer mode. As a normal test (env var unset) it does nothing.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let (storage, _) = Storage::open(dir.as_ref()).unwrap();
        let sub = StoredSubscription {
            endpoint_id: "ep-crash".into(),
            topic: "t".into(),
            events: "Patient-open".into(),
            subscriber_name: Some("PACS".into()),
            client_id: None,
            lease_until: std::time::SystemTime::now() + Duration::from_secs(3600),
            created_at: std::time::SystemTime::now(),
            callback: None,
        };
        storage.upsert_subscription(&sub).await.unwrap();
        storage
            .save_contexts("t", &json!({"current": "Patient/p1"}))
            .await
            .unwrap();
        say("ready");
        // Four publishers at once, so batches are in flight when we die.
        // Bounded, so an orphan (parent gone) stops by itself.
        let deadline = Instant::now() + Duration::from_secs(60);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let id = format!("w{w}-{n}");
                        let message = json!({"id": id, "pad": "x".repeat(1000)}).to_string();
                        let seq = storage
                            .append_event("t", &id, "Patient-open", &message)
                            .await
                            .unwrap();
                        say(&format!("seq {seq} {id}"));
                        n += 1;
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}

/// A line on the real stdout (not the test harness's capture); a parent
/// that went away ends the child.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

#[cfg(unix)]
#[test]
fn every_acknowledged_append_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("child output")
    };
    // The harness prints "test ... " before it on the same line.
    while !next().ends_with("ready") {}
    let mut acked: Vec<(u64, String)> = Vec::new();
    let parse = |line: String| {
        let mut parts = line.strip_prefix("seq ")?.split(' ');
        Some((parts.next()?.parse().ok()?, parts.next()?.to_owned()))
    };
    while acked.len() < 300 {
        acked.extend(parse(next()));
    }
    // SIGKILL, as `kill -9`: no destructor, no flush, no checkpoint.
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    reader.join().unwrap();
    // Lines already in the pipe were acknowledged before the kill too.
    acked.extend(lines.try_iter().filter_map(parse));

    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.moved_aside, None);
    let journal = storage.journal_after(0, usize::MAX).unwrap();
    let stored: std::collections::HashMap<u64, &str> = journal
        .iter()
        .map(|e| (e.seq, e.event_id.as_str()))
        .collect();
    for (seq, id) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(&id.as_str()),
            "acknowledged seq {seq} lost"
        );
    }
    eprintln!(
        "{} acknowledged appends, {} in the journal after kill -9",
        acked.len(),
        journal.len()
    );
    assert_eq!(
        storage.load_subscriptions().unwrap()[0].endpoint_id,
        "ep-crash"
    );
    assert_eq!(
        storage.load_contexts().unwrap()[0].1,
        json!({"current": "Patient/p1"})
    );
}
