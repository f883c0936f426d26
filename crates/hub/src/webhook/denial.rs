//! The denial `GET` (hub-digest §3) that tells a webhook its subscription
//! ended.

use tokio::time::{timeout, Duration};
use tracing::warn;

use super::Target;

/// Tells a webhook its subscription ended (hub-digest §3 denial):
/// `GET {hub.callback}?hub.mode=denied&…`, bounded; its answer does not matter.
pub(super) async fn deny(
    target: &Target,
    topic: &str,
    events: &str,
    reason: &str,
    limit: Duration,
) {
    let mut url = target.url.clone();
    url.query_pairs_mut()
        .append_pair("hub.mode", "denied")
        .append_pair("hub.topic", topic)
        .append_pair("hub.events", events)
        .append_pair("hub.reason", reason);
    match timeout(limit, target.client.get(url).send()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            warn!(callback = %target.label(), error = %e.without_url(), "webhook denial not delivered")
        }
        Err(_) => warn!(callback = %target.label(), "webhook denial not answered in time"),
    }
}
