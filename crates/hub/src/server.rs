//! The router and the serve loop.

use std::future::Future;
use std::io;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::Listener;
use axum::{Extension, Router};
use fhircast::Version;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{timeout, Duration};
use tracing::{info, warn};

use crate::error::ApiError;
use crate::listener::HubListener;
use crate::{routes, Hub};

pub use crate::paths::{OHIF_PATH, STU2_PATH, STU3_PATH};

/// The whole HTTP surface. Kept apart from `run` so tests can drive it too.
pub fn app(hub: Hub) -> Router {
    let guard_hub = hub.clone();
    // One budget of buffered body bytes for the hub's routes, where only
    // callers with a valid token get their bodies read; the token endpoint,
    // which reads anyone's, has its own, so stalled token requests cannot
    // starve publishes.
    let bodies = routes::body::BodyBudget::new(hub.config());
    let token_endpoint = crate::ratelimit::TokenEndpoint {
        limiter: crate::ratelimit::TokenLimiter::new(hub.config()),
        hub: hub.clone(),
        bodies: routes::body::BodyBudget::with_total(
            hub.config(),
            crate::ratelimit::BUFFERED_BODY_BYTES,
        ),
    };
    Router::new()
        .nest(
            STU3_PATH,
            routes::router(hub.clone(), Version::Stu3, STU3_PATH, bodies.clone()),
        )
        .nest(
            STU2_PATH,
            routes::router(hub.clone(), Version::Stu2, STU2_PATH, bodies.clone()),
        )
        .nest(
            OHIF_PATH,
            routes::router(hub.clone(), Version::Stu3, OHIF_PATH, bodies),
        )
        .merge(
            // Failed authentications at /oauth/token are rate-limited.
            routes::oauth::router(hub.clone()).layer(axum::middleware::from_fn_with_state(
                token_endpoint,
                crate::ratelimit::token_endpoint,
            )),
        )
        .merge(crate::admin::router(hub))
        .route(
            "/",
            get(|| async {
                format!("Lockstep FHIRcast hub. hub.url is {STU3_PATH} on this host.\n")
            }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such resource; the FHIRcast hub is at {STU3_PATH}"),
            )
            .into_response()
        })
        .layer(axum::middleware::from_fn_with_state(
            guard_hub,
            crate::guard::guard,
        ))
}

/// Serves `hub` on `listener` until `shutdown` resolves, then closes every
/// WebSocket with 1001 and returns once their tasks have ended.
pub async fn run(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    fixed_mmap_threshold();
    // Before anything else: without its certificate a TLS hub must not start.
    let tls = match hub.config().tls {
        true => Some(crate::tls::acceptor(hub.config()).map_err(io::Error::other)?),
        false => None,
    };
    let config = hub.config();
    let idle = config.idle_timeout.max(config.ping_interval * 2);
    let mut listener = HubListener::new(listener, tls, config.max_connections, idle);
    if config.peer_check && !crate::peer::SUPPORTED {
        warn!("the peer check (one user, one hub) is not available on this OS: any local user can reach this hub");
    } else if config.peer_check {
        listener = listener.with_peer_check(peer_refusal_audit(hub.clone()));
    }
    hub.set_local_addr(addr);
    let token = hub.shutdown_token().clone();
    hub.start_background();
    let scheme = hub.config().http_scheme();
    info!(%addr, "serving FHIRcast at {scheme}://{addr}{STU3_PATH}");
    serve(
        listener,
        app(hub.clone()),
        config.header_timeout,
        async move {
            shutdown.await;
            token.cancel();
        },
    )
    .await;
    // Upgraded sockets live outside axum's graceful shutdown: each channel
    // task saw the token and is sending its close frame.
    hub.tasks().close();
    if timeout(Duration::from_secs(5), hub.tasks().wait())
        .await
        .is_err()
    {
        warn!("some WebSockets did not close in time");
    }
    hub.flush_storage().await;
    info!("stopped");
    Ok(())
}

/// Audits a connection refused by the peer check (issue 17).
fn peer_refusal_audit(hub: Hub) -> crate::listener::OnPeerRefused {
    std::sync::Arc::new(move |peer, who, unaudited| {
        use crate::storage::{AuditAction, AuditRecord};
        let mut record = AuditRecord::new(
            AuditAction::AuthFailure,
            format!("403 {}", crate::listener::PEER_REFUSAL),
        );
        let mut detail = format!("peer check: connection from {peer} owned by {who}");
        if unaudited > 0 {
            detail.push_str(&format!("; {unaudited} more refused since the last record"));
        }
        record.detail = Some(detail);
        hub.audit(record);
    })
}

/// Serves each accepted connection with hyper until `shutdown` resolves;
/// then stops accepting, lets each connection finish the request it is
/// on, and returns when all have closed (what `axum::serve` does, which
/// this replaces because it gives hyper no timer: without one hyper's
/// header-read deadline never fires, and a client trickling header bytes
/// would hold its connection for ever; issue 14 item 2).
async fn serve(
    mut listener: HubListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Each connection task holds a receiver; the sender learns when the
    // last one is gone.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (conn, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        let closing = closing_rx.clone();
        tokio::spawn(serve_connection(conn, peer, app, header_timeout, closing));
    }
    drop(listener);
    drop(closing_rx);
    let _ = closing_tx.send(true);
    closing_tx.closed().await;
}

async fn serve_connection(
    conn: crate::listener::Conn,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    // Peer addresses let the admin API refuse non-loopback callers.
    let service = TowerToHyperService::new(app.layer(Extension(ConnectInfo(peer))));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(conn), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            changed = closing.changed(), if !draining => {
                draining = true;
                let _ = changed;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Large buffers (request bodies up to `max_body_bytes`, hyper's read
/// buffers) are given back to the OS when freed (issue 14 item 2, "memory
/// that comes back").
///
/// glibc serves a block of 128 KiB or more with its own `mmap`, returned
/// at `free`, but every such free raises that threshold to the block's
/// size (up to 32 MiB): after the first 1 MiB body, bodies come from the
/// per-thread heaps and stay there. Measured with 3 rounds of 200 stalled
/// 1 MB uploads: RSS after each round 24, 59, 71 MB with the sliding
/// threshold, 26, 28, 28 MB with it fixed (baseline 18-20 MB; SECURITY.md,
/// "Hostile input"). Setting the threshold once turns the sliding off.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes a malloc parameter; glibc takes its
        // own lock, and no pointer is passed.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
        if ok != 1 {
            warn!("could not fix malloc's mmap threshold; freed memory may stay with the hub");
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix (what service managers, installers and a
/// logout send): the shutdown future for [`run`], for the binary and the
/// tray alike.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered here, not on first poll: a SIGTERM sent right after the
    // ready line (a supervisor, a test) must find the handler in place,
    // not the default action that kills the process mid-start with no
    // clean stop (discovery file, final snapshot).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! {
                        _ = i.recv() => {}
                        _ = t.recv() => {}
                    }
                }
                (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                    only.recv().await;
                }
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::windows::ctrl_c();
        async move {
            match ctrl_c {
                Ok(mut c) => {
                    c.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        }
    }
}
