//! The hot path of a publish, without sockets: validate the JSON body, apply
//! it to the topic's contexts, serialize once and enqueue for every
//! subscriber. `cargo bench -p lockstep-hub --bench hot_path`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lockstep_hub::bench_support::{publish, subscribe_local};
use lockstep_hub::{Config, Hub};
use serde_json::json;

fn patient_open(topic: &str, n: u64, padding: usize) -> Vec<u8> {
    json!({
        "timestamp": "2026-11-22T10:42:00.000Z",
        "id": format!("bench-{n}"),
        "event": {"hub.topic": topic, "hub.event": "Patient-open", "context": [{"key": "patient", "resource": {
            "resourceType": "Patient", "id": format!("p{n}"),
            "identifier": [{"system": "urn:mrn", "value": n.to_string()}],
            "name": [{"family": "Doe", "given": ["Jane"]}],
            "text": {"status": "generated", "div": "x".repeat(padding)},
        }}]},
    })
    .to_string()
    .into_bytes()
}

fn validate(c: &mut Criterion) {
    let body = patient_open("t", 1, 512);
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("patient-open 1KB", |b| {
        b.iter(|| fhircast::Event::parse(&body, fhircast::Version::Stu3).unwrap())
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("publish+fan-out");
    for subscribers in [1usize, 10, 100, 1000] {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
        config.queue_capacity = 4;
        config.persist = false;
        let hub = Hub::new(config);
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| subscribe_local(&hub, "t", "Patient-open"))
            .collect();
        let bodies: Vec<Vec<u8>> = (0..64).map(|n| patient_open("t", n, 512)).collect();
        let mut n = 0usize;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    publish(&hub, &bodies[n % bodies.len()]).unwrap();
                    n += 1;
                    for s in subs.iter_mut() {
                        s.drain();
                    }
                })
            },
        );
    }
    group.finish();
}

fn serialize(c: &mut Criterion) {
    let value: serde_json::Value = serde_json::from_slice(&patient_open("t", 1, 512)).unwrap();
    let big: serde_json::Value = serde_json::from_slice(&patient_open("t", 1, 100 * 1024)).unwrap();
    let mut group = c.benchmark_group("serialize");
    group.bench_function("patient-open 1KB", |b| {
        b.iter(|| serde_json::to_string(&value).unwrap())
    });
    group.bench_function("patient-open 100KB", |b| {
        b.iter(|| serde_json::to_string(&big).unwrap())
    });
    group.finish();
}

criterion_group!(benches, validate, fan_out, serialize);
criterion_main!(benches);
