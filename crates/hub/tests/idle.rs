//! Idle connections (issue 5, hardening): a connection on which nothing
//! moved for `idle_timeout` is closed and gives its place back, while
//! WebSockets (apps and the dashboard's live feed) stay up through the
//! hub's pings.

mod admin_support;
mod common;

use std::time::{Duration, Instant};

use admin_support::{bearer, live};
use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const IDLE: Duration = Duration::from_millis(500);

fn quick(c: &mut lockstep_hub::Config) {
    c.idle_timeout = IDLE;
    // Two intervals without a pong and a WebSocket counts as dead: the
    // tests read (and so answer) their sockets all the time.
    c.ping_interval = Duration::from_millis(200);
}

/// Everything the hub sends until it closes the connection (bounded by
/// WAIT: a hub that never closes fails the test).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the hub closes an idle connection");
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads `ws` for at least `span`, answering nothing; the pings counted.
/// Panics if the connection ends meanwhile.
async fn pings_during(ws: &mut Ws, span: Duration) -> usize {
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < span {
        match tokio::time::timeout(WAIT, ws.stream.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("the WebSocket ended while busy with pings: {other:?}"),
        }
    }
    pings
}

#[tokio::test]
async fn a_client_that_never_sends_a_request_is_closed_and_its_place_freed() {
    let hub = TestHub::start_with(|c| {
        quick(c);
        c.max_connections = 1;
    })
    .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    // It holds the only place: another client is turned away...
    let refused = lockstep_hub::tls::http_client()
        .build()
        .unwrap()
        .get(hub.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);

    // ...until the silent one is closed, with nothing said to it.
    assert_eq!(read_to_close(&mut silent).await, "");
    assert!(started.elapsed() >= IDLE, "not before the idle timeout");
    let served = lockstep_hub::tls::http_client()
        .build()
        .unwrap()
        .get(hub.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    hub.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle() {
    let hub = TestHub::start_with(quick).await;
    let mut conn = TcpStream::connect(hub.addr).await.unwrap();
    let request = format!(
        "GET {}/.well-known/fhircast-configuration HTTP/1.1\r\nHost: {}\r\n\r\n",
        lockstep_hub::server::STU3_PATH,
        hub.addr
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    // HTTP/1.1 keeps the connection open after the answer; idle, it closes.
    let answer = read_to_close(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"eventsSupported\""), "{answer}");
    hub.stop().await;
}

#[tokio::test]
async fn websockets_outlive_the_idle_timeout_on_the_hubs_pings() {
    let hub = TestHub::start_with(quick).await;
    let t = topic();
    let endpoint = hub.subscribe(&t, "Patient-open").await;
    let mut app = Ws::connect(&endpoint).await;
    let mut feed = live(&hub, Some(("authorization", bearer(&hub))))
        .await
        .expect("live feed");

    let (app_pings, feed_pings) = tokio::join!(
        pings_during(&mut app, IDLE * 3),
        pings_during(&mut feed, IDLE * 3)
    );
    assert!(
        app_pings >= 3 && feed_pings >= 3,
        "{app_pings} {feed_pings}"
    );

    // The app still follows.
    let sent = patient_open(&t, "p1");
    hub.publish_ok(&sent).await;
    let got = app.next_event().await;
    assert_eq!(got["id"], sent["id"]);
    hub.stop().await;
}
