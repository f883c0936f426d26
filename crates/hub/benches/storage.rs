//! What durability costs per event: `append_event` on a real file (WAL,
//! `synchronous = NORMAL`), awaited one at a time and 100 at once (group
//! commit), with a 1 KB message.
//! `cargo bench -p lockstep-hub --bench storage`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_hub::storage::Storage;
use serde_json::json;

fn message(n: usize) -> String {
    let mut m = json!({
        "timestamp": "2026-11-22T10:42:00.000Z",
        "id": format!("bench-{n}"),
        "event": {"hub.topic": "t", "hub.event": "Patient-open", "context": [
            {"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]},
    })
    .to_string();
    let pad = 1024usize.saturating_sub(m.len() + 12);
    m.insert_str(m.len() - 1, &format!(",\"pad\":\"{}\"", "x".repeat(pad)));
    m
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) = Storage::open(dir.path()).unwrap();
    let body = message(1);
    assert!((1000..1100).contains(&body.len()), "{}", body.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("journal append 1KB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("awaited one at a time", |b| {
        b.iter(|| {
            runtime
                .block_on(storage.append_event("t", "bench", "Patient-open", &body))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("100 concurrent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..100)
                    .map(|_| {
                        let storage = storage.clone();
                        let body = body.clone();
                        tokio::spawn(async move {
                            storage
                                .append_event("t", "bench", "Patient-open", &body)
                                .await
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
    let stats = storage.stats();
    eprintln!(
        "writer: {} writes in {} commits ({:.1} per commit)",
        stats.writes,
        stats.commits,
        stats.writes as f64 / stats.commits.max(1) as f64
    );
}

criterion_group!(benches, append);
criterion_main!(benches);
