//! Runs `lockstep_hub` in-process: binds the port up front (so a taken
//! port is a clear message, not a background failure), serves with
//! `server::run` on the async runtime, and stops it when asked, waiting
//! for every WebSocket to get its close frame.

use std::io;
use std::time::Duration;

use lockstep_hub::{server, Config, Hub};
use tokio::sync::oneshot;

/// How long Quit waits for the hub to close its sockets and flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Running {
    pub hub: Hub,
    stop: oneshot::Sender<()>,
    task: tauri::async_runtime::JoinHandle<io::Result<()>>,
    /// Where this session's hub listens when not where configured, in words
    /// ("port 4747 is used by another user's Lockstep; this session uses …").
    pub note: Option<String>,
}

/// Binds `config.listen` and starts serving. The error is a sentence for
/// the tray and the notification.
pub fn start(mut config: Config) -> Result<Running, String> {
    // Another OS user's hub on the port (fast user switching, a multi-
    // session host): this session moves to its per-user port and says so.
    let bound = lockstep_hub::peer::bind_for_this_user_std(config.listen)?;
    let note = bound.note();
    if let Some(note) = &note {
        tracing::warn!("{note}");
    }
    let listener = bound.listener;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    if let Ok(bound) = listener.local_addr() {
        config.listen = bound; // port 0 in tests: links need the real port
    }
    // A damaged database with no good copy: the stopped state naming the
    // file, never a hub that comes up with no registered apps (issue 14).
    if config.persist {
        if let Err(e @ lockstep_hub::storage::StorageError::Unrecoverable { .. }) =
            lockstep_hub::storage::Storage::open(&config.data_dir)
        {
            return Err(e.to_string());
        }
    }
    let hub = Hub::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = hub.clone();
    let task = tauri::async_runtime::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async {
            // Dropping the sender (the app going away) also stops the hub.
            let _ = stopped.await;
        };
        server::run(listener, serving, shutdown).await
    });
    Ok(Running {
        hub,
        stop,
        task,
        note,
    })
}

impl Running {
    /// `http://ADDR/fhircast/STU3` (`https` when the settings turn TLS on).
    pub fn hub_url(&self) -> String {
        let addr = self.hub.local_addr().unwrap_or(self.hub.config().listen);
        let scheme = self.hub.config().http_scheme();
        format!("{scheme}://{addr}{}", server::STU3_PATH)
    }

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
        let running = start(config("127.0.0.1:0", dir.path())).unwrap();
        let addr = running.hub.config().listen;
        assert_ne!(addr.port(), 0);
        assert!(running.hub_url().ends_with("/fhircast/STU3"));
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
        let err = start(config(&addr, dir.path())).err().expect("refused");
        // Held by this same user: not moved to a per-user port, an error.
        assert!(err.contains("running already"), "{err}");
        assert!(
            err.contains(&addr.rsplit(':').next().unwrap().to_string()),
            "{err}"
        );
    }
}
