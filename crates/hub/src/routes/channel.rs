//! `GET {hub.url}/ws/{id}`: the WebSocket upgrade for an endpoint. The
//! endpoint id is the credential (browsers cannot send headers here).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;

use super::Api;

/// Subscribers only ever send ACKs; anything bigger is not one of ours.
const MAX_INBOUND_MESSAGE: usize = 64 * 1024;
/// tungstenite allocates 128 KiB per socket for reading by default; ACKs
/// are tiny, and a reading room with a thousand sockets should not cost
/// 140 MB. The buffer still grows for a large frame.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes gathered before a write reaches the socket (a flush writes anyway).
const WRITE_BUFFER: usize = 16 * 1024;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    Path(id): Path<String>,
    State(api): State<Api>,
) -> Response {
    let hub = api.hub.clone();
    let tasks = hub.tasks().clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_INBOUND_MESSAGE)
        .max_frame_size(MAX_INBOUND_MESSAGE)
        .on_upgrade(move |socket| tasks.track_future(crate::channel::run(socket, hub, id)))
}
