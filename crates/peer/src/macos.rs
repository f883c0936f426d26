//! The peer check on macOS, with libproc (what `lsof -i` reads): the
//! client is ours iff a process of our effective uid holds the TCP socket
//! whose local end is the peer's address and remote end ours.
//!
//! - `proc_listpids(PROC_UID_ONLY, euid)` lists our processes; for each,
//!   `proc_pidinfo(PROC_PIDLISTFDS)` its descriptors, and for each socket
//!   `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)` its addresses (`macos_abi`).
//! - Other users' processes cannot be read without root. So a socket not
//!   found among ours is asked about once more: a `bind` to its address
//!   (without `SO_REUSEADDR`) fails with "address in use" while any socket
//!   on this machine holds it: then it is another user's (`Other`), else
//!   it is gone or on another machine (`NotLocal`). A client that closed
//!   just before the lookup can leave its address in TIME_WAIT and count
//!   as another user's: it is refused, and it has gone anyway.
//!
//! Cost: one `proc_listpids`, then per process one or two `proc_pidinfo`
//! calls and per socket descriptor one `proc_pidfdinfo`, until the socket
//! is found: with P processes of the user and S sockets among them,
//! at most 1 + 2P + S system calls (a desktop session: some hundreds of
//! processes and a few thousand sockets, a few milliseconds; not measured
//! on a real Mac). A connection from another user always pays the whole
//! scan, plus one `bind`. The last few processes that matched are tried
//! first: an app that connects again costs its own descriptors only.

use crate::macos_abi::{is_the_socket, SocketFdInfo, PROC_PIDFDSOCKETINFO, PROC_UID_ONLY};
use crate::PeerOwner;
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Processes whose socket matched lately, most recent first (0: empty).
static RECENT: Mutex<[libc::pid_t; 4]> = Mutex::new([0; 4]);

pub fn current_user_key() -> String {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }.to_string()
}

pub fn owner(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<PeerOwner> {
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    if let Some(pid) = holder_among(&processes_of(uid)?, local, remote) {
        remember(pid);
        return Ok(PeerOwner::Us);
    }
    Ok(match address_in_use(local) {
        true => PeerOwner::Other(format!("a process not of uid {uid}")),
        false => PeerOwner::NotLocal,
    })
}

/// The pids of `uid`'s processes (by effective uid).
fn processes_of(uid: libc::uid_t) -> io::Result<Vec<libc::pid_t>> {
    // SAFETY: a null buffer asks for the size in bytes.
    let needed = unsafe { libc::proc_listpids(PROC_UID_ONLY, uid, std::ptr::null_mut(), 0) };
    if needed <= 0 {
        return Err(io::Error::last_os_error());
    }
    // Room for processes started between the two calls.
    let mut pids: Vec<libc::pid_t> = vec![0; needed as usize / size_of::<libc::pid_t>() + 64];
    let bytes = (pids.len() * size_of::<libc::pid_t>()) as libc::c_int;
    // SAFETY: the buffer holds `bytes` bytes.
    let filled =
        unsafe { libc::proc_listpids(PROC_UID_ONLY, uid, pids.as_mut_ptr().cast(), bytes) };
    if filled <= 0 {
        return Err(io::Error::last_os_error());
    }
    pids.truncate(filled as usize / size_of::<libc::pid_t>());
    pids.retain(|&pid| pid > 0);
    Ok(pids)
}

/// The first of `pids` (recent matches first) holding the socket.
fn holder_among(
    pids: &[libc::pid_t],
    local: SocketAddr,
    remote: Option<SocketAddr>,
) -> Option<libc::pid_t> {
    let recent = *RECENT.lock().unwrap_or_else(|e| e.into_inner());
    // Only recent pids that are still in this user's list: a pid reused by
    // another user's process is never read.
    let first = recent.iter().filter(|pid| pids.contains(pid));
    let rest = pids.iter().filter(|pid| !recent.contains(pid));
    let mut fds = Vec::new();
    first
        .chain(rest)
        .copied()
        .find(|&pid| holds(pid, local, remote, &mut fds))
}

fn remember(pid: libc::pid_t) {
    remember_in(&mut RECENT.lock().unwrap_or_else(|e| e.into_inner()), pid);
}

/// Puts `pid` first, dropping the oldest if it was not there.
fn remember_in(recent: &mut [libc::pid_t; 4], pid: libc::pid_t) {
    let at = recent
        .iter()
        .position(|&p| p == pid)
        .unwrap_or(recent.len() - 1);
    recent.copy_within(0..at, 1);
    recent[0] = pid;
}

/// Whether process `pid` holds the socket (false if it cannot be read:
/// it exited, or it is protected). `fds` is a buffer reused across calls.
fn holds(
    pid: libc::pid_t,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    fds: &mut Vec<libc::proc_fdinfo>,
) -> bool {
    let entry = size_of::<libc::proc_fdinfo>();
    if fds.is_empty() {
        fds.resize(
            256,
            libc::proc_fdinfo {
                proc_fd: 0,
                proc_fdtype: 0,
            },
        );
    }
    let count = loop {
        let bytes = (fds.len() * entry) as libc::c_int;
        // SAFETY: the buffer holds `bytes` bytes.
        let filled = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDLISTFDS,
                0,
                fds.as_mut_ptr().cast(),
                bytes,
            )
        };
        if filled <= 0 {
            return false;
        }
        // A full buffer may have cut the list short: ask for its size.
        if filled < bytes {
            break filled as usize / entry;
        }
        // SAFETY: a null buffer asks for the size in bytes.
        let needed =
            unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
        let wanted = (needed.max(0) as usize / entry).max(fds.len() * 2) + 16;
        fds.resize(
            wanted,
            libc::proc_fdinfo {
                proc_fd: 0,
                proc_fdtype: 0,
            },
        );
    };
    // SAFETY: all-integer struct, zero is valid; overwritten by the kernel.
    let mut info: Box<SocketFdInfo> = Box::new(unsafe { std::mem::zeroed() });
    let size = size_of::<SocketFdInfo>() as libc::c_int;
    fds[..count]
        .iter()
        .filter(|fd| fd.proc_fdtype == libc::PROX_FDTYPE_SOCKET as u32)
        .any(|fd| {
            // SAFETY: `info` is a whole socket_fdinfo of `size` bytes.
            let got = unsafe {
                libc::proc_pidfdinfo(
                    pid,
                    fd.proc_fd,
                    PROC_PIDFDSOCKETINFO,
                    (&mut *info as *mut SocketFdInfo).cast(),
                    size,
                )
            };
            got == size && is_the_socket(&info, local, remote)
        })
}

/// Whether some socket on this machine, whoever's, is bound to `addr`: a
/// plain `bind` (no `SO_REUSEADDR`) to it fails with `EADDRINUSE`. An
/// address not of this machine fails otherwise (`EADDRNOTAVAIL`).
fn address_in_use(addr: SocketAddr) -> bool {
    // SAFETY: a socket we own and close; the address structs are whole and
    // their lengths are the ones passed.
    unsafe {
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return false;
        }
        let bound = match addr {
            SocketAddr::V4(a) => {
                let mut sin: libc::sockaddr_in = std::mem::zeroed();
                sin.sin_len = size_of::<libc::sockaddr_in>() as u8;
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                libc::bind(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            SocketAddr::V6(a) => {
                let mut sin6: libc::sockaddr_in6 = std::mem::zeroed();
                sin6.sin6_len = size_of::<libc::sockaddr_in6>() as u8;
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                libc::bind(
                    fd,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        };
        let in_use =
            bound != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EADDRINUSE);
        libc::close(fd);
        in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address probe: a held address is in use, a released one not.
    #[test]
    fn a_bound_address_is_in_use_until_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(address_in_use(addr));
        drop(listener);
        assert!(!address_in_use(addr));
    }

    /// The process that matched is tried first next time.
    #[test]
    fn recent_matches_come_first() {
        let mut recent = [0; 4];
        for pid in [11, 22, 33, 44, 55, 22] {
            remember_in(&mut recent, pid);
        }
        assert_eq!(recent, [22, 55, 44, 33]);
    }
}
