//! One hub per user session: the port a user's hub moves to when the
//! configured one is held by another user's hub (issue 17), and the bind
//! that decides it.

use crate::{current_user_key, listener_owner, PeerOwner};
use std::io;
use std::net::SocketAddr;

/// Per-user ports tried before giving up.
const PER_USER_TRIES: u16 = 16;

/// A listening socket for this user's hub, and whether it had to move:
/// a blocking std listener (the hub's `peer::bind_for_this_user` makes it
/// a tokio one; the tray binds before its runtime serves).
#[derive(Debug)]
pub struct StdBound {
    pub listener: std::net::TcpListener,
    /// The configured port and who holds it, when another user did and
    /// this hub moved to its per-user port.
    pub moved_from: Option<(u16, String)>,
}

impl StdBound {
    /// What to tell the user (tray tooltip, log).
    pub fn note(&self) -> Option<String> {
        moved_note(self.moved_from.as_ref(), self.listener.local_addr())
    }
}

/// "port 4747 is used by another user (uid 1001); this session uses 5662",
/// when the hub moved (`local`: its listener's address); `None` when it
/// did not.
pub fn moved_note(
    moved_from: Option<&(u16, String)>,
    local: io::Result<SocketAddr>,
) -> Option<String> {
    let (port, who) = moved_from?;
    let now = local.ok()?.port();
    Some(format!(
        "port {port} is used by another user ({who}); this session uses {now}"
    ))
}

/// Binds `addr`; if its port is held by another OS user (their hub, on a
/// multi-session host), binds this user's per-user port instead (or the
/// next free ones in the range). Held by this same user: an error (the
/// hub is probably running already; see the discovery file).
pub fn bind_for_this_user_std(addr: SocketAddr) -> Result<StdBound, String> {
    let in_use = match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            return Ok(StdBound {
                listener,
                moved_from: None,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => e,
        Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
    };
    let who = match listener_owner(addr) {
        Ok(PeerOwner::Us) => {
            return Err(format!(
                "port {} is in use by another program of yours (is Lockstep running already? \
                 its discovery file says where; {in_use})",
                addr.port()
            ))
        }
        Ok(PeerOwner::Other(who)) => who,
        // Owner unknown (another program, or no peer check on this OS).
        Ok(PeerOwner::NotLocal) | Err(_) => "owner unknown".to_owned(),
    };
    for port in per_user_candidates(&current_user_key(), PER_USER_TRIES) {
        let candidate = SocketAddr::new(addr.ip(), port);
        if let Ok(listener) = std::net::TcpListener::bind(candidate) {
            return Ok(StdBound {
                listener,
                moved_from: Some((addr.port(), who)),
            });
        }
    }
    Err(format!(
        "cannot listen on {addr}: {in_use} (held by {who}), nor on this user's ports from {}",
        per_user_port(&current_user_key())
    ))
}

/// Ports a user's hub moves to when the configured one is held by another
/// user's hub: `PER_USER_PORTS_START ..= PER_USER_PORTS_START + PER_USER_PORTS - 1`
/// (4748-5747), below every OS's ephemeral range.
pub const PER_USER_PORTS_START: u16 = 4748;
pub const PER_USER_PORTS: u16 = 1000;

/// The per-user port: 4748 + (hash of the user key mod 1000), the hash being
/// 32-bit FNV-1a finished with the "lowbias32" mixer (consecutive uids
/// spread evenly). Stable for a user across restarts, machines and
/// Lockstep versions (fixed, unlike std's hasher), so IT can predict it.
pub fn per_user_port(user_key: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in user_key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x7feb_352d);
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(0x846c_a68b);
    hash ^= hash >> 16;
    PER_USER_PORTS_START + (hash % u32::from(PER_USER_PORTS)) as u16
}

/// Ports to try, in order, when `configured` is held by another user: the
/// per-user port, then the next ones (wrapping inside the range) in case
/// two users' ports collide or another program holds one.
pub fn per_user_candidates(user_key: &str, tries: u16) -> impl Iterator<Item = u16> {
    let first = per_user_port(user_key) - PER_USER_PORTS_START;
    (0..tries.min(PER_USER_PORTS)).map(move |i| PER_USER_PORTS_START + (first + i) % PER_USER_PORTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: the per-user port rule.
    #[test]
    fn per_user_port_is_stable_in_range_and_differs_between_users() {
        // Fixed values: the rule is a documented contract (README).
        assert_eq!(per_user_port("1000"), 5662);
        let ports: Vec<u16> = [
            "0",
            "1000",
            "1001",
            "S-1-5-21-1004336348-1177238915-682003330-512",
        ]
        .iter()
        .map(|k| per_user_port(k))
        .collect();
        for p in &ports {
            assert!((4748..=5747).contains(p), "{p}");
        }
        assert_ne!(ports[1], ports[2]);
        let many: std::collections::HashSet<u16> = (1000..1100)
            .map(|uid| per_user_port(&uid.to_string()))
            .collect();
        assert!(many.len() > 88, "spread: {}", many.len());
        // Candidates start at the user's port and wrap inside the range.
        let c: Vec<u16> = per_user_candidates("1000", 3).collect();
        assert_eq!(c[0], per_user_port("1000"));
        assert_eq!(c.len(), 3);
        for (a, b) in c.iter().zip(c.iter().skip(1)) {
            assert!(*b == a + 1 || (*a == 5747 && *b == 4748));
        }
        assert_eq!(per_user_candidates("x", 5000).count(), 1000);
    }

    /// A port this same user holds means Lockstep runs already: an error
    /// saying so, never a second hub on another port. (Held by another
    /// user, the hub moves: scripts/two-users-test.)
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    #[test]
    fn a_port_held_by_this_user_is_an_error_not_a_move() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_for_this_user_std(addr).unwrap_err();
        assert!(err.contains("in use by another program of yours"), "{err}");
        let free = bind_for_this_user_std("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(free.moved_from.is_none() && free.note().is_none());
    }

    #[test]
    fn the_note_names_both_ports_and_the_holder() {
        let moved = (4747, "uid 1001".to_owned());
        let local: SocketAddr = "127.0.0.1:5662".parse().unwrap();
        assert_eq!(
            moved_note(Some(&moved), Ok(local)).as_deref(),
            Some("port 4747 is used by another user (uid 1001); this session uses 5662")
        );
        assert_eq!(moved_note(None, Ok(local)), None);
    }
}
