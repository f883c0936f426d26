//! The peer check on Windows: `GetExtendedTcpTable` gives the connection's
//! owning PID, its process token gives the user SID.

use crate::PeerOwner;
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
                let rows = std::slice::from_raw_parts(rows as *const MIB_TCPROW_OWNER_PID, count);
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
                let rows = std::slice::from_raw_parts(rows as *const MIB_TCP6ROW_OWNER_PID, count);
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
