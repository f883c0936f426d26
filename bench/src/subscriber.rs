//! Subscribers: subscribe over HTTP, connect the WebSocket, wait for the confirmation, then
//! read notifications, record their delivery latency and ACK them.
//!
//! The receive path does no JSON parsing for our own events: one substring search finds the
//! event id (which carries the send instant), and ACKs are queued with `feed` and flushed only
//! when no further frame is ready, so a burst of notifications costs one write.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ctx::Ctx;
use crate::payload::{find_version_id, parse_id_at, Phase};
use crate::stats::{error_chain, Counters};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Latest (event seq, context.versionId) seen on a topic's broadcasts.
pub type VersionTx = watch::Sender<(u64, String)>;

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscribes to `topic` and returns the connected, confirmed WebSocket.
pub async fn subscribe(
    client: &reqwest::Client,
    ctx: &Ctx,
    topic: &str,
    events: &str,
    name: &str,
) -> Result<Ws, String> {
    let mut req = client.post(&ctx.hub).form(&[
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.events", events),
        ("subscriber.name", name),
    ]);
    if let Some(t) = &ctx.token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("subscribe POST {}: {}", ctx.hub, error_chain(&e)))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("subscribe response body: {e}"))?;
    if !status.is_success() {
        return Err(format!("subscribe: HTTP {status}: {}", truncate(&body)));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("subscribe: 2xx body is not JSON ({e}): {}", truncate(&body)))?;
    let endpoint = v
        .get("hub.channel.endpoint")
        .and_then(|e| e.as_str())
        .ok_or_else(|| format!("subscribe: no hub.channel.endpoint in {}", truncate(&body)))?;
    let url = ws_url(&ctx.hub, endpoint)?;

    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad endpoint {url}: {e}"))?;
    if let Some(t) = &ctx.token {
        if let Ok(h) = HeaderValue::from_str(&format!("Bearer {t}")) {
            request.headers_mut().insert(AUTHORIZATION, h);
        }
    }
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;

    let first = tokio::time::timeout(CONFIRM_TIMEOUT, next_text(&mut ws))
        .await
        .map_err(|_| format!("no confirmation within {CONFIRM_TIMEOUT:?} on {url}"))??;
    let v: serde_json::Value = serde_json::from_str(&first)
        .map_err(|e| format!("confirmation is not JSON ({e}): {}", truncate(&first)))?;
    if v.get("event").is_some() {
        return Err(format!(
            "first frame is an event, not a confirmation: {}",
            truncate(&first)
        ));
    }
    match v.get("hub.mode").and_then(|m| m.as_str()) {
        Some("subscribe") => Ok(ws),
        Some("denied") => Err(format!("subscription denied: {}", truncate(&first))),
        _ => Err(format!("unexpected confirmation: {}", truncate(&first))),
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => return Err(format!("socket closed: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("socket error: {e}")),
            None => return Err("socket closed".into()),
        }
    }
}

/// Turns the endpoint the hub returned into a ws:// URL.
fn ws_url(hub: &str, endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if e.starts_with("ws://") {
        Ok(e.to_owned())
    } else if let Some(rest) = e.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if e.starts_with("wss://") || e.starts_with("https://") {
        Err(format!(
            "endpoint {e} needs TLS, which this build does not support"
        ))
    } else if e.starts_with('/') {
        let authority = hub
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| format!("cannot resolve relative endpoint {e}"))?;
        Ok(format!("ws://{authority}{e}"))
    } else {
        Err(format!("unsupported endpoint {e}"))
    }
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Reads notifications until `stop` becomes true or the socket ends.
pub async fn run(
    mut ws: Ws,
    ctx: Arc<Ctx>,
    index: usize,
    tracker: Option<VersionTx>,
    mut stop: watch::Receiver<bool>,
) {
    let shard = index % ctx.deliveries.shard_count();
    let mut pending_flush = false;
    loop {
        let msg = if pending_flush {
            match ws.next().now_or_never() {
                Some(m) => m,
                None => {
                    if let Err(e) = ws.flush().await {
                        ws_error(&ctx, format!("ACK flush: {e}"));
                        return;
                    }
                    pending_flush = false;
                    continue;
                }
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                m = ws.next() => m,
            }
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                if !*stop.borrow() {
                    ws_error(&ctx, format!("hub closed the socket: {c:?}"));
                }
                return;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                if !*stop.borrow() {
                    ws_error(&ctx, format!("socket error: {e}"));
                }
                return;
            }
            None => {
                if !*stop.borrow() {
                    ws_error(&ctx, "socket ended".into());
                }
                return;
            }
        };
        let text = text.as_str();
        let ours = ctx
            .marker
            .find(text.as_bytes())
            .and_then(|pos| parse_id_at(text, pos, ctx.marker_len));
        let foreign_ack: String;
        let ack_id: Option<&str> = match ours {
            Some(p) => {
                let now = ctx.now_ns();
                match p.phase {
                    Phase::Measured => ctx.deliveries.record_measured(
                        shard,
                        now.saturating_sub(p.send_ns) / 1000,
                        now,
                    ),
                    Phase::Warmup | Phase::Open => ctx.deliveries.record_warm(shard),
                }
                if let Some(tx) = &tracker {
                    if let Some(v) = find_version_id(text.as_bytes(), &ctx.version_finder) {
                        tx.send_replace((p.seq, v));
                    }
                }
                Some(p.id)
            }
            // ACK foreign events too, so the hub does not count us as unresponsive.
            None => match foreign(&ctx, text) {
                Foreign::Ack(id) => {
                    foreign_ack = id;
                    Some(foreign_ack.as_str())
                }
                Foreign::Ignore => None,
                Foreign::Denied => return,
            },
        };
        if let (Some(id), false) = (ack_id, ctx.no_ack) {
            let mut ack = String::with_capacity(id.len() + 24);
            ack.push_str("{\"id\":\"");
            ack.push_str(id);
            ack.push_str("\",\"status\":200}");
            if let Err(e) = ws.feed(Message::text(ack)).await {
                ws_error(&ctx, format!("ACK send: {e}"));
                return;
            }
            pending_flush = true;
        }
    }
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

/// Reads what a stalled subscriber left unread. Returns (frames read, whether the hub had
/// closed the socket); a socket that stays quiet for 200 ms counts as still open.
pub async fn drain_stalled(mut ws: Ws) -> (u64, bool) {
    let mut frames = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Err(_) => return (frames, false),
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return (frames, true),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn ws_error(ctx: &Ctx, msg: String) {
    Counters::inc(&ctx.counters.ws_errors);
    ctx.errors.push(msg);
}

enum Foreign {
    Ack(String),
    Ignore,
    Denied,
}

/// Handles a frame that is not one of our events.
fn foreign(ctx: &Ctx, text: &str) -> Foreign {
    Counters::inc(&ctx.counters.foreign_frames);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        ctx.errors
            .push(format!("non-JSON frame: {}", truncate(text)));
        return Foreign::Ignore;
    };
    if v.get("hub.mode").and_then(|m| m.as_str()) == Some("denied") {
        Counters::inc(&ctx.counters.denied);
        ctx.errors.push(format!("denied: {}", truncate(text)));
        return Foreign::Denied;
    }
    let event = v
        .pointer("/event/hub.event")
        .and_then(|e| e.as_str())
        .unwrap_or("?");
    ctx.errors.push(format!("foreign frame ({event})"));
    match (v.get("event"), v.get("id").and_then(|i| i.as_str())) {
        (Some(_), Some(id)) => Foreign::Ack(id.to_owned()),
        _ => Foreign::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let hub = "http://127.0.0.1:4747/fhircast/STU3";
        assert_eq!(ws_url(hub, "ws://h:1/x").unwrap(), "ws://h:1/x".to_string());
        assert_eq!(
            ws_url(hub, "/fhircast/STU3/ws/abc").unwrap(),
            "ws://127.0.0.1:4747/fhircast/STU3/ws/abc"
        );
        assert!(ws_url(hub, "wss://h/x").is_err());
    }
}
