//! `lockstep-hub`: the hub without the tray, for servers, tests and support.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lockstep_hub::{server, Config, Hub};
use tracing::warn;

/// Lockstep: a FHIRcast 3.0.0 hub for the clinician's workstation.
///
/// Apps find the hub at http://HOST:PORT/fhircast/STU3 (STU2 clients at
/// /fhircast/STU2, OHIF at /api/hub). Logs go to stderr; one line on
/// stdout says where the hub is once it is ready.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = Config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the hub keeps its data [default: the OS data folder].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow listening on a non-loopback address (exposes the session to the network).
    #[arg(long)]
    allow_remote: bool,
    /// Accept requests without a bearer token.
    #[arg(long)]
    no_auth: bool,
    /// How long an app has to ACK a notification before a SyncError.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    ack_timeout_ms: u64,
    /// How long an app whose connection dropped may take to reconnect before a SyncError.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    grace_period_ms: u64,
    /// Lease granted when an app asks for none.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    lease_default_secs: u64,
    /// Longest lease granted.
    #[arg(long, default_value_t = 604_800, value_name = "SECONDS")]
    lease_max_secs: u64,
    /// Largest request body accepted (413 above it).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Notifications an app may leave unread before it is dropped.
    #[arg(long, default_value_t = 1024, value_name = "FRAMES")]
    queue_capacity: usize,
    /// WebSocket ping interval; a socket silent for two intervals is dead.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    ping_interval_ms: u64,
    /// Log filter, e.g. `info` or `lockstep_hub=debug` (or set RUST_LOG).
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            eprintln!(
                "error: {} is not a loopback address. Lockstep serves the patient context of this workstation \
                 and listens on loopback only; pass --allow-remote to expose it to the network.",
                args.listen
            );
            return ExitCode::from(2);
        }
        warn!(listen = %args.listen, "listening on a non-loopback address: other machines can reach this hub");
    }
    let Some(data_dir) = args.data_dir.clone().or_else(Config::default_data_dir) else {
        eprintln!("error: no data folder could be determined; pass --data-dir");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!(
            "error: cannot create data folder {}: {e}",
            data_dir.display()
        );
        return ExitCode::from(2);
    }
    let mut config = Config::new(args.listen, data_dir);
    config.allow_remote = args.allow_remote;
    config.no_auth = args.no_auth;
    config.ack_timeout = Duration::from_millis(args.ack_timeout_ms);
    config.grace_period = Duration::from_millis(args.grace_period_ms);
    config.lease_default = Duration::from_secs(args.lease_default_secs);
    config.lease_max = Duration::from_secs(args.lease_max_secs.max(1));
    config.max_body_bytes = args.max_body_bytes;
    config.queue_capacity = args.queue_capacity.max(1);
    config.ping_interval = Duration::from_millis(args.ping_interval_ms.max(100));
    if !args.no_auth {
        warn!("authorization is not implemented yet: every request is accepted as with --no-auth");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let hub = Hub::new(config);
        println!("Lockstep hub ready at http://{addr}{}", server::STU3_PATH);
        match server::run(listener, hub, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Ctrl-C, or SIGTERM on Unix (what service managers and installers send).
async fn shutdown_signal() {
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
