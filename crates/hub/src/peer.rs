//! One user, one hub (issue 17): the peer check and the per-user port live
//! in `crates/peer` (`lockstep-peer`: OS bindings only, so it is checked
//! for macOS and Windows from Linux); re-exported here, so
//! `crate::peer::connection_owner` and friends keep their paths. What is
//! added here needs tokio: the async bind.

pub use lockstep_peer::*;

use std::net::SocketAddr;

/// A listening socket for this user's hub, and whether it had to move.
#[derive(Debug)]
pub struct Bound {
    pub listener: tokio::net::TcpListener,
    /// The configured port and who holds it, when another user did and
    /// this hub moved to its per-user port.
    pub moved_from: Option<(u16, String)>,
}

impl Bound {
    /// What to tell the user (tray tooltip, log): "port 4747 is used by
    /// another user (uid 1001); this session uses 5662".
    pub fn note(&self) -> Option<String> {
        moved_note(self.moved_from.as_ref(), self.listener.local_addr())
    }
}

/// [`bind_for_this_user_std`], as a tokio listener: binds `addr`; if its
/// port is held by another OS user (their hub, on a multi-session host),
/// binds this user's per-user port instead. Held by this same user: an
/// error (the hub is probably running already; see the discovery file).
pub async fn bind_for_this_user(addr: SocketAddr) -> Result<Bound, String> {
    let bound = bind_for_this_user_std(addr)?;
    let listener = bound
        .listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(bound.listener))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(Bound {
        listener,
        moved_from: bound.moved_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokio listener serves; a free port does not move.
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    #[tokio::test]
    async fn a_free_port_is_bound_as_asked() {
        let bound = bind_for_this_user("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert!(bound.moved_from.is_none() && bound.note().is_none());
        let addr = bound.listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_accepted, peer) = bound.listener.accept().await.unwrap();
        assert_eq!(connection_owner(addr, peer).unwrap(), PeerOwner::Us);
    }
}
