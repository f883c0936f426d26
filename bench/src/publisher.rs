//! Publishers: POST events at a fixed rate (open loop, at most K in flight) or as fast as
//! possible (K closed-loop workers), and, in content-sharing mode, keep each topic's
//! `context.versionId` current.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use tokio::sync::{watch, Semaphore};

use crate::ctx::Ctx;
use crate::payload::{find_version_id, iso_now, write_id, Bodies, Phase};
use crate::stats::{error_chain, Counters};

/// When each phase ends.
pub struct Plan {
    pub warmup_end: Instant,
    /// End of the measured phase (ignored when `events` is set).
    pub measure_end: Instant,
    /// Publish exactly this many measured events.
    pub events: Option<u64>,
}

/// Content-sharing state of one topic.
pub struct TopicCs {
    /// The versionId the next update must carry; the lock serializes updates on the topic.
    version: tokio::sync::Mutex<String>,
    /// Fed by the topic's tracking subscriber: (seq of the event, its context.versionId).
    rx: watch::Receiver<(u64, String)>,
}

impl TopicCs {
    pub fn new(rx: watch::Receiver<(u64, String)>) -> TopicCs {
        TopicCs {
            version: tokio::sync::Mutex::new(String::new()),
            rx,
        }
    }
}

pub struct Publisher {
    pub ctx: Arc<Ctx>,
    pub client: reqwest::Client,
    pub bodies: Bodies,
    pub topics: Vec<String>,
    /// Where events for each topic are POSTed.
    pub urls: Vec<String>,
    /// Reading (non-stalled, connected) subscribers per topic.
    pub subs_per_topic: Vec<u64>,
    /// Present in content-sharing mode.
    pub cs: Option<Vec<TopicCs>>,
    plan: std::sync::OnceLock<Plan>,
    /// How long to wait for a broadcast carrying the new versionId.
    pub version_timeout: Duration,
    seq: AtomicU64,
    measured_issued: AtomicU64,
}

/// Result of one POST.
enum Outcome {
    /// 2xx, with the response body (content sharing reads a versionId from it).
    Accepted(Vec<u8>),
    /// Non-2xx status and the start of the body.
    Rejected(u16, String),
    /// Transport failure.
    Failed,
}

impl Publisher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: Arc<Ctx>,
        client: reqwest::Client,
        bodies: Bodies,
        topics: Vec<String>,
        to_topic_path: bool,
        subs_per_topic: Vec<u64>,
        cs: Option<Vec<TopicCs>>,
        version_timeout: Duration,
    ) -> Publisher {
        let urls = topics
            .iter()
            .map(|t| {
                if to_topic_path {
                    format!("{}/{t}", ctx.hub)
                } else {
                    ctx.hub.clone()
                }
            })
            .collect();
        Publisher {
            ctx,
            client,
            bodies,
            topics,
            urls,
            subs_per_topic,
            cs,
            plan: std::sync::OnceLock::new(),
            version_timeout,
            seq: AtomicU64::new(0),
            measured_issued: AtomicU64::new(0),
        }
    }

    /// Fixes the phase schedule; call once, after `open_reports` and before publishing.
    pub fn set_plan(&self, plan: Plan) {
        let _ = self.plan.set(plan);
    }

    /// Claims the next event, or None when publishing is over.
    fn next(&self) -> Option<(u64, Phase)> {
        let plan = self.plan.get().expect("plan set before publishing");
        let now = Instant::now();
        let phase = if now < plan.warmup_end {
            Phase::Warmup
        } else {
            match plan.events {
                Some(n) => {
                    if self.measured_issued.fetch_add(1, Relaxed) >= n {
                        return None;
                    }
                }
                None => {
                    if now >= plan.measure_end {
                        return None;
                    }
                }
            }
            Phase::Measured
        };
        Some((self.seq.fetch_add(1, Relaxed), phase))
    }

    /// Fixed-rate, open-loop schedule: event k is due at start + k/rate; at most
    /// `concurrency` publishes in flight (a slow hub makes the schedule fall behind, which shows
    /// up as a lower achieved rate).
    pub async fn run_rate(self: &Arc<Self>, rate: f64, concurrency: usize) {
        let sem = Arc::new(Semaphore::new(concurrency));
        let start = Instant::now();
        let mut k: u64 = 0;
        loop {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let Some((seq, phase)) = self.next() else {
                break;
            };
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let me = self.clone();
            tokio::spawn(async move {
                me.publish(seq, phase).await;
                drop(permit);
            });
            k += 1;
        }
        let _ = sem.acquire_many(concurrency as u32).await;
    }

    /// As fast as possible: `concurrency` workers, each publishing back to back.
    pub async fn run_max(self: &Arc<Self>, concurrency: usize) {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let me = self.clone();
                tokio::spawn(async move {
                    while let Some((seq, phase)) = me.next() {
                        if !me.publish(seq, phase).await {
                            // Transport failure: don't spin against a dead hub.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }

    /// Content sharing: opens `DiagnosticReport/r-1` on every topic and learns its versionId.
    pub async fn open_reports(self: &Arc<Self>) -> Result<(), String> {
        let Some(cs) = &self.cs else { return Ok(()) };
        for (t, topic) in self.topics.iter().enumerate() {
            let mut guard = cs[t].version.lock().await;
            let seq = self.seq.fetch_add(1, Relaxed);
            let mut ts = String::new();
            iso_now(&mut ts);
            let mut id = String::new();
            write_id(&mut id, &self.ctx.run, Phase::Open, seq, self.ctx.now_ns());
            let mut body = String::new();
            self.bodies.report_open(&mut body, &id, &ts, topic);
            match self.post(t, body, Phase::Open).await {
                Outcome::Accepted(resp) => {
                    let v = self.learn_version(t, seq, &resp, "").await.ok_or_else(|| {
                        format!(
                            "DiagnosticReport-open on {topic}: no context.versionId in the response or the broadcast"
                        )
                    })?;
                    *guard = v;
                }
                Outcome::Rejected(status, body) => {
                    return Err(format!(
                        "DiagnosticReport-open on {topic}: HTTP {status}: {body}"
                    ))
                }
                Outcome::Failed => return Err(format!("DiagnosticReport-open on {topic} failed")),
            }
        }
        Ok(())
    }

    /// Publishes one event; returns false on a transport failure.
    pub async fn publish(&self, seq: u64, phase: Phase) -> bool {
        let t = (seq % self.topics.len() as u64) as usize;
        let topic = &self.topics[t];
        let mut ts = String::with_capacity(32);
        iso_now(&mut ts);
        let mut id = String::with_capacity(48);
        let mut body = String::new();
        let Some(cs) = &self.cs else {
            write_id(&mut id, &self.ctx.run, phase, seq, self.ctx.now_ns());
            self.bodies.patient_open(&mut body, &id, &ts, topic, seq);
            return !matches!(self.post(t, body, phase).await, Outcome::Failed);
        };

        let mut version = cs[t].version.lock().await;
        write_id(&mut id, &self.ctx.run, phase, seq, self.ctx.now_ns());
        self.bodies
            .update(&mut body, &id, &ts, topic, &version, seq);
        match self.post(t, body, phase).await {
            Outcome::Accepted(resp) => {
                match self.learn_version(t, seq, &resp, &version).await {
                    Some(v) => *version = v,
                    None => {
                        Counters::inc(&self.ctx.counters.version_errors);
                        self.ctx.errors.push(format!(
                            "no new context.versionId for {topic} within {:?}",
                            self.version_timeout
                        ));
                        if let Some(v) = self.current_version(t).await {
                            *version = v;
                        }
                    }
                }
                true
            }
            Outcome::Rejected(..) => {
                Counters::inc(&self.ctx.counters.version_errors);
                if let Some(v) = self.current_version(t).await {
                    *version = v;
                }
                true
            }
            Outcome::Failed => false,
        }
    }

    /// POSTs one event body and records the outcome.
    async fn post(&self, t: usize, body: String, phase: Phase) -> Outcome {
        let c = &self.ctx.counters;
        Counters::inc(&c.published);
        let mut req = self
            .client
            .post(&self.urls[t])
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(tok) = &self.ctx.token {
            req = req.bearer_auth(tok);
        }
        let t0 = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                Counters::inc(&c.transport_errors);
                self.ctx
                    .errors
                    .push(format!("publish: {}", error_chain(&e)));
                return Outcome::Failed;
            }
        };
        let latency_us = t0.elapsed().as_micros() as u64;
        let status = resp.status();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        if status.is_success() {
            if phase == Phase::Measured {
                self.ctx
                    .publish_hist
                    .lock()
                    .unwrap()
                    .record(latency_us)
                    .ok();
                Counters::inc(&c.accepted);
                c.expected.fetch_add(self.subs_per_topic[t], Relaxed);
            } else {
                Counters::inc(&c.accepted_warm);
            }
            Outcome::Accepted(body)
        } else {
            Counters::inc(&c.rejected);
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            self.ctx
                .errors
                .push(format!("publish: HTTP {}: {text}", status.as_u16()));
            Outcome::Rejected(status.as_u16(), text)
        }
    }

    /// The versionId produced by event `seq`: from the publish response when it names a new
    /// one, else from the broadcast seen by the topic's tracking subscriber.
    async fn learn_version(&self, t: usize, seq: u64, resp: &[u8], sent: &str) -> Option<String> {
        if let Some(v) = find_version_id(resp, &self.ctx.version_finder) {
            if v != sent {
                return Some(v);
            }
        }
        let mut rx = self.cs.as_ref()?[t].rx.clone();
        let got = tokio::time::timeout(self.version_timeout, rx.wait_for(|(s, _)| *s == seq)).await;
        match got {
            Ok(Ok(v)) => Some(v.1.clone()),
            _ => None,
        }
    }

    /// Get Current Context (`GET {hub.url}/{topic}`) to resynchronize the versionId.
    async fn current_version(&self, t: usize) -> Option<String> {
        let mut req = self
            .client
            .get(format!("{}/{}", self.ctx.hub, self.topics[t]));
        if let Some(tok) = &self.ctx.token {
            req = req.bearer_auth(tok);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        find_version_id(&body, &self.ctx.version_finder)
    }
}
