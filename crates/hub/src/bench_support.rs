//! In-process subscribers for the `criterion` benchmarks: they go through
//! the real subscribe and attach paths, but read their queue directly
//! instead of through a socket. Not part of the supported API.

use fhircast::{ChannelType, EventSet, Mode, SubscriptionRequest, Version};
use tokio::sync::{mpsc, oneshot};

use crate::topic::{Close, Frame};
use crate::Hub;

pub struct LocalSubscriber {
    rx: mpsc::Receiver<Frame>,
    _close: oneshot::Receiver<Close>,
}

impl LocalSubscriber {
    /// Takes every frame waiting; returns how many there were.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// Subscribes to `events` on `topic` and attaches an in-process queue.
/// Must run inside a tokio runtime (lease timers are tasks).
pub fn subscribe_local(hub: &Hub, topic: &str, events: &str) -> LocalSubscriber {
    let req = SubscriptionRequest {
        mode: Mode::Subscribe,
        channel: Some(ChannelType::WebSocket),
        topic: topic.to_owned(),
        events: EventSet::parse(events).expect("valid events"),
        lease_seconds: None,
        endpoint: None,
        subscriber_name: None,
        callback: None,
        secret: None,
    };
    let id = hub.subscribe(req, None).expect("subscribe");
    let attached = hub.attach(&id).expect("attach");
    LocalSubscriber {
        rx: attached.rx,
        _close: attached.close_rx,
    }
}

/// Validates and publishes a JSON event body, as `POST {hub.url}` does.
pub fn publish(hub: &Hub, body: &[u8]) -> Result<(), String> {
    let event = fhircast::Event::parse(body, Version::Stu3).map_err(|e| e.0)?;
    hub.publish(event).map(|_| ()).map_err(|e| e.message)
}
