//! One user, one hub (issue 17): which OS user holds the other end of a
//! loopback connection, asked of the OS right after `accept`, before any
//! byte of HTTP is read; and the per-user port a hub moves to when another
//! user's hub holds the configured one (`ports.rs`).
//!
//! Loopback is shared by every account on the machine: without this check
//! user B's processes reach user A's hub (and A's patient). The client's
//! socket is a local socket, so the OS knows its owner:
//!
//! - Linux (`linux.rs`): `NETLINK_SOCK_DIAG`, asking for the one socket
//!   whose local end is the peer's address and remote end ours (a hash
//!   lookup in the kernel, O(1)); `/proc/net/tcp{,6}` (O(sockets)) if
//!   netlink is denied. Gives the owner's uid.
//! - Windows (`windows.rs`): `GetExtendedTcpTable` gives the connection's
//!   owning PID, its process token gives the user SID.
//! - macOS (`macos.rs`): libproc, over this user's processes and their
//!   sockets (O(processes + sockets) of this user; the last matching
//!   processes first). Other users' processes are not readable without
//!   root: a socket not found among ours whose address is in use on this
//!   machine is another user's.
//!
//! No crate: the Linux request is one fixed-size message (`libc`); the
//! Windows calls are four documented Win32 functions (`windows-sys`,
//! already in the tree through tokio); the macOS calls are in `libc` and
//! the one struct it lacks is declared in `macos_abi.rs` (the `libproc`
//! crate runs bindgen against the macOS SDK at build time, needs a newer
//! Rust than ours and adds bindgen's tree to Cargo.lock).
//!
//! This crate depends on `libc` / `windows-sys` only, so it is
//! clippy-checked for macOS and Windows from Linux (scripts/test); the hub
//! re-exports it as `lockstep_hub::peer`.

use std::io;
use std::net::SocketAddr;

mod ports;
pub use ports::{
    bind_for_this_user_std, moved_note, per_user_candidates, per_user_port, StdBound,
    PER_USER_PORTS, PER_USER_PORTS_START,
};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as sys;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as sys;
// The struct layout and socket test are plain data: unit-tested everywhere.
#[cfg(any(target_os = "macos", test))]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod macos_abi;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

/// Who holds the client end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOwner {
    /// A process of the user the hub runs as.
    Us,
    /// Another account; the text names it for the audit trail ("uid 1001").
    Other(String),
    /// No local socket has that address: the client is on another machine
    /// (only possible with `--allow-remote`), or it closed already.
    NotLocal,
}

/// Whether this OS has a peer check.
pub const SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "macos", windows));

/// The owner of the client socket of a connection accepted on `local`
/// from `peer`.
pub fn connection_owner(local: SocketAddr, peer: SocketAddr) -> io::Result<PeerOwner> {
    let (local, peer) = (unmap(local), unmap(peer));
    // The client's socket: its local end is `peer`, its remote end `local`.
    sys::owner(peer, Some(local))
}

/// The owner of the socket listening on `addr`'s port, if any: whether a
/// port in use is held by another user's hub or by our own.
pub fn listener_owner(addr: SocketAddr) -> io::Result<PeerOwner> {
    sys::owner(unmap(addr), None)
}

/// A stable text naming the current OS user: the uid on Unix, the SID on
/// Windows. The per-user port is derived from it.
pub fn current_user_key() -> String {
    sys::current_user_key()
}

/// An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`; its
/// socket is an IPv4 one.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod sys {
    use super::PeerOwner;
    use std::io;
    use std::net::SocketAddr;

    pub fn current_user_key() -> String {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() }.to_string()
    }

    pub fn owner(_local: SocketAddr, _remote: Option<SocketAddr>) -> io::Result<PeerOwner> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the peer check is not implemented on this OS",
        ))
    }
}

/// Against the real OS, on every OS that has the check (Linux here and in
/// CI; macOS and Windows in the release workflow).
#[cfg(all(test, any(target_os = "linux", target_os = "macos", windows)))]
mod tests {
    use super::*;

    #[test]
    fn own_connection_is_ours_and_a_gone_one_is_not_local() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(connection_owner(server, peer).unwrap(), PeerOwner::Us);
        assert_eq!(listener_owner(server).unwrap(), PeerOwner::Us);
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(connection_owner(server, gone).unwrap(), PeerOwner::NotLocal);
        assert!(!current_user_key().is_empty());
    }

    /// A port nobody listens on has no owner.
    #[test]
    fn a_closed_port_has_no_listener() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        assert_eq!(listener_owner(closed).unwrap(), PeerOwner::NotLocal);
    }

    /// Many connections of ours: each is found, whichever is asked.
    #[test]
    fn each_of_many_connections_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let held: Vec<_> = (0..20)
            .map(|_| {
                let client = std::net::TcpStream::connect(server).unwrap();
                let (accepted, peer) = listener.accept().unwrap();
                (client, accepted, peer)
            })
            .collect();
        for (_, _, peer) in held.iter().rev() {
            assert_eq!(connection_owner(server, *peer).unwrap(), PeerOwner::Us);
        }
    }

    /// IPv6 loopback, and an IPv4 client of a dual-stack listener (its
    /// addresses show as `::ffff:127.0.0.1`), are found as ours too.
    #[test]
    fn ipv6_and_dual_stack_connections_are_ours() {
        let mut cases = vec![("[::1]:0", "[::1]")];
        // Windows sockets are IPv6-only by default: no dual stack there.
        if cfg!(any(target_os = "linux", target_os = "macos")) {
            cases.push(("[::]:0", "127.0.0.1"));
        }
        for (bind, connect_ip) in cases {
            let Ok(listener) = std::net::TcpListener::bind(bind) else {
                eprintln!("skipped {bind}: no IPv6 here");
                continue;
            };
            let port = listener.local_addr().unwrap().port();
            let _client = std::net::TcpStream::connect(format!("{connect_ip}:{port}")).unwrap();
            let (accepted, peer) = listener.accept().unwrap();
            let local = accepted.local_addr().unwrap();
            assert_eq!(
                connection_owner(local, peer).unwrap(),
                PeerOwner::Us,
                "{bind}: {local} <- {peer}"
            );
        }
    }
}

#[cfg(test)]
mod portable_tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4747".parse().unwrap();
        assert_eq!(unmap(mapped), "127.0.0.1:4747".parse().unwrap());
        let v6: SocketAddr = "[::1]:4747".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }
}
