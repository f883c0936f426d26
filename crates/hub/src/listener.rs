//! What `server::run` accepts connections from: the TCP listener with a cap
//! on connections held at once (`max_connections`), an idle timeout, and,
//! with `--tls`, the TLS handshake.
//!
//! Every connection holds a permit for as long as it is open, WebSockets
//! included (the permit travels with the socket through the upgrade). One
//! over the cap is answered `503` with a sentence and closed, so a client
//! learns why instead of hanging. TLS handshakes run in their own tasks
//! with a deadline: a slow or silent client never holds up the others.
//!
//! Peer check (issue 17, `peer.rs`): right after accept, before any byte
//! of HTTP is read, the client socket's OS user is asked of the kernel; a
//! connection from another account's process is answered `403` with a
//! sentence and closed, and audited. The check fails closed: a socket it
//! cannot place on loopback is refused too. Log lines and audit records
//! of refusals are rate-limited, so another user's flood costs this one a
//! bounded amount of log and disk.
//!
//! `Idle`: a connection on which nothing moved either way for
//! `idle_timeout` fails its next read or write and is closed, giving its
//! permit back. A request head that trickles in is cut off sooner, by
//! hyper's header-read deadline (`server.rs` gives hyper a timer).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Refusals answered at once; beyond these, extra connections are simply
/// closed (a flood gets no courtesy).
const MAX_REFUSING: usize = 32;
/// How long a refusal may take in all: handshake, reading the request
/// head, writing the answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The body of the peer check's 403.
pub const PEER_REFUSAL: &str = "this Lockstep hub serves only the user who started it";
/// Peer refusals audited per window; the rest are counted into the next
/// record, so a flood from another account cannot fill the disk.
const PEER_AUDITS_PER_WINDOW: u32 = 10;
const PEER_WINDOW: Duration = Duration::from_secs(10);

/// Records a peer refusal (the audit trail): the peer's address, who owns
/// it, and how many refusals since the last record went unrecorded.
pub type OnPeerRefused = Arc<dyn Fn(SocketAddr, &str, u32) + Send + Sync>;

/// The peer check's bookkeeping: what to call on a refusal, and its rate
/// limits.
struct PeerCheck {
    on_refused: OnPeerRefused,
    window_start: std::time::Instant,
    audited_in_window: u32,
    unaudited: u32,
    logged: bool,
}

/// Whether the process at the other end of a connection may be served.
#[derive(Debug, PartialEq, Eq)]
enum PeerVerdict {
    Serve,
    /// Refused; the text names the other end's owner.
    Refuse(String),
}

/// The rule: our own user's processes are served; another user's are not;
/// a socket not found is a remote client (`--allow-remote`, behind
/// authorization) unless it came over loopback; a failed lookup refuses.
fn peer_verdict(peer: SocketAddr, owner: io::Result<crate::peer::PeerOwner>) -> PeerVerdict {
    use crate::peer::PeerOwner;
    match owner {
        Ok(PeerOwner::Us) => PeerVerdict::Serve,
        Ok(PeerOwner::Other(who)) => PeerVerdict::Refuse(who),
        Ok(PeerOwner::NotLocal) if !peer.ip().is_loopback() => PeerVerdict::Serve,
        Ok(PeerOwner::NotLocal) => {
            PeerVerdict::Refuse("an unknown process (socket not found)".into())
        }
        Err(e) => PeerVerdict::Refuse(format!("an unknown process (lookup failed: {e})")),
    }
}

pub struct HubListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    permits: Arc<Semaphore>,
    limit: usize,
    idle_timeout: Duration,
    refusing: Arc<Semaphore>,
    /// When a refusal was last logged: one line per burst, not per socket.
    logged_refusal: Option<std::time::Instant>,
    /// Set with `with_peer_check`: only the hub's own OS user is served.
    peer_check: Option<PeerCheck>,
    /// Connections whose handshake finished, from their tasks.
    ready_tx: mpsc::UnboundedSender<(Conn, SocketAddr)>,
    ready_rx: mpsc::UnboundedReceiver<(Conn, SocketAddr)>,
}

impl HubListener {
    pub fn new(
        tcp: TcpListener,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Self {
        let limit = max_connections.max(1);
        // Unbounded is bounded by the permits: each queued item holds one.
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        HubListener {
            tcp,
            tls,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            idle_timeout,
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            logged_refusal: None,
            peer_check: None,
            ready_tx,
            ready_rx,
        }
    }

    /// Serves only processes of the OS user the hub runs as; `on_refused`
    /// audits the others.
    pub fn with_peer_check(mut self, on_refused: OnPeerRefused) -> Self {
        self.peer_check = Some(PeerCheck {
            on_refused,
            window_start: std::time::Instant::now(),
            audited_in_window: 0,
            unaudited: 0,
            logged: false,
        });
        self
    }

    /// The connection back if the peer check lets it in; otherwise the
    /// refusal is recorded and answered (in a task) here.
    fn check_peer(&mut self, stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
        let Some(check) = &mut self.peer_check else {
            return Some(stream);
        };
        let owner = stream
            .local_addr()
            .and_then(|local| crate::peer::connection_owner(local, peer));
        let who = match peer_verdict(peer, owner) {
            PeerVerdict::Serve => return Some(stream),
            PeerVerdict::Refuse(who) => who,
        };
        if check.window_start.elapsed() >= PEER_WINDOW {
            check.window_start = std::time::Instant::now();
            check.audited_in_window = 0;
            check.logged = false;
        }
        if !check.logged {
            check.logged = true;
            tracing::warn!(%peer, owner = %who, "refusing a connection from another OS user's process (peer check; one line per {}s)", PEER_WINDOW.as_secs());
        }
        if check.audited_in_window < PEER_AUDITS_PER_WINDOW {
            check.audited_in_window += 1;
            (check.on_refused)(peer, &who, std::mem::take(&mut check.unaudited));
        } else {
            check.unaudited = check.unaudited.saturating_add(1);
        }
        if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let answer = plain_answer("403 Forbidden", &format!("{PEER_REFUSAL}.\n"), "");
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream, tls, answer)).await;
                drop(slot);
            });
        }
        None
    }

    /// A connection to hand to axum now, or `None` if it was refused or
    /// its TLS handshake continues in a task.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) -> Option<(Conn, SocketAddr)> {
        // First, before a permit: another user's flood never takes places
        // from this user's apps.
        let stream = self.check_peer(stream, peer)?;
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let quiet =
                matches!(self.logged_refusal, Some(t) if t.elapsed() < Duration::from_secs(10));
            if !quiet {
                self.logged_refusal = Some(std::time::Instant::now());
                tracing::warn!(limit = self.limit, %peer, "refusing connections: at the connection limit (--max-connections)");
            }
            if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
                let tls = self.tls.clone();
                let body = format!(
                    "The Lockstep hub is serving its maximum of {} connections; try again shortly, \
                     or ask the administrator to raise --max-connections.\n",
                    self.limit
                );
                let answer = plain_answer("503 Service Unavailable", &body, "Retry-After: 5\r\n");
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream, tls, answer)).await;
                    drop(slot);
                });
            }
            return None;
        };
        let Some(tls) = self.tls.clone() else {
            return Some((
                Conn {
                    io: Io::Plain(stream),
                    idle: Idle::new(self.idle_timeout),
                    _permit: permit,
                },
                peer,
            ));
        };
        let ready = self.ready_tx.clone();
        let idle_timeout = self.idle_timeout;
        tokio::spawn(async move {
            let handshake = async {
                if speaks_plain_http(&stream).await {
                    // Answer in its own protocol, as a TLS error would be cryptic.
                    let _ = tell_to_use_https(stream).await;
                    return Err(io::Error::other("plain HTTP on the TLS port"));
                }
                tls.accept(stream).await
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let conn = Conn {
                        io: Io::Tls(Box::new(stream)),
                        idle: Idle::new(idle_timeout),
                        _permit: permit,
                    };
                    // Fails only when the server has stopped accepting.
                    let _ = ready.send((conn, peer));
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
        None
    }
}

impl axum::serve::Listener for HubListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            // Both branches are cancel-safe: axum drops this future at shutdown.
            tokio::select! {
                Some(ready) = self.ready_rx.recv() => return ready,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(conn) = self.admit(stream, peer) {
                            return conn;
                        }
                    }
                    Err(e) => accept_error(e).await,
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Like axum's own listener: a client that gave up before we accepted is
/// nothing; anything else (out of file descriptors) gets a pause, not a
/// busy loop.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A TLS client starts with a handshake record (0x16); an HTTP request
/// starts with a method name in ASCII letters.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Tells a plain-HTTP client that this port speaks HTTPS.
async fn tell_to_use_https(stream: TcpStream) -> io::Result<()> {
    let body = "This Lockstep hub serves HTTPS (--tls): use https:// and wss:// URLs.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    answer_and_close(stream, answer.as_bytes()).await
}

/// A complete `HTTP/1.1` answer with a text body, closing the connection.
fn plain_answer(status: &str, body: &str, extra_headers: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A refusal (over the limit, or another user's process), in the client's
/// protocol (after the handshake with TLS).
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>, answer: String) -> io::Result<()> {
    match tls {
        Some(tls) => answer_and_close(tls.accept(stream).await?, answer.as_bytes()).await,
        None => answer_and_close(stream, answer.as_bytes()).await,
    }
}

async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    answer: &[u8],
) -> io::Result<()> {
    // Read the request head first: closing with unread input would reset
    // the connection, and the client could lose the answer.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    // Until the client closes its side (bounded by REFUSAL_TIMEOUT).
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// One accepted connection, holding its place under the limit.
pub struct Conn {
    // First, so it drops first: once a client sees the socket close, its
    // place is free again.
    _permit: OwnedSemaphorePermit,
    io: Io,
    idle: Idle,
}

enum Io {
    Plain(TcpStream),
    // Boxed: a TLS stream carries its buffers inline.
    Tls(Box<TlsStream<TcpStream>>),
}

/// When a connection last moved a byte, and a timer that fires `limit`
/// after that. The timer is moved lazily, when it fires early, so busy
/// connections pay one `Instant::now()` per read or write, not a timer
/// reset.
struct Idle {
    limit: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(limit: Duration) -> Idle {
        let last = Instant::now();
        Idle {
            limit,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + limit)),
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// For an operation that is waiting: has nothing moved for `limit`?
    /// Registers the waker when not.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.limit;
            if due <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }

    /// `result` of an I/O operation, with the idle bookkeeping: progress
    /// counts as activity, and a wait past the limit becomes an error.
    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
        progressed: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match &result {
            Poll::Ready(Ok(v)) if progressed(v) => self.moved(),
            Poll::Pending if self.expired(cx) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )))
            }
            _ => {}
        }
        result
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let after = buf.filled().len();
        this.idle.track(cx, result, |_| after > before)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.idle.track(cx, result, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        this.idle.track(cx, result, |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.idle.track(cx, result, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerOwner;

    /// Issue 17: who is served.
    #[test]
    fn peer_verdicts() {
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        assert_eq!(peer_verdict(local, Ok(PeerOwner::Us)), PeerVerdict::Serve);
        assert_eq!(
            peer_verdict(local, Ok(PeerOwner::Other("uid 1001".into()))),
            PeerVerdict::Refuse("uid 1001".into())
        );
        // Found on this machine under another user, even via a LAN address.
        assert!(matches!(
            peer_verdict(remote, Ok(PeerOwner::Other("uid 1001".into()))),
            PeerVerdict::Refuse(_)
        ));
        // Not a local socket: another machine (--allow-remote) is served.
        assert_eq!(
            peer_verdict(remote, Ok(PeerOwner::NotLocal)),
            PeerVerdict::Serve
        );
        // Fails closed on loopback.
        assert!(matches!(
            peer_verdict(local, Ok(PeerOwner::NotLocal)),
            PeerVerdict::Refuse(_)
        ));
        assert!(matches!(
            peer_verdict(local, Err(io::Error::other("denied"))),
            PeerVerdict::Refuse(w) if w.contains("denied")
        ));
    }
}
