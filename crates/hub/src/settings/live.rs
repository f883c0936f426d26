//! The settings a running hub changes without a restart: the keys, and
//! how a save reaches the core's `state::LiveTimeouts`.

use std::time::Duration;

use super::Values;
use crate::state::LiveTimeouts;

/// Keys `LiveTimeouts` applies without a restart.
pub const LIVE_KEYS: &[&str] = &["ack_timeout_ms", "grace_period_ms"];

/// The hub core's live timeouts, set from the settings files.
impl LiveTimeouts {
    /// Applies the live keys of `values`, except those `skip` names.
    pub(crate) fn apply(&self, values: &Values, skip: impl Fn(&str) -> bool) {
        if !skip("ack_timeout_ms") {
            self.set_ack_timeout(Duration::from_millis(values.ack_timeout_ms));
        }
        if !skip("grace_period_ms") {
            self.set_grace_period(Duration::from_millis(values.grace_period_ms));
        }
    }
}
