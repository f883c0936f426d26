//! Command-line options of `fhircast-load`.

use clap::Parser;

/// Load generator for any FHIRcast hub speaking the standard STU3 WebSocket protocol.
///
/// Subscribes N WebSocket subscribers over M topics, publishes events at a fixed rate (or as
/// fast as possible), ACKs every notification, and reports publish latency (POST → 2xx),
/// delivery latency (publish send instant → each subscriber's receipt), deliveries/s, lost
/// deliveries and errors. With `--hub-pid` it also samples the hub's RSS and CPU.
#[derive(Parser, Debug, Clone)]
#[command(name = "fhircast-load", version)]
pub struct Args {
    /// The hub's `hub.url`, e.g. http://127.0.0.1:4747/fhircast/STU3
    #[arg(long, value_name = "URL")]
    pub hub: String,

    /// Number of subscribers that read and ACK notifications.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub subscribers: usize,

    /// Number of topics; subscriber i joins topic i mod M, event k goes to topic k mod M.
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub topics: usize,

    /// Target publish rate in events/s; 0 = as fast as possible (see --concurrency).
    #[arg(long, default_value_t = 0.0, value_name = "EV_PER_S")]
    pub rate: f64,

    /// Maximum number of publishes in flight at once.
    #[arg(long, default_value_t = 8, value_name = "K")]
    pub concurrency: usize,

    /// Length of the measured phase in seconds (after --warmup). With `--events 0` the tool
    /// publishes nothing and just holds the subscribers for this long (idle measurement).
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub duration: f64,

    /// Publish exactly COUNT measured events instead of running for --duration.
    /// 0 = idle: publish nothing, hold the connections for --duration and sample the hub.
    #[arg(long, value_name = "COUNT")]
    pub events: Option<u64>,

    /// Warm-up seconds: events are published and ACKed but not measured.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub warmup: f64,

    /// Pad each event to roughly B bytes (Patient text/div, or the update Bundle in
    /// --content-sharing mode). 0 = minimal event.
    #[arg(long, default_value_t = 0, value_name = "B")]
    pub payload_bytes: usize,

    /// Content sharing: open a DiagnosticReport per topic, then publish DiagnosticReport-update
    /// bundles, tracking context.versionId from the publish response or the broadcast.
    /// Updates on one topic are serialized (each needs the previous update's versionId).
    #[arg(long)]
    pub content_sharing: bool,

    /// POST events to {hub.url}/{topic} instead of {hub.url}.
    #[arg(long)]
    pub publish_to_topic_path: bool,

    /// Send `Authorization: Bearer TOKEN` on every HTTP request and WebSocket upgrade.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Do not ACK notifications.
    #[arg(long)]
    pub no_ack: bool,

    /// K extra subscribers that connect, read their confirmation and then never read again.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub stalled_subscribers: usize,

    /// Print a machine-readable JSON summary on stdout (human summary goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// PID of the hub process: sample its RSS (VmRSS) and CPU (utime+stime) from /proc.
    #[arg(long, value_name = "PID")]
    pub hub_pid: Option<u32>,

    /// Sampling interval for --hub-pid, in milliseconds.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub sample_ms: u64,

    /// After publishing stops, wait at most this long for outstanding deliveries.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub drain_timeout: f64,

    /// Size of the patient pool per topic: event k opens patient p-(k mod P), so the hub's
    /// per-topic context list stays bounded.
    #[arg(long, default_value_t = 64, value_name = "P")]
    pub patients: u64,

    /// How many subscriptions are set up concurrently.
    #[arg(long, default_value_t = 32, value_name = "C")]
    pub connect_concurrency: usize,

    /// Worker threads of the generator's tokio runtime.
    #[arg(long, default_value_t = 2, value_name = "T")]
    pub threads: usize,

    /// Free-form label copied into the JSON summary.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
}

impl Args {
    /// Checks option combinations clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.topics == 0 {
            return Err("--topics must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.rate < 0.0 || !self.rate.is_finite() {
            return Err("--rate must be a non-negative number".into());
        }
        if !(self.duration >= 0.0 && self.warmup >= 0.0 && self.drain_timeout >= 0.0) {
            return Err("--duration, --warmup and --drain-timeout must be >= 0".into());
        }
        if self.patients == 0 {
            return Err("--patients must be at least 1".into());
        }
        if self.content_sharing && self.subscribers < self.topics && !self.is_idle() {
            return Err(
                "--content-sharing needs at least one subscriber per topic (to learn versionIds)"
                    .into(),
            );
        }
        if !self.hub.starts_with("http://") {
            return Err("--hub must be an http:// URL (this build has no TLS)".into());
        }
        Ok(())
    }

    /// True when no events are published (`--events 0`).
    pub fn is_idle(&self) -> bool {
        self.events == Some(0)
    }
}
