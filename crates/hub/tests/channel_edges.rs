//! The WebSocket channel at its edges: the closing handshake as a raw
//! client sees it (RFC 6455 §5.5.1; issue 19), timer tasks that end with
//! their subscription (issue 14 item 3), and a log that a looping app
//! cannot flood (issue 14 item 5).

mod common;

use common::binary::HubCommand;
use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Reads one server frame (never masked, payload < 64 KiB here):
/// (opcode, payload).
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .ok()?;
    let mut len = (head[1] & 0x7f) as usize;
    if len == 126 {
        let mut ext = [0u8; 2];
        tcp.read_exact(&mut ext).await.ok()?;
        len = u16::from_be_bytes(ext) as usize;
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

/// A client that closes with a Close frame gets a Close frame back, with
/// the same code, and then the TCP close: `wasClean` in a browser.
#[tokio::test]
async fn a_close_frame_is_answered_with_a_close_frame() {
    let hub = TestHub::start().await;
    let endpoint = hub.subscribe(&topic(), "Patient-open").await;
    let path = endpoint.split_once(&hub.addr.to_string()).unwrap().1;
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    let upgrade = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        hub.addr
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"));
    let (opcode, confirmation) = read_frame(&mut tcp).await.unwrap();
    assert_eq!(opcode, 1, "the confirmation, as text");
    assert!(String::from_utf8_lossy(&confirmation).contains("\"hub.mode\":\"subscribe\""));

    // A masked Close frame, code 1000 (the mask is zero: payload as is).
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    let (opcode, payload) = read_frame(&mut tcp).await.expect("a Close frame back");
    assert_eq!(opcode, 8, "Close");
    assert_eq!(&payload[..2], &[0x03, 0xe8], "the same code, 1000");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
        .await
        .expect("the hub closes TCP after the handshake");
    assert_eq!(read.unwrap(), 0, "nothing after the Close frame");
    hub.stop().await;
}

/// Issue 14 item 3: every subscribe armed a lease timer (up to the lease,
/// hours) and an unused-endpoint timer (5 min) that outlived unsubscribe.
/// Now 300 subscribe/unsubscribe cycles leave the count of live tasks
/// where it was.
#[tokio::test]
async fn subscribe_unsubscribe_cycles_leave_no_task_behind() {
    let hub = TestHub::start().await;
    let t = topic();
    let cycle = || async {
        let endpoint = hub.subscribe(&t, "Patient-open").await;
        assert_eq!(hub.unsubscribe(&t, &endpoint).await.status(), 202);
    };
    cycle().await; // The HTTP client's connection task is part of the baseline.
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    for _ in 0..300 {
        cycle().await;
    }
    // Cancelled timers end when next polled: let them run.
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..1000 {
        if alive <= baseline {
            break;
        }
        tokio::task::yield_now().await;
        alive = metrics.num_alive_tasks();
    }
    assert!(
        alive <= baseline,
        "{alive} tasks alive after 300 cycles, {baseline} before"
    );
    hub.stop().await;
}

/// Issue 14 item 5: 10,000 frames that are not JSON from one app add a
/// few lines to the log, not one per frame. The real binary, its stderr
/// (where it logs) in a file.
#[tokio::test]
async fn a_flood_of_bad_frames_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("hub.log");
    let mut hub = HubCommand::new(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-auth", "--no-persist"])
        .args(["--secret-store", "memory", "--no-dashboard-link"])
        .stderr_to(&log_path)
        .start()
        .await;
    let hub_url = hub.hub_url.clone();
    let http = lockstep_hub::tls::http_client().build().unwrap();
    let res = http
        .post(&hub_url)
        .form(&subscribe_form(&topic(), "Patient-open"))
        .send()
        .await
        .unwrap();
    let mut ws = Ws::connect(&endpoint_of(res).await).await;
    ws.next_json().await;
    let before = std::fs::metadata(&log_path).unwrap().len();
    for i in 0..10_000 {
        ws.stream
            .feed(Message::Text(format!("not json {i}").into()))
            .await
            .unwrap();
    }
    ws.stream.flush().await.unwrap();
    // Every frame was read by the hub once it answers a ping sent after them.
    ping_barrier(&mut ws).await;
    let grown = std::fs::metadata(&log_path).unwrap().len() - before;
    hub.kill().await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines = text.matches("not JSON").count();
    assert!(lines <= 6, "{lines} log lines about bad frames:\n{text}");
    assert!(grown < 4096, "the log grew by {grown} bytes");
}
