//! `GET {hub.url}/ws/{id}`: the WebSocket upgrade for an endpoint. The
//! endpoint id is the credential (browsers cannot send headers here).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;

use super::Api;

/// Subscribers only ever send ACKs; anything bigger is not one of ours.
const MAX_INBOUND_MESSAGE: usize = 64 * 1024;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    Path(id): Path<String>,
    State(api): State<Api>,
) -> Response {
    let hub = api.hub.clone();
    let tasks = hub.tasks().clone();
    ws.max_message_size(MAX_INBOUND_MESSAGE)
        .max_frame_size(MAX_INBOUND_MESSAGE)
        .on_upgrade(move |socket| tasks.track_future(crate::channel::run(socket, hub, id)))
}
