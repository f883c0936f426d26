//! The router and the serve loop.

use std::future::Future;
use std::io;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use fhircast::Version;
use tokio::net::TcpListener;
use tokio::time::{timeout, Duration};
use tracing::{info, warn};

use crate::error::ApiError;
use crate::listener::HubListener;
use crate::{routes, Hub};

/// The STU3 hub path; `hub.url` is `http://HOST:PORT` (`https` with TLS) + this.
pub const STU3_PATH: &str = "/fhircast/STU3";
pub const STU2_PATH: &str = "/fhircast/STU2";
/// OHIF's FHIRcast extension looks for the hub here.
pub const OHIF_PATH: &str = "/api/hub";

/// The whole HTTP surface. Kept apart from `run` so tests can drive it too.
pub fn app(hub: Hub) -> Router {
    let guard_hub = hub.clone();
    Router::new()
        .nest(
            STU3_PATH,
            routes::router(hub.clone(), Version::Stu3, STU3_PATH),
        )
        .nest(
            STU2_PATH,
            routes::router(hub.clone(), Version::Stu2, STU2_PATH),
        )
        .nest(
            OHIF_PATH,
            routes::router(hub.clone(), Version::Stu3, OHIF_PATH),
        )
        .merge(
            // Failed authentications at /oauth/token are rate-limited.
            routes::oauth::router(hub.clone()).layer(axum::middleware::from_fn_with_state(
                crate::ratelimit::TokenLimiter::new(hub.config()),
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
    // Before anything else: without its certificate a TLS hub must not start.
    let tls = match hub.config().tls {
        true => Some(crate::tls::acceptor(hub.config()).map_err(io::Error::other)?),
        false => None,
    };
    // `tap_io` with nothing to do: axum derives `ConnectInfo<SocketAddr>`
    // for a custom listener only through its `TapIo` wrapper.
    let config = hub.config();
    let idle = config.idle_timeout.max(config.ping_interval * 2);
    let listener = HubListener::new(listener, tls, config.max_connections, idle).tap_io(|_| {});
    hub.set_local_addr(addr);
    let token = hub.shutdown_token().clone();
    hub.start_background();
    let scheme = hub.config().http_scheme();
    info!(%addr, "serving FHIRcast at {scheme}://{addr}{STU3_PATH}");
    // Peer addresses let the admin API refuse non-loopback callers.
    let service = app(hub.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await?;
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

/// Ctrl-C, or SIGTERM on Unix (what service managers, installers and a
/// logout send): the shutdown future for [`run`], for the binary and the
/// tray alike.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
