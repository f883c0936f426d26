//! Runs `lockstep_hub` in-process: `launch` binds the port up front (so a
//! taken port is a clear message, not a background failure), the hub
//! serves on the async runtime, and stops when asked, waiting for every
//! WebSocket to get its close frame.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use lockstep_hub::launch::{Launch, Started};
use lockstep_hub::settings::Settings;
use lockstep_hub::{Config, Hub};
use tokio::sync::oneshot;

/// How long Quit waits for the hub to close its sockets and flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Running {
    pub hub: Hub,
    /// `http://ADDR/fhircast/STU3` (`https` when the settings turn TLS on).
    pub hub_url: String,
    stop: oneshot::Sender<()>,
    task: tauri::async_runtime::JoinHandle<io::Result<()>>,
    /// Where this session's hub listens when not where configured, in words
    /// ("port 4747 is used by another user's Lockstep; this session uses …").
    pub note: Option<String>,
    /// The discovery file `launch` wrote (into `discovery_dir`).
    pub discovery: Option<PathBuf>,
}

/// Binds `config.listen`, makes the hub with the settings files' `[[apps]]`
/// and starts serving (`Launch::start`, as `lockstep-hub` does). The error
/// is a sentence for the tray and the notification.
pub fn start(
    config: Config,
    settings: &Settings,
    discovery_dir: Option<PathBuf>,
) -> Result<Running, String> {
    let started = Launch::start(config, settings, discovery_dir).map_err(|e| e.to_string())?;
    Ok(serve(started))
}

fn serve(started: Started) -> Running {
    let hub = started.hub.clone();
    let hub_url = started.hub_url();
    let note = started.note.clone();
    let discovery = started.discovery_file();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tauri::async_runtime::spawn(started.run(async {
        // Dropping the sender (the app going away) also stops the hub.
        let _ = stopped.await;
    }));
    Running {
        hub,
        hub_url,
        stop,
        task,
        note,
        discovery,
    }
}

impl Running {
    /// Stops serving and waits (bounded) for `run` to return.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("hub stopped"),
            Ok(Ok(Err(e))) => tracing::warn!("hub stopped with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("hub task failed: {e}"),
            Err(_) => tracing::warn!("hub did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, dir: &std::path::Path) -> Config {
        let mut c = Config::new(listen.parse().unwrap(), dir.to_path_buf());
        c.persist = false;
        c
    }

    #[tokio::test]
    async fn serves_then_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let running = start(
            config("127.0.0.1:0", dir.path()),
            &Settings::default(),
            None,
        )
        .unwrap();
        let addr = running.hub.config().listen;
        assert_ne!(addr.port(), 0);
        assert!(running.hub_url.ends_with("/fhircast/STU3"));
        // The port answers HTTP while running...
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // ...and is free again once stopped.
        running.stop().await;
        std::net::TcpListener::bind(addr).expect("port released after stop");
    }

    #[test]
    fn taken_port_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = start(config(&addr, dir.path()), &Settings::default(), None)
            .err()
            .expect("refused");
        // Held by this same user: not moved to a per-user port, an error.
        assert!(err.contains("running already"), "{err}");
        assert!(
            err.contains(&addr.rsplit(':').next().unwrap().to_string()),
            "{err}"
        );
    }
}
