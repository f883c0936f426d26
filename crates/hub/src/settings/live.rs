//! The settings a running hub changes without a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Values;
use crate::Config;

/// The settings a running hub applies at once when the dashboard saves
/// them: read per event (ACK timeout) or per lost connection (grace
/// period), so an atomic each is enough. Everything else in `Config` is
/// read once, at start.
#[derive(Debug)]
pub(crate) struct LiveTimeouts {
    ack_timeout_us: AtomicU64,
    grace_period_us: AtomicU64,
}

/// Keys `LiveTimeouts` applies without a restart.
pub const LIVE_KEYS: &[&str] = &["ack_timeout_ms", "grace_period_ms"];

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl LiveTimeouts {
    pub(crate) fn new(config: &Config) -> LiveTimeouts {
        LiveTimeouts {
            ack_timeout_us: AtomicU64::new(micros(config.ack_timeout)),
            grace_period_us: AtomicU64::new(micros(config.grace_period)),
        }
    }

    pub(crate) fn ack_timeout(&self) -> Duration {
        Duration::from_micros(self.ack_timeout_us.load(Ordering::Relaxed))
    }

    pub(crate) fn grace_period(&self) -> Duration {
        Duration::from_micros(self.grace_period_us.load(Ordering::Relaxed))
    }

    /// Applies the live keys of `values`, except those `skip` names.
    pub(crate) fn apply(&self, values: &Values, skip: impl Fn(&str) -> bool) {
        if !skip("ack_timeout_ms") {
            let d = Duration::from_millis(values.ack_timeout_ms);
            self.ack_timeout_us.store(micros(d), Ordering::Relaxed);
        }
        if !skip("grace_period_ms") {
            let d = Duration::from_millis(values.grace_period_ms);
            self.grace_period_us.store(micros(d), Ordering::Relaxed);
        }
    }
}
