//! `GET /admin/api/live`: a WebSocket that pushes each `HubEvent` as JSON
//! (`{"type": "published", "topic": …, "event": …}`, `connected`, `left`,
//! `paused`, …) as it happens. It carries names only, never patient data:
//! the UI fetches `/admin/api/state?since=…` when told something changed.
//! A reader that falls behind gets `{"type": "lagged"}` and re-fetches.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::auth::json_error;
use crate::Hub;

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(hub): State<Hub>,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&headers) {
        return json_error(
            StatusCode::FORBIDDEN,
            "the live feed is for the dashboard's own pages",
        );
    }
    let tasks = hub.tasks().clone();
    ws.max_message_size(4096)
        .on_upgrade(move |socket| tasks.track_future(run(socket, hub)))
}

/// A browser always sends `Origin`; it must be this host (no cross-site
/// WebSocket hijacking). Clients that are not browsers send none.
fn same_origin(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| crate::guard::same_origin(origin, headers))
}

async fn run(mut socket: WebSocket, hub: Hub) {
    // Subscribe before saying hello, so nothing falls between the UI's
    // first state fetch and the feed.
    let mut events = hub.events();
    let shutdown = hub.shutdown_token().clone();
    let hello = json!({"type": "hello", "version": env!("CARGO_PKG_VERSION")});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    // Pings keep a quiet feed from counting as an idle connection, and
    // find dashboards that went away without a close.
    let every = hub.config().ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let text = tokio::select! {
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
            _ = shutdown.cancelled() => {
                let frame = CloseFrame { code: 1001, reason: "hub shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            inbound = socket.recv() => match inbound {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            event = events.recv() => match event {
                Ok(e) => serde_json::to_string(&e).unwrap_or_default(),
                Err(RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}).to_string(),
                Err(RecvError::Closed) => return,
            },
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}
