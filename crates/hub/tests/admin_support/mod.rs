//! Helpers for the admin API tests: the admin bearer token, state and
//! action requests, and the live feed.
#![allow(dead_code)]

use serde_json::Value;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{TestHub, Ws, WAIT};

pub fn bearer(hub: &TestHub) -> String {
    format!("Bearer {}", hub.hub.admin_token())
}

pub async fn get_state(hub: &TestHub) -> Value {
    admin_get(hub, "/admin/api/state").await
}

/// GETs an admin API `path` with the admin credential; asserts 200 and
/// returns the JSON answer.
pub async fn admin_get(hub: &TestHub, path: &str) -> Value {
    let res = hub
        .http
        .get(hub.url(path))
        .header("authorization", bearer(hub))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.expect("JSON")
}

pub async fn admin_post(hub: &TestHub, path: &str) -> reqwest::Response {
    hub.http
        .post(hub.url(path))
        .header("authorization", bearer(hub))
        .send()
        .await
        .expect("POST")
}

/// Connects to the live feed with `header` set; returns the socket after
/// its hello, or the HTTP status of a refused handshake.
pub async fn live(
    hub: &TestHub,
    header: Option<(&'static str, String)>,
) -> Result<Ws, tungstenite::http::StatusCode> {
    let mut req = format!("ws://{}/admin/api/live", hub.addr)
        .into_client_request()
        .unwrap();
    if let Some((name, value)) = header {
        req.headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
    {
        Ok((stream, _)) => {
            let mut ws = Ws {
                stream,
                endpoint: String::new(),
            };
            assert_eq!(ws.next_json().await["type"], "hello");
            Ok(ws)
        }
        Err(tungstenite::Error::Http(res)) => Err(res.status()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// The next live message of `kind`, skipping others.
pub async fn live_message(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let msg = ws.next_json().await;
        if msg["type"] == kind {
            return msg;
        }
    }
}

/// The read model's entry for `topic` (the session topic is listed too).
pub fn of_topic(state: &Value, topic: &str) -> Value {
    state["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["topic"] == topic))
        .cloned()
        .unwrap_or(Value::Null)
}
