//! The subscriptions as a plain list (who, which events, connected or
//! not), for front ends that are not the web dashboard: the tray's
//! "Connected apps" menu. Copied out under the hub lock, no I/O.

use serde::Serialize;

use super::model::{connection_state, sync_state};
use crate::Hub;

/// One subscription as a front end lists it. Names of apps and events
/// only: no patient data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberInfo {
    pub topic: String,
    /// The app's name (`hub.channel.name` or its client's), else
    /// "subscriber" and a short endpoint id, as in SyncErrors.
    pub name: String,
    pub endpoint_id: String,
    pub events: Vec<String>,
    /// `connected`, `grace` (dropped, may reconnect), `disconnected`, `waiting`.
    pub state: &'static str,
    /// The state in words, as the dashboard shows it.
    pub state_label: &'static str,
    /// Is it on the hub's context: `in-sync`, `behind`, `refused`,
    /// `unresponsive`, `paused`, `no-ack` (the dashboard's `sync.state`).
    pub sync: &'static str,
    /// The sync state in words.
    pub sync_label: &'static str,
}

impl SubscriberInfo {
    pub fn connected(&self) -> bool {
        self.state == "connected"
    }
}

impl Hub {
    /// Every subscription on every topic, sorted by topic then name.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let mut list: Vec<SubscriberInfo> = {
            let state = self.lock();
            let paused = state.paused.is_some();
            state
                .topics
                .iter()
                .flat_map(|(topic, t)| {
                    t.subscriptions.values().map(move |sub| {
                        let (state, state_label) = connection_state(sub);
                        let (sync, sync_label) = sync_state(self, sub, paused);
                        SubscriberInfo {
                            topic: topic.clone(),
                            name: sub.display_name(),
                            endpoint_id: sub.endpoint_id.clone(),
                            events: sub.events.iter().map(|e| e.as_str().to_owned()).collect(),
                            state,
                            state_label,
                            sync,
                            sync_label,
                        }
                    })
                })
                .collect()
        };
        list.sort_by(|a, b| (&a.topic, &a.name).cmp(&(&b.topic, &b.name)));
        list
    }
}
