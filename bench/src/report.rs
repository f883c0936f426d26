//! The end-of-run summary, as text for people and JSON for scripts.

use std::fmt::Write as _;

use serde_json::json;

use crate::cli::Args;
use crate::procstat::ProcStats;
use crate::stats::Percentiles;

pub struct Summary {
    pub run_id: String,
    pub event_bytes: usize,
    pub subscribed: usize,
    pub stalled_subscribed: usize,
    /// Stalled subscribers whose socket the hub had closed by the end of the run.
    pub stalled_closed: usize,
    /// Frames found unread on the stalled sockets at the end.
    pub stalled_unread: u64,
    pub subscribe_errors: u64,
    pub setup_ms: f64,
    pub attempted: u64,
    pub accepted: u64,
    pub accepted_warm: u64,
    pub rejected: u64,
    pub transport_errors: u64,
    pub publish_window_s: f64,
    pub publish: Percentiles,
    pub expected: u64,
    pub received: u64,
    pub warm_received: u64,
    pub delivery_window_s: f64,
    pub delivery: Percentiles,
    pub ws_errors: u64,
    pub denied: u64,
    pub foreign_frames: u64,
    pub version_errors: u64,
    pub messages: Vec<(String, u64)>,
    pub hub: Option<ProcStats>,
    pub hub_rss_start_kb: Option<u64>,
    pub generator: ProcStats,
}

fn rate(n: u64, s: f64) -> f64 {
    if s > 0.0 {
        ((n as f64 / s) * 10.0).round() / 10.0
    } else {
        0.0
    }
}

impl Summary {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    pub fn errors(&self) -> u64 {
        self.subscribe_errors
            + self.rejected
            + self.transport_errors
            + self.ws_errors
            + self.denied
            + self.version_errors
    }

    pub fn to_json(&self, a: &Args) -> serde_json::Value {
        json!({
            "label": a.label,
            "hub": a.hub,
            "run_id": self.run_id,
            "config": {
                "subscribers": a.subscribers,
                "stalled_subscribers": a.stalled_subscribers,
                "topics": a.topics,
                "rate": a.rate,
                "concurrency": a.concurrency,
                "duration_s": a.duration,
                "events": a.events,
                "warmup_s": a.warmup,
                "payload_bytes": a.payload_bytes,
                "event_bytes": self.event_bytes,
                "content_sharing": a.content_sharing,
                "publish_to_topic_path": a.publish_to_topic_path,
                "no_ack": a.no_ack,
                "threads": a.threads,
                "patients": a.patients,
            },
            "setup": {
                "subscribed": self.subscribed,
                "stalled_subscribed": self.stalled_subscribed,
                "stalled_closed_by_hub": self.stalled_closed,
                "stalled_unread_frames": self.stalled_unread,
                "subscribe_errors": self.subscribe_errors,
                "setup_ms": (self.setup_ms * 10.0).round() / 10.0,
            },
            "publish": {
                "attempted": self.attempted,
                "accepted": self.accepted,
                "accepted_warmup": self.accepted_warm,
                "rejected": self.rejected,
                "transport_errors": self.transport_errors,
                "window_s": (self.publish_window_s * 1000.0).round() / 1000.0,
                "per_s": rate(self.accepted, self.publish_window_s),
                "latency": self.publish.to_json(),
            },
            "delivery": {
                "expected": self.expected,
                "received": self.received,
                "lost": self.lost(),
                "unexpected": self.received.saturating_sub(self.expected),
                "warmup_received": self.warm_received,
                "window_s": (self.delivery_window_s * 1000.0).round() / 1000.0,
                "per_s": rate(self.received, self.delivery_window_s),
                "latency": self.delivery.to_json(),
            },
            "errors": {
                "total": self.errors(),
                "subscribe": self.subscribe_errors,
                "publish_rejected": self.rejected,
                "publish_transport": self.transport_errors,
                "websocket": self.ws_errors,
                "denied": self.denied,
                "version": self.version_errors,
                "foreign_frames": self.foreign_frames,
                "messages": self.messages.iter().map(|(m, n)| json!({"message": m, "count": n})).collect::<Vec<_>>(),
            },
            "hub_process": self.hub.as_ref().map(|h| {
                let mut v = h.to_json();
                v["pid"] = json!(a.hub_pid);
                v["rss_start_kb"] = json!(self.hub_rss_start_kb);
                v
            }),
            "generator_process": self.generator.to_json(),
        })
    }

    pub fn to_text(&self, a: &Args) -> String {
        let mut s = String::new();
        let mode = if a.is_idle() {
            "idle (no events)".to_owned()
        } else if a.rate > 0.0 {
            format!("rate {}/s", a.rate)
        } else {
            format!("as fast as possible, concurrency {}", a.concurrency)
        };
        let _ = writeln!(s, "fhircast-load run {} against {}", self.run_id, a.hub);
        let _ = writeln!(
            s,
            "  {} subscriber(s) (+{} stalled) on {} topic(s); {mode}; {} events of ~{} B; warmup {} s",
            a.subscribers,
            a.stalled_subscribers,
            a.topics,
            if a.content_sharing {
                "DiagnosticReport-update"
            } else {
                "Patient-open"
            },
            self.event_bytes,
            a.warmup
        );
        let _ = writeln!(
            s,
            "setup     {} subscribed (+{} stalled), {} failed, {:.0} ms",
            self.subscribed, self.stalled_subscribed, self.subscribe_errors, self.setup_ms
        );
        if !a.is_idle() {
            let _ = writeln!(
                s,
                "publish   {} accepted, {} rejected, {} transport errors over {:.2} s = {:.1} ev/s",
                self.accepted,
                self.rejected,
                self.transport_errors,
                self.publish_window_s,
                rate(self.accepted, self.publish_window_s)
            );
            let _ = writeln!(s, "  latency µs  {}", pct_line(&self.publish));
            let _ = writeln!(
                s,
                "delivery  expected {}, received {}, lost {}; {:.1} deliveries/s",
                self.expected,
                self.received,
                self.lost(),
                rate(self.received, self.delivery_window_s)
            );
            let _ = writeln!(s, "  latency µs  {}", pct_line(&self.delivery));
        }
        let _ = writeln!(
            s,
            "errors    websocket {}, denied {}, versionId {}, foreign frames {}",
            self.ws_errors, self.denied, self.version_errors, self.foreign_frames
        );
        if self.stalled_subscribed > 0 {
            let _ = writeln!(
                s,
                "stalled   {} connected; the hub had closed {} of them; {} notifications left unread",
                self.stalled_subscribed, self.stalled_closed, self.stalled_unread
            );
        }
        if let Some(h) = &self.hub {
            let _ = writeln!(
                s,
                "hub       RSS min/avg/max {:.1}/{:.1}/{:.1} MB (at start {}); CPU avg {:.1}% ({} samples over {:.1} s)",
                mb(h.rss_min_kb),
                mb(h.rss_avg_kb),
                mb(h.rss_max_kb),
                self.hub_rss_start_kb
                    .map(|k| format!("{:.1} MB", mb(k)))
                    .unwrap_or_else(|| "?".into()),
                h.cpu_pct,
                h.samples,
                h.window_s
            );
        }
        let _ = writeln!(
            s,
            "generator RSS max {:.1} MB; CPU avg {:.1}%",
            mb(self.generator.rss_max_kb),
            self.generator.cpu_pct
        );
        if !self.messages.is_empty() {
            let _ = writeln!(s, "first errors:");
            for (m, n) in &self.messages {
                let _ = writeln!(s, "  [{n}x] {m}");
            }
        }
        s
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn pct_line(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        p.p50, p.p90, p.p99, p.p999, p.max, p.count
    )
}
