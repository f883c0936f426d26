//! One subscriber's WebSocket (2-4, 2-5): confirmation and context replay on
//! connect, then notifications from its queue, ACK correlation and
//! timeouts, ping/pong liveness, and the closing handshake.
//!
//! The task owns the socket. Sends race against the close signal, so an app
//! that stopped reading can still be cut off; nothing here ever blocks a
//! publisher, who only enqueues.

use std::collections::VecDeque;
use std::pin::pin;

use futures_util::SinkExt;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use fhircast::message::{denial, parse_inbound, AckStatus, Inbound};
use fhircast::notification;
use tokio::sync::oneshot;
use tokio::time::{interval_at, sleep_until, timeout, Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ids::{self, short};
use crate::subscriptions::Attached;
use crate::sync_error::{Expect, Failure};
use crate::topic::{AckStats, Acked};
use crate::topic::{Close, Frame};
use crate::Hub;

/// How long a closing handshake may take before we just drop the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

struct Pending {
    id: Utf8Bytes,
    name: Utf8Bytes,
    version: Option<Utf8Bytes>,
    sent: Instant,
    deadline: Instant,
}

/// Why the send loop stopped.
enum Stop {
    /// The peer closed with 1000/1001, or the hub closed it: no complaint.
    Clean,
    /// The peer vanished or closed with another code: grace period, then SyncError.
    Abnormal,
}

pub async fn run(mut socket: WebSocket, hub: Hub, endpoint_id: String) {
    let Some(attached) = hub.attach(&endpoint_id) else {
        // IHE IRA: an unknown endpoint gets a denial and a close.
        debug!(
            endpoint = short(&endpoint_id),
            "connection to unknown endpoint refused"
        );
        let _ = timeout(CLOSE_TIMEOUT, async {
            let _ = socket
                .send(Message::Text(denial("", "", "invalid endpoint").into()))
                .await;
            let _ = socket.send(close_frame(1008, "invalid endpoint")).await;
        })
        .await;
        return;
    };
    let conn_id = attached.conn_id;
    let stop = serve(&mut socket, &hub, &endpoint_id, attached).await;
    hub.channel_closed(&endpoint_id, conn_id, matches!(stop, Stop::Clean));
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve(socket: &mut WebSocket, hub: &Hub, endpoint_id: &str, attached: Attached) -> Stop {
    let Attached {
        conn_id,
        topic,
        initial,
        mut rx,
        mut close_rx,
        wants_heartbeat,
        acks,
        expects_acks,
    } = attached;
    let config = hub.config().clone();
    let shutdown = hub.shutdown_token().clone();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut ack_timer = pin!(sleep_until(Instant::now()));
    let mut ping = interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut heartbeat = interval_at(
        Instant::now() + config.heartbeat_period,
        config.heartbeat_period,
    );
    let mut last_heard = Instant::now();
    let mut noise = LogBudget::default();

    macro_rules! send {
        ($msg:expr) => {
            match send_or_stop(socket, $msg, &mut close_rx, &shutdown).await {
                Ok(()) => {}
                Err(Some(end)) => return finish(socket, end).await,
                Err(None) => return Stop::Abnormal,
            }
        };
    }

    for frame in initial {
        if expects_acks {
            track(&mut pending, &frame, hub.ack_timeout());
        }
        send!(Message::Text(frame.text));
    }
    rearm(&pending, ack_timer.as_mut(), &acks);

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return finish(socket, Ending::Shutdown).await,
            close = &mut close_rx => return finish(socket, Ending::from(close)).await,
            inbound = socket.recv() => {
                last_heard = Instant::now();
                match inbound {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(failure) = on_text(&text, &mut pending, &acks, conn_id, &topic, endpoint_id, &mut noise) {
                            pending.clear();
                            hub.fail_all(vec![failure]);
                        }
                        rearm(&pending, ack_timer.as_mut(), &acks);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| f.code);
                        debug!(endpoint = short(endpoint_id), ?code, "peer closed");
                        // RFC 6455 §5.5.1: answer with a Close frame (the
                        // library queued one echoing the code) before the
                        // TCP close, or the peer sees 1006, not a clean close.
                        let _ = timeout(CLOSE_TIMEOUT, socket.flush()).await;
                        return if matches!(code, Some(1000 | 1001)) { Stop::Clean } else { Stop::Abnormal };
                    }
                    Some(Ok(Message::Binary(_))) => debug!(endpoint = short(endpoint_id), "binary frame ignored"),
                    Some(Ok(_)) => {} // ping/pong: liveness only
                    Some(Err(_)) | None => return Stop::Abnormal,
                }
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { return finish(socket, Ending::Replaced).await };
                let was_empty = pending.is_empty();
                // Whatever else is already queued goes out with one flush.
                let mut batch = Vec::with_capacity(1);
                for frame in std::iter::once(frame).chain(std::iter::from_fn(|| rx.try_recv().ok()).take(MAX_BATCH - 1)) {
                    if expects_acks {
                        track(&mut pending, &frame, hub.ack_timeout());
                    }
                    batch.push(Message::Text(frame.text));
                }
                if was_empty {
                    rearm(&pending, ack_timer.as_mut(), &acks);
                }
                match send_batch_or_stop(socket, batch, &mut close_rx, &shutdown).await {
                    Ok(()) => {}
                    Err(Some(end)) => return finish(socket, end).await,
                    Err(None) => return Stop::Abnormal,
                }
            }
            _ = &mut ack_timer, if !pending.is_empty() => {
                let now = Instant::now();
                if let Some(late) = pending.front().filter(|p| p.deadline <= now) {
                    let failure = Failure {
                        topic: topic.clone(),
                        endpoint_id: endpoint_id.to_owned(),
                        expect: Expect::Conn(conn_id),
                        event_id: late.id.to_string(),
                        event_name: late.name.to_string(),
                        diagnostics: format!("no ACK within {} ms", (late.deadline - late.sent).as_millis()),
                    };
                    pending.clear();
                    hub.fail_all(vec![failure]);
                }
                rearm(&pending, ack_timer.as_mut(), &acks);
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.ping_interval * 2 {
                    warn!(endpoint = short(endpoint_id), "no answer to pings; treating the connection as lost");
                    return Stop::Abnormal;
                }
                send!(Message::Ping(Default::default()));
            }
            _ = heartbeat.tick(), if wants_heartbeat => {
                let beat = notification::heartbeat(&ids::uuid(), &ids::now(), &topic, config.heartbeat_period.as_secs());
                send!(Message::Text(serde_json::Value::Object(beat).to_string().into()));
            }
        }
    }
}

fn track(pending: &mut VecDeque<Pending>, frame: &Frame, ack_timeout: Duration) {
    if let Some((id, name)) = &frame.ack {
        let sent = Instant::now();
        pending.push_back(Pending {
            id: id.clone(),
            name: name.clone(),
            version: frame.version.clone(),
            sent,
            deadline: sent + ack_timeout,
        });
    }
}

fn rearm(
    pending: &VecDeque<Pending>,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    acks: &AckStats,
) {
    acks.set_pending(pending.len());
    if let Some(first) = pending.front() {
        timer.reset(first.deadline);
    }
}

/// Handles a text frame: an ACK settles its notification; an error ACK is a
/// failure to follow (checklist 48-51). Anything else is logged and ignored.
fn on_text(
    text: &str,
    pending: &mut VecDeque<Pending>,
    acks: &AckStats,
    conn_id: u64,
    topic: &str,
    endpoint_id: &str,
    noise: &mut LogBudget,
) -> Option<Failure> {
    match parse_inbound(text) {
        Inbound::Ack(ack) => {
            // ACKs nearly always come in order: the search ends at the front.
            let Some(i) = pending.iter().position(|p| p.id.as_str() == ack.id) else {
                debug!(
                    endpoint = short(endpoint_id),
                    "ACK for an unknown or settled notification ignored"
                );
                return None;
            };
            let settled = pending.remove(i)?;
            acks.record(&ack.status, settled.sent.elapsed());
            match ack.status {
                AckStatus::Success(_) => {
                    acks.acked(Acked {
                        event: settled.name,
                        id: settled.id,
                        version: settled.version,
                        at: std::time::SystemTime::now(),
                    });
                    None
                }
                AckStatus::Failure(code) => Some(Failure {
                    topic: topic.to_owned(),
                    endpoint_id: endpoint_id.to_owned(),
                    expect: Expect::Conn(conn_id),
                    event_id: settled.id.to_string(),
                    event_name: settled.name.to_string(),
                    diagnostics: match code {
                        409 => "refused to follow (ACK 409)".to_owned(),
                        500.. => format!("could not process the event (ACK {code})"),
                        _ => format!("refused the event (ACK {code})"),
                    },
                }),
            }
        }
        Inbound::Other => {
            debug!(
                endpoint = short(endpoint_id),
                "frame that is not an ACK ignored"
            );
            None
        }
        Inbound::Malformed(e) => {
            if let Some(suppressed) = noise.spend(Instant::now()) {
                if suppressed > 0 {
                    warn!(endpoint = short(endpoint_id), suppressed, "… {suppressed} more frames that are not JSON were ignored without a log line");
                }
                warn!(endpoint = short(endpoint_id), error = %e, "frame that is not JSON ignored");
            }
            None
        }
    }
}

/// Frames written per flush at most, so a long queue still yields to ACKs.
const MAX_BATCH: usize = 64;

/// Writes several messages with one flush, unless the hub wants the socket
/// closed first.
async fn send_batch_or_stop(
    socket: &mut WebSocket,
    batch: Vec<Message>,
    close_rx: &mut oneshot::Receiver<Close>,
    shutdown: &CancellationToken,
) -> Result<(), Option<Ending>> {
    let write = async {
        for msg in batch {
            socket.feed(msg).await?;
        }
        socket.flush().await
    };
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Some(Ending::Shutdown)),
        close = close_rx => Err(Some(Ending::from(close))),
        sent = write => sent.map_err(|_| None),
    }
}

/// Sends one message unless the hub wants the socket closed first.
/// `Err(Some(_))`: close as told; `Err(None)`: the socket broke.
async fn send_or_stop(
    socket: &mut WebSocket,
    msg: Message,
    close_rx: &mut oneshot::Receiver<Close>,
    shutdown: &CancellationToken,
) -> Result<(), Option<Ending>> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Some(Ending::Shutdown)),
        close = close_rx => Err(Some(Ending::from(close))),
        sent = socket.send(msg) => sent.map_err(|_| None),
    }
}

/// How the hub ends a connection.
enum Ending {
    Told(Close),
    /// A newer connection to the same endpoint took over.
    Replaced,
    Shutdown,
}

impl From<Result<Close, oneshot::error::RecvError>> for Ending {
    fn from(r: Result<Close, oneshot::error::RecvError>) -> Self {
        r.map(Ending::Told).unwrap_or(Ending::Replaced)
    }
}

async fn finish(socket: &mut WebSocket, ending: Ending) -> Stop {
    let (denial, code, reason) = match ending {
        Ending::Told(close) => (close.denial, close.code, close.reason),
        Ending::Replaced => (None, 1000, "replaced by a newer connection"),
        Ending::Shutdown => (None, 1001, "hub shutting down"),
    };
    let _ = timeout(CLOSE_TIMEOUT, async {
        if let Some(d) = denial {
            socket.send(Message::Text(d.into())).await?;
        }
        socket.send(close_frame(code, reason)).await
    })
    .await;
    Stop::Clean
}

/// A connection's allowance of warning lines: a looping or hostile app
/// must not be able to fill the disk through the log. `PER_WINDOW` lines
/// per `WINDOW`; the rest are counted and the count is logged once the
/// next window opens.
#[derive(Default)]
struct LogBudget {
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    const PER_WINDOW: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(60);

    /// `Some(n)`: log this line, after saying that `n` were held back
    /// since the last one; `None`: stay quiet.
    fn spend(&mut self, now: Instant) -> Option<u64> {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) >= Self::WINDOW {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < Self::PER_WINDOW {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_allows_a_few_lines_a_minute_and_counts_the_rest() {
        let mut budget = LogBudget::default();
        let t0 = Instant::now();
        let logged = (0..10_000).filter(|_| budget.spend(t0).is_some()).count();
        assert_eq!(logged, LogBudget::PER_WINDOW as usize);
        // The next window opens with the count of what was held back.
        assert_eq!(budget.spend(t0 + LogBudget::WINDOW), Some(10_000 - 5));
        assert_eq!(budget.spend(t0 + LogBudget::WINDOW), Some(0));
    }
}
