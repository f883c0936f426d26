//! Browser-facing protections and limits (issue 5; hub-digest §10, checklist
//! 112): DNS rebinding is stopped by the Host check, cross-site requests
//! and WebSockets by the Origin check, and allow-listed web apps get CORS.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A page on evil.example whose name resolves to 127.0.0.1 sends `Host: evil.example`.
#[tokio::test]
async fn rebound_host_is_refused() {
    let hub = TestHub::start().await;
    let res = hub
        .http
        .get(format!(
            "{}/.well-known/fhircast-configuration",
            hub.hub_url()
        ))
        .header("host", "evil.example:4747")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    let ok = hub
        .http
        .get(format!(
            "{}/.well-known/fhircast-configuration",
            hub.hub_url()
        ))
        .header("host", format!("localhost:{}", hub.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// Cross-site WebSocket hijacking: an upgrade from a foreign Origin is refused,
/// even with a valid endpoint; the same endpoint works without Origin.
#[tokio::test]
async fn foreign_origin_websocket_is_refused() {
    let hub = TestHub::start().await;
    let topic = topic();
    let endpoint = hub.subscribe(&topic, "Patient-open").await;
    let mut request = endpoint.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut ws = Ws::connect(&endpoint).await;
    assert_eq!(ws.next_json().await["hub.mode"], "subscribe");
}

/// A form POST from another site (no preflight needed) cannot subscribe or publish.
#[tokio::test]
async fn foreign_origin_requests_are_refused() {
    let hub = TestHub::start().await;
    let topic = topic();
    let res = hub
        .http
        .post(hub.hub_url())
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("hub.channel.type=websocket&hub.mode=subscribe&hub.topic={topic}&hub.events=Patient-open"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("--allow-origin"));
}

/// An allow-listed web app gets CORS headers with credentials, and its preflight passes.
#[tokio::test]
async fn allowed_origin_gets_cors() {
    let origin = "https://viewer.hospital.example";
    let hub = TestHub::start_with(|c| c.allowed_origins = vec![origin.to_owned()]).await;
    let preflight = hub
        .http
        .request(reqwest::Method::OPTIONS, hub.hub_url())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let topic = topic();
    let get = hub
        .http
        .get(format!("{}/{}", hub.hub_url(), topic))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["access-control-allow-origin"], origin);
}

/// Limits answer with a clear 429 and change nothing.
#[tokio::test]
async fn subscription_and_topic_limits() {
    let hub = TestHub::start_with(|c| {
        c.max_subscriptions_per_topic = 2;
        c.max_topics = 2;
    })
    .await;
    let (a, b, c) = (topic(), topic(), topic());
    hub.subscribe(&a, "Patient-open").await;
    hub.subscribe(&a, "Patient-open").await;
    let full = hub.post_form(&subscribe_form(&a, "Patient-open")).await;
    assert_eq!(full.status(), 429);
    assert!(full.text().await.unwrap().contains("limit"));
    hub.subscribe(&b, "Patient-open").await;
    let too_many = hub.post_form(&subscribe_form(&c, "Patient-open")).await;
    assert_eq!(too_many.status(), 429);
}
