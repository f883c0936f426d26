//! The whole HTTP surface: raw bytes parsed as an HTTP/1.1 request head
//! (httparse) plus body, sent through `server::app` (guard, token-endpoint
//! limiter, every route, the admin API) of an in-memory hub with auth off,
//! so bodies reach the parsers (issue 14). Any status is fine; a panic, a
//! hang (the answer and its body within 5 s) or unbounded growth is not.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use libfuzzer_sys::fuzz_target;
use lockstep_hub::{server, Config, Hub};
use tower::ServiceExt;

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("lockstep-fuzz-{}", std::process::id()));
        let mut config = Config::new("127.0.0.1:4747".parse().unwrap(), dir);
        config.persist = false;
        config.no_auth = true;
        // Inputs that subscribe accumulate: keep the hub small.
        config.max_topics = 16;
        config.max_subscriptions_per_topic = 16;
        let app = runtime.block_on(async { server::app(Hub::new(config)) });
        Harness { runtime, app }
    })
}

/// The request in `data`, if its head parses; the rest is the body.
fn request(data: &[u8]) -> Option<axum::http::Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = head.parse(data).ok()? else {
        return None;
    };
    let mut builder = axum::http::Request::builder()
        .method(head.method?)
        .uri(head.path?);
    for h in head.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let mut request = builder.body(Body::from(data[head_len..].to_vec())).ok()?;
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = request(data) else {
        return;
    };
    let h = harness();
    h.runtime.block_on(async {
        let answer = async {
            let response = h.app.clone().oneshot(request).await.expect("infallible");
            let _ = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await;
        };
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("an answer within 5 s");
    });
});
