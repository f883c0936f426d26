//! One user, one hub (issue 17): which OS user holds the other end of a
//! loopback connection, asked of the kernel right after `accept`, before
//! any byte of HTTP is read.
//!
//! Loopback is shared by every account on the machine: without this check
//! user B's processes reach user A's hub (and A's patient). The client's
//! socket is a local socket, so the OS knows its owner:
//!
//! - Linux: `NETLINK_SOCK_DIAG`, asking for the one socket whose local end
//!   is the peer's address and remote end ours (a hash lookup in the
//!   kernel, O(1)); `/proc/net/tcp{,6}` (O(sockets)) if netlink is denied.
//! - Windows: `GetExtendedTcpTable` gives the connection's owning PID, its
//!   process token gives the user SID.
//! - macOS: not implemented yet; the check is off there (a warning at
//!   start says so).
//!
//! No crate: the Linux request is one fixed-size message (`libc`), and the
//! Windows calls are four documented Win32 functions (`windows-sys`, already
//! in the tree through tokio).

use std::io;
use std::net::SocketAddr;

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
pub const SUPPORTED: bool = cfg!(any(target_os = "linux", windows));

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

#[cfg(target_os = "linux")]
fn uid_owner(uid: Option<u32>) -> PeerOwner {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    match uid {
        Some(uid) if uid == ours => PeerOwner::Us,
        Some(uid) => PeerOwner::Other(format!("uid {uid}")),
        None => PeerOwner::NotLocal,
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use super::{uid_owner, PeerOwner};
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
        /// `cargo test -p lockstep-hub --lib peer_check_cost -- --ignored --nocapture`.
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
}

#[cfg(windows)]
mod sys {
    use super::PeerOwner;
    use std::io;
    use std::net::SocketAddr;

    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
    };
    use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    use windows_sys::Win32::Security::{
        EqualSid, GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    const MIB_TCP_STATE_LISTEN: u32 = 2;

    pub fn current_user_key() -> String {
        // SAFETY: the pseudo-handle of our own process needs no closing.
        match unsafe { user_of_process(GetCurrentProcess()) } {
            Some(sid) => sid_text(&sid),
            None => std::env::var("USERNAME").unwrap_or_default(),
        }
    }

    pub fn owner(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<PeerOwner> {
        let Some(pid) = owning_pid(local, remote)? else {
            return Ok(PeerOwner::NotLocal);
        };
        // SAFETY: handles are checked and closed; buffers sized by the API.
        unsafe {
            let ours = user_of_process(GetCurrentProcess())
                .ok_or_else(|| io::Error::other("cannot read this process's user"))?;
            let process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if process.is_null() {
                // A process of another user (or a protected one) we may not open.
                return Ok(PeerOwner::Other(format!("process {pid}")));
            }
            let theirs = user_of_process(process);
            CloseHandle(process);
            Ok(match theirs {
                Some(sid) if EqualSid(sid.as_ptr() as _, ours.as_ptr() as _) != 0 => PeerOwner::Us,
                Some(sid) => PeerOwner::Other(format!("{} (process {pid})", sid_text(&sid))),
                None => PeerOwner::Other(format!("process {pid}")),
            })
        }
    }

    /// The PID owning the TCP socket `local` → `remote` (or listening on
    /// `local`), from the system's TCP table.
    fn owning_pid(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<Option<u32>> {
        let family = match local {
            SocketAddr::V4(_) => AF_INET,
            SocketAddr::V6(_) => AF_INET6,
        };
        let mut size = 0u32;
        // u64: aligned for the rows.
        let mut table: Vec<u64> = Vec::new();
        let mut filled = false;
        // The table may grow between the size query and the read: retry.
        for _ in 0..4 {
            // SAFETY: the buffer holds `size` bytes.
            let status = unsafe {
                GetExtendedTcpTable(
                    table.as_mut_ptr().cast(),
                    &mut size,
                    0,
                    u32::from(family),
                    TCP_TABLE_OWNER_PID_ALL,
                    0,
                )
            };
            match status {
                0 => {
                    filled = true;
                    break;
                }
                // ERROR_INSUFFICIENT_BUFFER: `size` now says how much.
                122 => table = vec![0u64; (size as usize).div_ceil(8) + 1],
                e => return Err(io::Error::from_raw_os_error(e as i32)),
            }
        }
        if !filled {
            return Err(io::Error::other("the TCP table kept growing; try again"));
        }
        let port = |p: u32| u16::from_be(p as u16);
        // SAFETY: the table starts with dwNumEntries, then that many rows.
        unsafe {
            let count = *(table.as_ptr() as *const u32) as usize;
            let rows = (table.as_ptr() as *const u8).add(4);
            match (local, remote) {
                (SocketAddr::V4(l), r) => {
                    let rows =
                        std::slice::from_raw_parts(rows as *const MIB_TCPROW_OWNER_PID, count);
                    Ok(rows.iter().find_map(|row| {
                        let l_ok = row.dwLocalAddr.to_ne_bytes() == l.ip().octets()
                            && port(row.dwLocalPort) == l.port();
                        let r_ok = match r {
                            Some(SocketAddr::V4(r)) => {
                                row.dwRemoteAddr.to_ne_bytes() == r.ip().octets()
                                    && port(row.dwRemotePort) == r.port()
                                    && row.dwState != MIB_TCP_STATE_LISTEN
                            }
                            Some(_) => false,
                            None => row.dwState == MIB_TCP_STATE_LISTEN,
                        };
                        (l_ok && r_ok).then_some(row.dwOwningPid)
                    }))
                }
                (SocketAddr::V6(l), r) => {
                    let rows =
                        std::slice::from_raw_parts(rows as *const MIB_TCP6ROW_OWNER_PID, count);
                    Ok(rows.iter().find_map(|row| {
                        let l_ok =
                            row.ucLocalAddr == l.ip().octets() && port(row.dwLocalPort) == l.port();
                        let r_ok = match r {
                            Some(SocketAddr::V6(r)) => {
                                row.ucRemoteAddr == r.ip().octets()
                                    && port(row.dwRemotePort) == r.port()
                                    && row.dwState != MIB_TCP_STATE_LISTEN
                            }
                            Some(_) => false,
                            None => row.dwState == MIB_TCP_STATE_LISTEN,
                        };
                        (l_ok && r_ok).then_some(row.dwOwningPid)
                    }))
                }
            }
        }
    }

    /// The user SID of a process, copied out of its token.
    unsafe fn user_of_process(process: HANDLE) -> Option<Vec<u8>> {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(process, TOKEN_QUERY, &mut token) == 0 {
            return None;
        }
        let mut buf = vec![0u64; 128]; // 1 KiB, aligned: a TOKEN_USER fits
        let mut len = 0u32;
        let ok = GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        );
        CloseHandle(token);
        if ok == 0 {
            return None;
        }
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        let sid = user.User.Sid as *const u8;
        // A SID is 8 bytes plus 4 per sub-authority (count at byte 1).
        let sid_len = 8 + 4 * usize::from(*sid.add(1));
        Some(std::slice::from_raw_parts(sid, sid_len).to_vec())
    }

    /// `S-1-5-21-…` for a SID.
    fn sid_text(sid: &[u8]) -> String {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: `sid` is a whole SID; the string is freed with LocalFree.
        unsafe {
            if ConvertSidToStringSidW(sid.as_ptr() as _, &mut text) == 0 {
                return String::new();
            }
            let mut n = 0;
            while *text.add(n) != 0 {
                n += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Our own connection is ours; our own listener too.
        #[test]
        fn own_connection_is_ours() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let server = listener.local_addr().unwrap();
            let _client = std::net::TcpStream::connect(server).unwrap();
            let (_accepted, peer) = listener.accept().unwrap();
            assert_eq!(owner(peer, Some(server)).unwrap(), PeerOwner::Us);
            assert_eq!(owner(server, None).unwrap(), PeerOwner::Us);
            assert!(current_user_key().starts_with("S-1-"));
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
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

/// Per-user ports tried before giving up.
const PER_USER_TRIES: u16 = 16;

/// A listening socket for this user's hub (a blocking std listener: the
/// tray binds before its runtime serves; `launch` makes it non-blocking),
/// and whether it had to move.
#[derive(Debug)]
pub struct Bound {
    pub listener: std::net::TcpListener,
    /// The configured port and who holds it, when another user did and
    /// this hub moved to its per-user port.
    pub moved_from: Option<(u16, String)>,
}

impl Bound {
    /// What to tell the user (tray notification, log): "port 4747 is used
    /// by another user (uid 1001); this session uses 5662".
    pub fn note(&self) -> Option<String> {
        let (port, who) = self.moved_from.as_ref()?;
        let now = self.listener.local_addr().ok()?.port();
        Some(format!(
            "port {port} is used by another user ({who}); this session uses {now}"
        ))
    }
}

/// Binds `addr`; if its port is held by another OS user (their hub, on a
/// multi-session host), binds this user's per-user port instead (or the
/// next free ones in the range). Held by this same user: an error (the
/// hub is probably running already; see the discovery file).
pub fn bind_for_this_user(addr: SocketAddr) -> Result<Bound, String> {
    let in_use = match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            return Ok(Bound {
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
            return Ok(Bound {
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
    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn a_port_held_by_this_user_is_an_error_not_a_move() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_for_this_user(addr).unwrap_err();
        assert!(err.contains("in use by another program of yours"), "{err}");
        let free = bind_for_this_user("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(free.moved_from.is_none() && free.note().is_none());
    }

    /// IPv6 loopback, and an IPv4 client of a dual-stack listener (its
    /// addresses show as `::ffff:127.0.0.1`), are found as ours too.
    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn ipv6_and_dual_stack_connections_are_ours() {
        let mut cases = vec![("[::1]:0", "[::1]")];
        // Windows sockets are IPv6-only by default: no dual stack there.
        if cfg!(target_os = "linux") {
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

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4747".parse().unwrap();
        assert_eq!(unmap(mapped), "127.0.0.1:4747".parse().unwrap());
        let v6: SocketAddr = "[::1]:4747".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }

    #[cfg(any(target_os = "linux", windows))]
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
}
