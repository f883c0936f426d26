//! The few structs of xnu's `sys/proc_info.h` that the macOS peer check
//! reads (`proc_pidfdinfo(.., PROC_PIDFDSOCKETINFO, ..)` fills a
//! `struct socket_fdinfo`), declared here because the `libc` crate lacks
//! them, and the test of a socket against the connection asked about.
//!
//! The layout is a stable ABI (lsof and Activity Monitor read it); the
//! asserts below pin every offset we read and the total size, which the
//! kernel checks against the buffer size we pass. Declared field for field
//! from the header, with the parts we never read kept opaque at their size.
//! Compiled on every OS for its unit tests (the layout is the same on any
//! LP64 target: the header uses fixed-width types), used on macOS only.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `proc_listpids` type: processes whose effective uid is `typeinfo`.
pub const PROC_UID_ONLY: u32 = 4;
/// `proc_pidfdinfo` flavor filling a [`SocketFdInfo`].
pub const PROC_PIDFDSOCKETINFO: i32 = 3;
/// `socket_info.soi_kind` of a TCP socket: `soi_proto` is `pri_tcp`.
pub const SOCKINFO_TCP: i32 = 2;
/// `tcp_sockinfo.tcpsi_state` of a listening socket.
pub const TSI_S_LISTEN: i32 = 1;
/// `in_sockinfo.insi_vflag` bits: the addresses are IPv4 (the last 4
/// bytes); the socket is IPv6. A dual-stack wildcard listener has both.
pub const INI_IPV4: u8 = 0x1;
pub const INI_IPV6: u8 = 0x2;

/// `struct proc_fileinfo`.
#[repr(C)]
pub struct ProcFileInfo {
    pub fi_openflags: u32,
    pub fi_status: u32,
    pub fi_offset: i64,
    pub fi_type: i32,
    pub fi_guardflags: u32,
}

/// `struct in_sockinfo`. Ports are in network byte order in an `int`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InSockInfo {
    pub insi_fport: i32,
    pub insi_lport: i32,
    pub insi_gencnt: u64,
    pub insi_flags: u32,
    pub insi_flow: u32,
    pub insi_vflag: u8,
    pub insi_ip_ttl: u8,
    pub rfu_1: u32,
    /// `union { struct in4in6_addr; struct in6_addr }`: 16 bytes, an IPv4
    /// address in the last 4.
    pub insi_faddr: [u8; 16],
    pub insi_laddr: [u8; 16],
    /// `struct { u_char in4_tos; }`.
    pub insi_v4: u8,
    /// `struct { uint8_t in6_hlim; int in6_cksum; u_short in6_ifindex; short in6_hops; }`.
    pub insi_v6: [u32; 3],
}

/// `struct tcp_sockinfo`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpSockInfo {
    pub tcpsi_ini: InSockInfo,
    pub tcpsi_state: i32,
    pub tcpsi_timer: [i32; 4],
    pub tcpsi_mss: i32,
    pub tcpsi_flags: u32,
    pub rfu_1: u32,
    pub tcpsi_tp: u64,
}

/// `socket_info.soi_proto`: a union whose largest member (`un_sockinfo`,
/// two 255-byte addresses) makes it 528 bytes; only `pri_tcp` is read.
#[repr(C)]
pub union SoiProto {
    pub pri_tcp: TcpSockInfo,
    pub size: [u64; 66],
}

/// `struct socket_info`.
#[repr(C)]
pub struct SocketInfo {
    /// `struct vinfo_stat`, 136 bytes, not read.
    pub soi_stat: [u64; 17],
    pub soi_so: u64,
    pub soi_pcb: u64,
    pub soi_type: i32,
    pub soi_protocol: i32,
    pub soi_family: i32,
    /// `soi_options` .. `soi_timeo` (7 shorts) and `soi_error`.
    pub soi_shorts: [i16; 8],
    pub soi_oobmark: u32,
    /// `struct sockbuf_info` soi_rcv and soi_snd, 24 bytes each.
    pub soi_bufs: [u32; 12],
    pub soi_kind: i32,
    pub rfu_1: u32,
    pub soi_proto: SoiProto,
}

/// `struct socket_fdinfo`: `PROC_PIDFDSOCKETINFO_SIZE` is its size.
#[repr(C)]
pub struct SocketFdInfo {
    pub pfi: ProcFileInfo,
    pub psi: SocketInfo,
}

// The layout, as the header gives it on LP64 (x86_64 and arm64 alike).
const _: () = {
    assert!(size_of::<ProcFileInfo>() == 24);
    assert!(size_of::<InSockInfo>() == 80);
    assert!(offset_of!(InSockInfo, insi_vflag) == 24);
    assert!(offset_of!(InSockInfo, insi_faddr) == 32);
    assert!(offset_of!(InSockInfo, insi_laddr) == 48);
    assert!(offset_of!(InSockInfo, insi_v6) == 68);
    assert!(size_of::<TcpSockInfo>() == 120);
    assert!(offset_of!(TcpSockInfo, tcpsi_state) == 80);
    assert!(size_of::<SoiProto>() == 528);
    assert!(offset_of!(SocketInfo, soi_so) == 136);
    assert!(offset_of!(SocketInfo, soi_kind) == 232);
    assert!(offset_of!(SocketInfo, soi_proto) == 240);
    assert!(size_of::<SocketInfo>() == 768);
    assert!(offset_of!(SocketFdInfo, psi) == 24);
    assert!(size_of::<SocketFdInfo>() == 792);
};

/// A port as `in_sockinfo` holds it: network byte order in the low 16 bits.
fn port(raw: i32) -> u16 {
    u16::from_be(raw as u16)
}

/// An address as `in_sockinfo` holds it; an IPv4-mapped IPv6 one (a dual
/// stack socket's IPv4 peer) as IPv4, as the callers' addresses are.
fn address(vflag: u8, bytes: &[u8; 16]) -> IpAddr {
    if vflag & INI_IPV4 != 0 {
        return Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]).into();
    }
    let v6 = Ipv6Addr::from(*bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Whether `info` is the TCP socket bound to `local` and connected to
/// `remote`, or (with `None`) listening on `local` (or on the wildcard
/// address at `local`'s port, which holds `local` too).
pub fn is_the_socket(info: &SocketFdInfo, local: SocketAddr, remote: Option<SocketAddr>) -> bool {
    if info.psi.soi_kind != SOCKINFO_TCP {
        return false;
    }
    // SAFETY: soi_kind says the union holds a tcp_sockinfo; every bit
    // pattern of its integer fields is valid.
    let tcp = unsafe { &info.psi.soi_proto.pri_tcp };
    let ini = &tcp.tcpsi_ini;
    if port(ini.insi_lport) != local.port() {
        return false;
    }
    let laddr = address(ini.insi_vflag, &ini.insi_laddr);
    match remote {
        Some(remote) => {
            tcp.tcpsi_state != TSI_S_LISTEN
                && laddr == local.ip()
                && port(ini.insi_fport) == remote.port()
                && address(ini.insi_vflag, &ini.insi_faddr) == remote.ip()
        }
        None => {
            // A wildcard listener holds the port for the families it serves.
            let serves = match local {
                SocketAddr::V4(_) => INI_IPV4,
                SocketAddr::V6(_) => INI_IPV6,
            };
            tcp.tcpsi_state == TSI_S_LISTEN
                && (laddr == local.ip() || (laddr.is_unspecified() && ini.insi_vflag & serves != 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP socket record as the kernel fills it.
    fn tcp_socket(local: SocketAddr, remote: SocketAddr, state: i32) -> Box<SocketFdInfo> {
        // SAFETY: integers and arrays of integers only: all zero is valid.
        let mut info: Box<SocketFdInfo> = Box::new(unsafe { std::mem::zeroed() });
        info.psi.soi_kind = SOCKINFO_TCP;
        let bytes = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[12..].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V6(v6) => v6.octets(),
        };
        // SAFETY: writing the union member that soi_kind names.
        let tcp = unsafe { &mut info.psi.soi_proto.pri_tcp };
        tcp.tcpsi_state = state;
        let ini = &mut tcp.tcpsi_ini;
        ini.insi_vflag = if local.is_ipv4() { INI_IPV4 } else { INI_IPV6 };
        ini.insi_lport = i32::from(local.port().to_be());
        ini.insi_fport = i32::from(remote.port().to_be());
        ini.insi_laddr = bytes(local.ip());
        ini.insi_faddr = bytes(remote.ip());
        info
    }

    const ESTABLISHED: i32 = 4;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_end_of_a_connection_matches_only_itself() {
        let client = tcp_socket(addr("127.0.0.1:50123"), addr("127.0.0.1:4747"), ESTABLISHED);
        let (peer, hub) = (addr("127.0.0.1:50123"), addr("127.0.0.1:4747"));
        assert!(is_the_socket(&client, peer, Some(hub)));
        // The hub's own end of the same connection is not the client's.
        assert!(!is_the_socket(&client, hub, Some(peer)));
        assert!(!is_the_socket(&client, peer, Some(addr("127.0.0.1:4748"))));
        assert!(!is_the_socket(&client, addr("127.0.0.2:50123"), Some(hub)));
        assert!(!is_the_socket(&client, peer, None), "not a listener");
        let v6 = tcp_socket(addr("[::1]:50123"), addr("[::1]:4747"), ESTABLISHED);
        assert!(is_the_socket(
            &v6,
            addr("[::1]:50123"),
            Some(addr("[::1]:4747"))
        ));
        assert!(!is_the_socket(&v6, peer, Some(hub)));
    }

    #[test]
    fn a_mapped_ipv4_address_reads_as_ipv4() {
        let mut sock = tcp_socket(addr("[::1]:50123"), addr("[::1]:4747"), ESTABLISHED);
        // SAFETY: the member written by tcp_socket.
        let ini = unsafe { &mut sock.psi.soi_proto.pri_tcp.tcpsi_ini };
        ini.insi_laddr = "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        ini.insi_faddr = ini.insi_laddr;
        let (peer, hub) = (addr("127.0.0.1:50123"), addr("127.0.0.1:4747"));
        assert!(is_the_socket(&sock, peer, Some(hub)));
    }

    #[test]
    fn a_listener_matches_its_port_and_the_wildcard() {
        let hub = addr("127.0.0.1:4747");
        let listening = tcp_socket(hub, addr("0.0.0.0:0"), TSI_S_LISTEN);
        assert!(is_the_socket(&listening, hub, None));
        assert!(!is_the_socket(
            &listening,
            hub,
            Some(addr("127.0.0.1:50123"))
        ));
        let wildcard = tcp_socket(addr("0.0.0.0:4747"), addr("0.0.0.0:0"), TSI_S_LISTEN);
        assert!(is_the_socket(&wildcard, hub, None));
        assert!(!is_the_socket(&wildcard, addr("[::1]:4747"), None));
        assert!(!is_the_socket(&wildcard, addr("127.0.0.1:4748"), None));
        // `[::]` serves IPv6, and IPv4 too when dual-stack (both flags).
        let mut any = tcp_socket(addr("[::]:4747"), addr("[::]:0"), TSI_S_LISTEN);
        assert!(is_the_socket(&any, addr("[::1]:4747"), None));
        assert!(!is_the_socket(&any, hub, None), "IPv6-only");
        // Writing a union field is safe: it is all integers.
        any.psi.soi_proto.pri_tcp.tcpsi_ini.insi_vflag = INI_IPV4 | INI_IPV6;
        assert!(is_the_socket(&any, hub, None));
        assert!(is_the_socket(&any, addr("[::1]:4747"), None));
    }

    #[test]
    fn other_kinds_of_socket_never_match() {
        let mut sock = tcp_socket(addr("127.0.0.1:4747"), addr("0.0.0.0:0"), TSI_S_LISTEN);
        sock.psi.soi_kind = 1; // SOCKINFO_IN: UDP
        assert!(!is_the_socket(&sock, addr("127.0.0.1:4747"), None));
    }
}
