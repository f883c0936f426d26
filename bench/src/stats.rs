//! Counters and latency histograms shared by publishers and subscribers.
//!
//! Delivery latencies are recorded into a few sharded histograms (subscriber i uses shard
//! i mod S) behind std mutexes: a lock is held for one `record` call only, never across an
//! `.await`, so contention between the runtime's worker threads stays negligible.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Histograms record microseconds with 3 significant digits and grow as needed.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("valid sigfig")
}

/// One shard of delivery statistics.
pub struct Shard {
    /// Measured delivery latencies, µs.
    pub hist: Histogram<u64>,
    /// Receipts of warm-up and setup events.
    pub warm: u64,
    /// Receipt time (ns since base) of the latest measured delivery.
    pub last_ns: u64,
}

pub struct Deliveries {
    shards: Vec<Mutex<Shard>>,
}

impl Deliveries {
    pub fn new(n: usize) -> Deliveries {
        let shards = (0..n.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    hist: new_histogram(),
                    warm: 0,
                    last_ns: 0,
                })
            })
            .collect();
        Deliveries { shards }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn record_measured(&self, shard: usize, latency_us: u64, now_ns: u64) {
        let mut s = self.shards[shard].lock().unwrap();
        // Auto-resizing histogram: `record` grows it (`saturating_record` would clamp).
        s.hist.record(latency_us).ok();
        if now_ns > s.last_ns {
            s.last_ns = now_ns;
        }
    }

    pub fn record_warm(&self, shard: usize) {
        self.shards[shard].lock().unwrap().warm += 1;
    }

    /// Number of measured deliveries so far.
    pub fn measured(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().hist.len())
            .sum()
    }

    /// (merged histogram, warm receipts, last measured receipt ns).
    pub fn merged(&self) -> (Histogram<u64>, u64, u64) {
        let mut h = new_histogram();
        let (mut warm, mut last) = (0, 0);
        for s in &self.shards {
            let s = s.lock().unwrap();
            h.add(&s.hist).expect("auto-resizing histogram");
            warm += s.warm;
            last = last.max(s.last_ns);
        }
        (h, warm, last)
    }
}

/// Event and error counters.
#[derive(Default)]
pub struct Counters {
    /// Publish attempts in any phase.
    pub published: AtomicU64,
    /// Measured publishes answered with 2xx.
    pub accepted: AtomicU64,
    /// Warm-up/setup publishes answered with 2xx.
    pub accepted_warm: AtomicU64,
    /// Publishes answered with a non-2xx status (any phase).
    pub rejected: AtomicU64,
    /// Publishes that failed at the transport level (any phase).
    pub transport_errors: AtomicU64,
    /// Measured deliveries the hub owes us: sum over accepted measured events of the number of
    /// reading subscribers on the event's topic.
    pub expected: AtomicU64,
    pub subscribe_errors: AtomicU64,
    /// WebSocket read/write errors and unexpected closes.
    pub ws_errors: AtomicU64,
    /// `hub.mode=denied` frames received.
    pub denied: AtomicU64,
    /// Frames that did not carry one of our event ids (SyncError, replays, unknown).
    pub foreign_frames: AtomicU64,
    /// Content sharing: versionId could not be learned in time, or an update was refused.
    pub version_errors: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

/// Keeps the first few distinct error messages for the report.
#[derive(Default)]
pub struct ErrorLog {
    messages: Mutex<Vec<(String, u64)>>,
}

impl ErrorLog {
    const MAX: usize = 8;

    pub fn push(&self, msg: String) {
        let mut m = self.messages.lock().unwrap();
        if let Some(e) = m.iter_mut().find(|(s, _)| *s == msg) {
            e.1 += 1;
        } else if m.len() < Self::MAX {
            m.push((msg, 1));
        }
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.messages.lock().unwrap().clone()
    }
}

/// An error with its chain of sources, e.g. "error sending request: connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// Percentile summary of a histogram, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p99_9_us": self.p999,
            "max_us": self.max,
            "mean_us": (self.mean * 10.0).round() / 10.0,
        })
    }
}
