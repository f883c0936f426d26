//! RSS and CPU sampling of a process from /proc (Linux only).

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// `VmRSS` of a process in KiB (`pid` may be "self").
pub fn rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_ascii_whitespace();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Summary of one process over a sampling window.
#[derive(Clone, Debug, Default)]
pub struct ProcStats {
    pub samples: usize,
    pub rss_min_kb: u64,
    pub rss_avg_kb: u64,
    pub rss_max_kb: u64,
    /// Average CPU over the window, in percent of one core.
    pub cpu_pct: f64,
    pub window_s: f64,
}

impl ProcStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "rss_min_kb": self.rss_min_kb,
            "rss_avg_kb": self.rss_avg_kb,
            "rss_max_kb": self.rss_max_kb,
            "cpu_avg_pct": (self.cpu_pct * 10.0).round() / 10.0,
            "window_s": (self.window_s * 1000.0).round() / 1000.0,
        })
    }
}

/// Samples `pid` every `interval` until `stop` flips to true; returns the summary.
/// CPU% is computed from the tick counters at the first and last sample.
pub async fn sample(pid: String, interval: Duration, mut stop: watch::Receiver<bool>) -> ProcStats {
    let t0 = Instant::now();
    let ticks0 = cpu_ticks(&pid);
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(r) = rss_kb(&pid) { rss.push(r) }
            }
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    if let Some(r) = rss_kb(&pid) {
        rss.push(r);
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu_pct = match (ticks0, cpu_ticks(&pid)) {
        (Some(a), Some(b)) if window > 0.0 => {
            (b.saturating_sub(a)) as f64 / clk_tck() / window * 100.0
        }
        _ => 0.0,
    };
    let samples = rss.len();
    ProcStats {
        samples,
        rss_min_kb: rss.iter().copied().min().unwrap_or(0),
        rss_avg_kb: if samples > 0 {
            rss.iter().sum::<u64>() / samples as u64
        } else {
            0
        },
        rss_max_kb: rss.iter().copied().max().unwrap_or(0),
        cpu_pct,
        window_s: window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(rss_kb("self").unwrap() > 0);
        assert!(cpu_ticks("self").is_some());
    }
}
