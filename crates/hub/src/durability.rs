//! The durability layer's recorder: what the core reports, written to
//! `storage` (issue 6, issue 18). The core hands it every accepted event
//! (journaled; the 2xx waits for the row), every subscription change
//! (stored, deleted, in the audit trail), SyncErrors (audit trail) and
//! dropped topics (their contexts deleted). What is saved when, and the
//! recovery at start, are in `persist.rs`.
//!
//! Everything here runs under the hub lock: it only queues writes for the
//! writer thread (and serializes a topic's contexts when a coalesced
//! snapshot is due), never waits for one.

use std::sync::Mutex;

use crate::persist::{save_contexts_coalesced, stored, Restored};
use crate::recorder::{Accepted, Durable, Recorder, SubscriptionChange, SyncErrorSent};
use crate::storage::{AuditAction, AuditRecord, Storage};
use crate::topic::Subscription;
use crate::Hub;

/// The database of a hub that keeps durable state, as a recorder.
pub(crate) struct Durability {
    storage: Storage,
    /// Subscriptions brought back at start, whose lease timers `run` starts.
    restored: Mutex<Vec<Restored>>,
}

impl Durability {
    pub(crate) fn new(storage: Storage, restored: Vec<Restored>) -> Durability {
        Durability {
            storage,
            restored: Mutex::new(restored),
        }
    }
}

impl Recorder for Durability {
    fn accepted(&self, a: &Accepted<'_>) -> Option<Durable> {
        let event = a.event;
        // Journaled first: the journal is the source of truth, the context
        // snapshot only a shortcut through it.
        let row =
            self.storage
                .append_event(&event.topic, &event.id, event.name.as_str(), &a.frame.text);
        if a.contexts_changed {
            // Coalesced: most changes are only in the journal until the
            // next snapshot; recovery replays them.
            save_contexts_coalesced(
                Some(&self.storage),
                &event.topic,
                &a.topic.contexts,
                a.frame.text.len(),
            );
        }
        Some(Durable::new(async move {
            row.await.map(|_seq| ()).map_err(|e| e.to_string())
        }))
    }

    fn sync_error(&self, s: &SyncErrorSent<'_>) {
        let mut audit = AuditRecord::new(AuditAction::SyncError, "unsubscribed");
        audit.topic = Some(s.topic.to_owned());
        audit.subscriber_name = Some(s.subscriber.to_owned());
        audit.event_id = Some(s.event_id.to_owned());
        audit.event_name = Some(s.event_name.to_owned());
        audit.detail = Some(s.diagnostics.to_owned());
        self.storage.audit(audit);
    }

    fn subscription(&self, sub: &Subscription, change: SubscriptionChange) {
        let channel = |action, outcome| {
            let mut audit = AuditRecord::new(action, outcome);
            audit.topic = Some(sub.topic.clone());
            audit.subscriber_name = Some(sub.display_name());
            audit
        };
        match change {
            SubscriptionChange::Subscribed | SubscriptionChange::Renewed => {
                self.storage.upsert_subscription(&stored(sub)).detach();
            }
            SubscriptionChange::Ended => {
                self.storage.delete_subscription(&sub.endpoint_id).detach();
            }
            SubscriptionChange::Attached => {
                self.storage
                    .audit(channel(AuditAction::Connect, "connected"));
            }
            SubscriptionChange::Closed { clean } => {
                let outcome = if clean {
                    "clean close"
                } else {
                    "connection lost"
                };
                self.storage
                    .audit(channel(AuditAction::Disconnect, outcome));
            }
            SubscriptionChange::LeaseExpired => {
                let mut audit = channel(AuditAction::LeaseExpired, "unsubscribed");
                audit.client_id = sub.client_id.clone();
                self.storage.audit(audit);
            }
        }
    }

    fn topic_dropped(&self, topic: &str) {
        self.storage.delete_contexts(topic).detach();
    }
}

impl Hub {
    /// The database, if the hub keeps durable state.
    pub fn storage(&self) -> Option<&Storage> {
        self.recorder::<Durability>().map(|d| &d.storage)
    }

    /// The subscriptions recovered at start, once (`start_background`).
    pub(crate) fn take_restored(&self) -> Vec<Restored> {
        let Some(durability) = self.recorder::<Durability>() else {
            return Vec::new();
        };
        std::mem::take(
            &mut *durability
                .restored
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}
