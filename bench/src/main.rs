//! `fhircast-load`: a load generator for any FHIRcast hub (STU3 WebSocket channel).
//!
//! Parts: [`cli`] (options), [`ctx`] (the shared run handle), [`payload`] (event bodies and
//! ids), [`subscriber`] (subscribe, confirm, receive, ACK), [`publisher`] (rate/max schedules,
//! content sharing), [`stats`] (histograms, counters), [`procstat`] (hub RSS/CPU from /proc)
//! and [`report`] (text and JSON summaries).
//!
//! A run: subscribe everyone and wait for every confirmation; (content sharing) open a report
//! per topic; publish during the warm-up (unmeasured) and the measured phase; drain until all
//! expected deliveries arrived or the drain timeout passed; close the sockets; report.

mod cli;
mod ctx;
mod payload;
mod procstat;
mod publisher;
mod report;
mod stats;
mod subscriber;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::cli::Args;
use crate::ctx::Ctx;
use crate::payload::{Bodies, Phase};
use crate::procstat::{rss_kb, sample};
use crate::publisher::{Plan, Publisher, TopicCs};
use crate::report::Summary;
use crate::stats::{Counters, Percentiles};
use crate::subscriber::{subscribe, VersionTx, Ws};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("fhircast-load: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fhircast-load: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fhircast-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let ctx = Arc::new(Ctx::new(
        &args.hub,
        args.token.clone(),
        args.no_ack,
        args.subscribers.clamp(1, 32),
    ));
    // Built with the hub, reqwest has TLS without a provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let bodies = Bodies::new(args.payload_bytes, args.patients, args.content_sharing);
    let topics: Vec<String> = (0..args.topics).map(|i| ctx.topic_name(i)).collect();
    let event_bytes = sample_event_len(&bodies, &ctx, &topics[0], args.content_sharing);

    let hub_pid = args.hub_pid.map(|p| p.to_string());
    let hub_rss_start_kb = match &hub_pid {
        Some(pid) => Some(rss_kb(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?),
        None => None,
    };

    // 1. Subscribe everyone (readers first, then stalled ones) and wait for confirmations.
    let setup_t0 = Instant::now();
    let n = args.subscribers;
    let total = n + args.stalled_subscribers;
    let events = bodies.events();
    let mut results: Vec<(usize, Result<Ws, String>)> = futures_util::stream::iter(0..total)
        .map(|i| {
            let (topic, name) = if i < n {
                (&topics[i % args.topics], format!("bench-{i}"))
            } else {
                (
                    &topics[(i - n) % args.topics],
                    format!("bench-stalled-{}", i - n),
                )
            };
            let (client, ctx) = (&client, &ctx);
            async move { (i, subscribe(client, ctx, topic, events, &name).await) }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect()
        .await;
    results.sort_by_key(|r| r.0);
    let setup_ms = setup_t0.elapsed().as_secs_f64() * 1000.0;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subs_per_topic = vec![0u64; args.topics];
    let mut trackers: Vec<Option<VersionTx>> = Vec::new();
    let mut version_rxs = Vec::new();
    if args.content_sharing {
        for _ in 0..args.topics {
            let (tx, rx) = watch::channel((u64::MAX, String::new()));
            trackers.push(Some(tx));
            version_rxs.push(rx);
        }
    }
    let mut readers = Vec::new();
    let mut stalled = Vec::new();
    let (mut subscribed, mut first_error) = (0usize, None);
    for (i, r) in results {
        match r {
            Ok(ws) if i < n => {
                let t = i % args.topics;
                subs_per_topic[t] += 1;
                subscribed += 1;
                let tracker = trackers.get_mut(t).and_then(Option::take);
                readers.push(tokio::spawn(subscriber::run(
                    ws,
                    ctx.clone(),
                    i,
                    tracker,
                    stop_rx.clone(),
                )));
            }
            Ok(ws) => stalled.push(ws),
            Err(e) => {
                Counters::inc(&ctx.counters.subscribe_errors);
                first_error.get_or_insert_with(|| e.clone());
                ctx.errors.push(e);
            }
        }
    }
    if n > 0 && subscribed == 0 {
        return Err(format!(
            "no subscriber could subscribe; first error: {}",
            first_error.unwrap_or_default()
        ));
    }
    if !args.json {
        eprintln!(
            "fhircast-load: {subscribed}/{n} subscribers (+{}/{} stalled) confirmed in {setup_ms:.0} ms",
            stalled.len(),
            args.stalled_subscribers
        );
    }

    // 2. Content sharing: open a report per topic and learn its versionId.
    let cs = args
        .content_sharing
        .then(|| version_rxs.into_iter().map(TopicCs::new).collect());
    let publisher = Arc::new(Publisher::new(
        ctx.clone(),
        client.clone(),
        bodies,
        topics.clone(),
        args.publish_to_topic_path,
        subs_per_topic,
        cs,
        Duration::from_secs_f64(args.drain_timeout.max(1.0)),
    ));
    if args.content_sharing && !args.is_idle() {
        publisher.open_reports().await?;
    }

    // 3. Warm-up and measured phase, with process sampling during the measured phase.
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs_f64(args.warmup);
    let measure_end = warmup_end + Duration::from_secs_f64(args.duration);
    publisher.set_plan(Plan {
        warmup_end,
        measure_end,
        events: args.events,
    });
    let (sample_stop_tx, sample_stop_rx) = watch::channel(false);
    let interval = Duration::from_millis(args.sample_ms.max(10));
    let spawn_sampler = |pid: String| {
        let stop = sample_stop_rx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            sample(pid, interval, stop).await
        })
    };
    let hub_sampler = hub_pid.clone().map(spawn_sampler);
    let self_sampler = spawn_sampler("self".into());

    if args.is_idle() {
        tokio::time::sleep_until(measure_end.into()).await;
    } else if args.rate > 0.0 {
        publisher.run_rate(args.rate, args.concurrency).await;
    } else {
        publisher.run_max(args.concurrency).await;
    }
    let publish_end = Instant::now();
    let _ = sample_stop_tx.send(true);

    // 4. Drain: wait for the deliveries the hub still owes.
    let drain_deadline = publish_end + Duration::from_secs_f64(args.drain_timeout);
    loop {
        let expected = Counters::get(&ctx.counters.expected);
        if ctx.deliveries.measured() >= expected || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 5. Close the sockets (1000 Normal) and collect the numbers.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        for r in readers {
            let _ = r.await;
        }
    })
    .await;
    let stalled_subscribed = stalled.len();
    let drained = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(stalled.into_iter().map(subscriber::drain_stalled)),
    )
    .await
    .unwrap_or_default();
    let stalled_closed = drained.iter().filter(|d| d.1).count();
    let stalled_unread: u64 = drained.iter().map(|d| d.0).sum();

    let hub = match hub_sampler {
        Some(h) => h.await.ok(),
        None => None,
    };
    let generator = self_sampler.await.unwrap_or_default();
    let (delivery_hist, warm_received, last_ns) = ctx.deliveries.merged();
    let publish_hist = ctx.publish_hist.lock().unwrap().clone();
    let measure_start_ns = ctx.ns_of(warmup_end);
    let c = &ctx.counters;
    let summary = Summary {
        run_id: ctx.run.clone(),
        event_bytes,
        subscribed,
        stalled_subscribed,
        stalled_closed,
        stalled_unread,
        subscribe_errors: Counters::get(&c.subscribe_errors),
        setup_ms,
        attempted: Counters::get(&c.published),
        accepted: Counters::get(&c.accepted),
        accepted_warm: Counters::get(&c.accepted_warm),
        rejected: Counters::get(&c.rejected),
        transport_errors: Counters::get(&c.transport_errors),
        publish_window_s: publish_end
            .saturating_duration_since(warmup_end)
            .as_secs_f64(),
        publish: Percentiles::of(&publish_hist),
        expected: Counters::get(&c.expected),
        received: delivery_hist.len(),
        warm_received,
        delivery_window_s: last_ns.saturating_sub(measure_start_ns) as f64 / 1e9,
        delivery: Percentiles::of(&delivery_hist),
        ws_errors: Counters::get(&c.ws_errors),
        denied: Counters::get(&c.denied),
        foreign_frames: Counters::get(&c.foreign_frames),
        version_errors: Counters::get(&c.version_errors),
        messages: ctx.errors.snapshot(),
        hub,
        hub_rss_start_kb,
        generator,
    };
    if args.json {
        eprint!("{}", summary.to_text(&args));
        println!("{}", summary.to_json(&args));
    } else {
        print!("{}", summary.to_text(&args));
    }
    Ok(())
}

/// Size of a representative event body, for the report.
fn sample_event_len(bodies: &Bodies, ctx: &Ctx, topic: &str, content_sharing: bool) -> usize {
    let mut id = String::new();
    payload::write_id(
        &mut id,
        &ctx.run,
        Phase::Measured,
        1_000_000,
        10_000_000_000,
    );
    let mut ts = String::new();
    payload::iso_now(&mut ts);
    let mut body = String::new();
    if content_sharing {
        bodies.update(&mut body, &id, &ts, topic, "1", 1);
    } else {
        bodies.patient_open(&mut body, &id, &ts, topic, 1);
    }
    body.len()
}
