//! The shared run context: one small handle every task holds through an `Arc`.

use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use memchr::memmem::Finder;

use crate::stats::{new_histogram, Counters, Deliveries, ErrorLog};

pub struct Ctx {
    /// All `*_ns` values are nanoseconds since this instant.
    pub base: Instant,
    /// Random run id embedded in topics and event ids.
    pub run: String,
    /// `hub.url` without a trailing slash.
    pub hub: String,
    pub token: Option<String>,
    pub no_ack: bool,
    /// Finds `"lsb<run>-` (the start of one of our event ids) in a frame.
    pub marker: Finder<'static>,
    pub marker_len: usize,
    /// Finds `"context.versionId"` in a frame (content sharing only).
    pub version_finder: Finder<'static>,
    pub deliveries: Deliveries,
    pub counters: Counters,
    pub errors: ErrorLog,
    /// Measured publish latencies, µs (std mutex, held for one record call).
    pub publish_hist: Mutex<Histogram<u64>>,
}

impl Ctx {
    pub fn new(hub: &str, token: Option<String>, no_ack: bool, shards: usize) -> Ctx {
        let run = run_id();
        let marker = crate::payload::marker(&run);
        Ctx {
            base: Instant::now(),
            hub: hub.trim_end_matches('/').to_owned(),
            token,
            no_ack,
            marker_len: marker.len(),
            marker: Finder::new(marker.as_bytes()).into_owned(),
            version_finder: Finder::new("\"context.versionId\"").into_owned(),
            run,
            deliveries: Deliveries::new(shards),
            counters: Counters::default(),
            errors: ErrorLog::default(),
            publish_hist: Mutex::new(new_histogram()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn ns_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    pub fn topic_name(&self, i: usize) -> String {
        format!("bench-{}-{i}", self.run)
    }
}

/// Six hex digits from the clock and the pid: distinct per run, no RNG needed.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:06x}", x & 0xff_ffff)
}
