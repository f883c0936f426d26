//! What the core reports, through one interface: [`Recorder`].
//!
//! The core (topics, subscriptions, delivery, channels, SyncErrors) knows
//! nothing of the dashboard or of storage. It tells whoever listens what
//! happened: an event accepted, a SyncError sent, a subscription changed,
//! a topic dropped, a `HubEvent` announced. The layers above implement
//! `Recorder` and are handed to the core at start (`Hub::new`, in
//! `wiring.rs`): the durability layer (`durability.rs`) journals and saves,
//! the dashboard (`admin/`) keeps its bounded log.
//!
//! Most calls are made under the hub lock, so that a recorder sees things
//! in the order they happened (the journal in publish order, the
//! dashboard's log in delivery order). An implementation must therefore be
//! quick: no I/O, no blocking, no waiting; it queues (a writer thread, a
//! bounded list). Where the core must wait for a recorder (an event's 2xx
//! waits until the event is durable), the recorder hands back a
//! [`Durable`] that the core awaits after the lock is released.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fhircast::Event;

use crate::state::HubEvent;
use crate::topic::{Frame, Subscription, Topic};

/// Told what the core did. Every method has an empty default, so a
/// recorder implements only what it keeps.
pub(crate) trait Recorder: Send + Sync + 'static {
    /// An event was accepted, applied and (unless paused) delivered.
    /// Under the hub lock, in publish order. May return a write the
    /// publisher's 2xx must wait for.
    fn accepted(&self, _event: &Accepted<'_>) -> Option<Durable> {
        None
    }

    /// The hub sent a SyncError about a subscriber that failed to follow,
    /// and ended its subscription. Under the hub lock.
    fn sync_error(&self, _report: &SyncErrorSent<'_>) {}

    /// A subscription changed (see [`SubscriptionChange`] for when each
    /// is reported, under the hub lock or not).
    fn subscription(&self, _sub: &Subscription, _change: SubscriptionChange) {}

    /// A topic nobody followed was dropped with its contexts. Under the
    /// hub lock.
    fn topic_dropped(&self, _topic: &str) {}

    /// Every `HubEvent` as it goes out to the tray and the dashboard; not
    /// under the hub lock.
    fn announced(&self, _event: &HubEvent) {}
}

/// An accepted event, as the core applied and broadcast it.
pub(crate) struct Accepted<'a> {
    /// The event as broadcast (with the versionIds the hub assigned).
    pub event: &'a Event,
    /// Its topic after the change: contexts and subscriptions.
    pub topic: &'a Topic,
    /// The bytes every recipient got.
    pub frame: &'a Frame,
    /// The derived open events that went with it: `(folded name, frame)`.
    pub derived: &'a [(String, Frame)],
    /// Who was sent the event itself (nobody while paused).
    pub told: &'a [Arc<str>],
    /// Accepted while delivery was paused.
    pub held: bool,
    /// Whether the topic's open contexts changed (open, close, update,
    /// logout).
    pub contexts_changed: bool,
}

/// A SyncError the hub made about a subscriber, and who was sent it.
pub(crate) struct SyncErrorSent<'a> {
    pub topic: &'a str,
    /// The failing subscriber's display name.
    pub subscriber: &'a str,
    /// The event it failed to follow.
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub diagnostics: &'a str,
    pub frame: &'a Frame,
    pub told: &'a [Arc<str>],
}

/// What happened to a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubscriptionChange {
    /// A new subscription (under the hub lock, before it is live).
    Subscribed,
    /// Renewed: new lease, events or name (under the hub lock).
    Renewed,
    /// Its WebSocket connected (under the hub lock).
    Attached,
    /// Its WebSocket went away; `clean` for 1000/1001 (under the hub lock).
    Closed { clean: bool },
    /// Removed, for whatever reason (under the hub lock).
    Ended,
    /// Its lease ran out; reported after `Ended`, outside the lock.
    LeaseExpired,
}

/// A write the core waits for, outside the hub lock, before it answers
/// (an accepted event is durable before its 2xx). `Err` says why not.
pub(crate) struct Durable(Pin<Box<dyn Future<Output = Result<(), String>> + Send>>);

impl Durable {
    pub(crate) fn new(write: impl Future<Output = Result<(), String>> + Send + 'static) -> Self {
        Durable(Box::pin(write))
    }

    /// Both writes, in order; the first failure is the answer.
    fn and(self, then: Durable) -> Durable {
        Durable::new(async move {
            self.await?;
            then.await
        })
    }
}

impl Future for Durable {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The recorders a hub reports to, in the order they were added; cheap to
/// clone (one `Arc`). The layers that installed one find it again by its
/// type ([`Recorders::find`]).
#[derive(Clone, Default)]
pub(crate) struct Recorders(Arc<Vec<Entry>>);

#[derive(Clone)]
struct Entry {
    recorder: Arc<dyn Recorder>,
    /// The same value, for `find`.
    typed: Arc<dyn Any + Send + Sync>,
}

impl Recorders {
    /// Adds a recorder; it is told after those added before it. Recorders
    /// are set at start: a clone made before an `add` does not see it.
    pub(crate) fn add<T: Recorder>(&mut self, recorder: T) {
        let recorder = Arc::new(recorder);
        Arc::make_mut(&mut self.0).push(Entry {
            recorder: recorder.clone(),
            typed: recorder,
        });
    }

    /// The recorder of type `T`, if one was added.
    pub(crate) fn find<T: Recorder>(&self) -> Option<&T> {
        self.0.iter().find_map(|e| e.typed.downcast_ref::<T>())
    }

    fn each(&self) -> impl Iterator<Item = &dyn Recorder> {
        self.0.iter().map(|e| e.recorder.as_ref())
    }

    pub(crate) fn accepted(&self, event: &Accepted<'_>) -> Option<Durable> {
        self.each()
            .filter_map(|r| r.accepted(event))
            .reduce(Durable::and)
    }

    pub(crate) fn sync_error(&self, report: &SyncErrorSent<'_>) {
        self.each().for_each(|r| r.sync_error(report));
    }

    pub(crate) fn subscription(&self, sub: &Subscription, change: SubscriptionChange) {
        self.each().for_each(|r| r.subscription(sub, change));
    }

    pub(crate) fn topic_dropped(&self, topic: &str) {
        self.each().for_each(|r| r.topic_dropped(topic));
    }

    pub(crate) fn announced(&self, event: &HubEvent) {
        self.each().for_each(|r| r.announced(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Notes what it is told; its writes end with `outcome`.
    struct Journal {
        outcome: Result<(), String>,
        seen: Mutex<Vec<String>>,
    }

    impl Journal {
        fn new(outcome: Result<(), String>) -> Journal {
            Journal {
                outcome,
                seen: Mutex::new(Vec::new()),
            }
        }
    }

    impl Recorder for Journal {
        fn accepted(&self, a: &Accepted<'_>) -> Option<Durable> {
            self.seen.lock().unwrap().push(a.event.id.clone());
            let outcome = self.outcome.clone();
            Some(Durable::new(async move { outcome }))
        }

        fn announced(&self, event: &HubEvent) {
            self.seen.lock().unwrap().push(format!("{event:?}"));
        }
    }

    /// Keeps nothing: every default.
    struct Quiet;
    impl Recorder for Quiet {}

    fn accepted_once(record: &Recorders) -> Option<Durable> {
        let body = br#"{"timestamp":"2024-01-01T00:00:00Z","id":"e1","event":{"hub.topic":"t","hub.event":"Patient-open","context":[{"key":"patient","resource":{"resourceType":"Patient","id":"p1"}}]}}"#;
        let event = Event::parse(body, fhircast::Version::Stu3).expect("a valid event");
        let frame = Frame {
            text: "{}".into(),
            ack: None,
            version: None,
        };
        record.accepted(&Accepted {
            event: &event,
            topic: &Topic::default(),
            frame: &frame,
            derived: &[],
            told: &[],
            held: false,
            contexts_changed: true,
        })
    }

    #[tokio::test]
    async fn every_recorder_is_told_and_the_core_waits_for_all_their_writes() {
        let mut record = Recorders::default();
        record.add(Quiet);
        assert!(accepted_once(&record).is_none(), "nothing to wait for");
        record.add(Journal::new(Err("disk full".into())));
        let shared = record.clone(); // Cheap, and sees the same recorders.
        let written = accepted_once(&shared).expect("a write to wait for");
        assert_eq!(written.await, Err("disk full".to_owned()));
        shared.announced(&HubEvent::Paused);
        let journal = record.find::<Journal>().expect("found by its type");
        assert_eq!(*journal.seen.lock().unwrap(), ["e1", "Paused"]);
        assert!(record.find::<Quiet>().is_some());
    }

    #[tokio::test]
    async fn the_first_failed_write_is_the_answer() {
        let mut record = Recorders::default();
        record.add(Journal::new(Ok(())));
        record.add(Quiet);
        assert_eq!(accepted_once(&record).unwrap().await, Ok(()));
        let mut record = Recorders::default();
        record.add(Journal::new(Ok(())));
        record.add(Journal::new(Err("second".into())));
        assert_eq!(
            accepted_once(&record).unwrap().await,
            Err("second".to_owned())
        );
    }
}
