//! The peer check on Linux: `NETLINK_SOCK_DIAG`, asking for the one socket
//! whose local end is the peer's address and remote end ours (a hash lookup
//! in the kernel, O(1)); `/proc/net/tcp{,6}` (O(sockets)) if netlink is
//! denied. Both give the socket's owner uid.

use crate::PeerOwner;
use std::io::{self, BufRead};
use std::net::SocketAddr;

pub fn current_user_key() -> String {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }.to_string()
}

pub fn owner(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<PeerOwner> {
    let uid = match sock_diag_uid(local, remote) {
        Ok(uid) => uid,
        // Netlink may be filtered (seccomp, some containers).
        Err(_) => procfs_uid(local, remote)?,
    };
    Ok(uid_owner(uid))
}

fn uid_owner(uid: Option<u32>) -> PeerOwner {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    match uid {
        Some(uid) if uid == ours => PeerOwner::Us,
        Some(uid) => PeerOwner::Other(format!("uid {uid}")),
        None => PeerOwner::NotLocal,
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const TCP_LISTEN_STATE: u32 = 10;

/// `struct inet_diag_sockid` (linux/inet_diag.h).
#[repr(C)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

/// `nlmsghdr` + `struct inet_diag_req_v2`.
#[repr(C)]
struct Request {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

fn addr_bytes(addr: &SocketAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        SocketAddr::V4(a) => out[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out = a.ip().octets(),
    }
    out
}

/// Owner uid of the TCP socket bound to `local` and connected to
/// `remote` (or listening, with `None`); `Ok(None)`: no such socket.
fn sock_diag_uid(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<Option<u32>> {
    let family = match local {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // A listener is found with a wildcard remote end.
    let remote_addr = remote.unwrap_or_else(|| match local {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    });
    let request = Request {
        len: std::mem::size_of::<Request>() as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags: libc::NLM_F_REQUEST as u16,
        seq: 1,
        pid: 0,
        family: family as u8,
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: u32::MAX,
        id: SockId {
            sport: local.port().to_be_bytes(),
            dport: remote_addr.port().to_be_bytes(),
            src: addr_bytes(&local),
            dst: addr_bytes(&remote_addr),
            interface: 0,
            cookie: [u32::MAX; 2], // INET_DIAG_NOCOOKIE
        },
    };
    // SAFETY: plain syscalls on a socket we own and close; the buffers
    // outlive the calls and their lengths are the ones passed.
    let reply = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(
            fd,
            (&request as *const Request).cast(),
            std::mem::size_of::<Request>(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        );
        let mut buf = [0u8; 512];
        // The kernel answers a single-socket request while handling
        // the send: the reply is already queued, never waited for.
        let got = if sent < 0 {
            -1
        } else {
            libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
        };
        let error = io::Error::last_os_error();
        libc::close(fd);
        if got < 0 {
            return Err(error);
        }
        (buf, got as usize)
    };
    let (buf, len) = reply;
    let msg = &buf[..len];
    let u16_at = |i: usize| u16::from_ne_bytes([msg[i], msg[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    if len < 20 {
        return Err(io::Error::other("short sock_diag reply"));
    }
    match u16_at(4) {
        NLMSG_ERROR => match -(u32_at(16) as i32) {
            libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        },
        // inet_diag_msg after the 16-byte header: family, state, timer,
        // retrans, the socket id (48 bytes), expires, rqueue, wqueue, uid.
        SOCK_DIAG_BY_FAMILY if len >= 84 => {
            let state = u32::from(msg[17]);
            let (sport, dport) = ([msg[20], msg[21]], [msg[22], msg[23]]);
            // The lookup falls back to listeners: only the exact socket counts.
            let exact = sport == request.id.sport
                && match remote {
                    Some(_) => dport == request.id.dport && state != TCP_LISTEN_STATE,
                    None => state == TCP_LISTEN_STATE,
                };
            Ok(exact.then(|| u32_at(80)))
        }
        _ => Err(io::Error::other("unexpected sock_diag reply")),
    }
}

/// `/proc/net/tcp` spells an address as the hex of each 32-bit word in
/// host byte order, then `:PORT` in hex.
fn procfs_addr(addr: &SocketAddr) -> String {
    let words: String = match addr {
        SocketAddr::V4(a) => format!("{:08X}", u32::from_ne_bytes(a.ip().octets())),
        SocketAddr::V6(a) => a
            .ip()
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{words}:{:04X}", addr.port())
}

/// The same answer read from `/proc/net/tcp{,6}`, line by line (time
/// grows with the sockets on the machine; memory does not).
fn procfs_uid(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<Option<u32>> {
    let file = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let want_local = procfs_addr(&local);
    let want_remote = remote.map(|r| procfs_addr(&r));
    let reader = io::BufReader::new(std::fs::File::open(file)?);
    for line in reader.lines().skip(1) {
        let line = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, l, r, state, _, _, _, uid, ..] = fields[..] else {
            continue;
        };
        let matches = l.eq_ignore_ascii_case(&want_local)
            && match &want_remote {
                Some(want) => r.eq_ignore_ascii_case(want) && state != "0A",
                None => state == "0A",
            };
        if matches {
            return Ok(uid.parse().ok());
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost per connection (DEPLOYMENT.md quotes it): run with
    /// `cargo test -p lockstep-peer peer_check_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn peer_check_cost() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for sockets in [1usize, 1000, 4000] {
            while held.len() < sockets {
                let c = std::net::TcpStream::connect(server).unwrap();
                let (a, peer) = listener.accept().unwrap();
                held.push((c, a, peer));
            }
            let peer = held.last().unwrap().2;
            let time = |f: &dyn Fn() -> io::Result<Option<u32>>, n: u32| {
                let start = std::time::Instant::now();
                for _ in 0..n {
                    assert!(f().unwrap().is_some());
                }
                start.elapsed() / n
            };
            let netlink = time(&|| sock_diag_uid(peer, Some(server)), 10_000);
            let procfs = time(&|| procfs_uid(peer, Some(server)), 100);
            println!(
                "{} loopback connections ({} sockets): sock_diag {netlink:?}, /proc/net/tcp {procfs:?} per lookup",
                sockets,
                sockets * 2 + 1
            );
        }
    }

    #[test]
    fn procfs_spells_addresses_like_the_kernel() {
        // Little-endian hosts (the CI's) write 127.0.0.1 as 0100007F.
        if cfg!(target_endian = "little") {
            let a: SocketAddr = "127.0.0.1:4747".parse().unwrap();
            assert_eq!(procfs_addr(&a), "0100007F:128B");
            let b: SocketAddr = "[::1]:80".parse().unwrap();
            assert_eq!(procfs_addr(&b), "00000000000000000000000001000000:0050");
        }
    }

    /// Both ways give the same answer for a real connection and a
    /// real listener.
    #[test]
    fn netlink_and_procfs_agree() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let ours = Some(unsafe { libc::geteuid() });
        assert_eq!(sock_diag_uid(peer, Some(server)).unwrap(), ours);
        assert_eq!(procfs_uid(peer, Some(server)).unwrap(), ours);
        assert_eq!(sock_diag_uid(server, None).unwrap(), ours);
        assert_eq!(procfs_uid(server, None).unwrap(), ours);
        // A socket that does not exist: nobody's.
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(sock_diag_uid(gone, Some(server)).unwrap(), None);
        assert_eq!(procfs_uid(gone, Some(server)).unwrap(), None);
    }
}
