//! Sockets: `/proc/self/net/{tcp,tcp6,unix}` (pure parsers over text, and bounded readers),
//! and `getsockopt(TCP_INFO)` on this process's own descriptors.
//!
//! The `/proc/self/net` tables list every socket of the network namespace, not only ours: join
//! them with `/proc/self/fd` (`socket:[inode]`, see [`super::fd`]) by inode. They are
//! world-readable; `TCP_INFO` on our own descriptor needs no privilege either.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use super::proc::truncate_chars;

/// The kernel's TCP states (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    Unknown(u8),
}

impl TcpState {
    /// The state from its kernel code (the `st` column of `/proc/net/tcp`, in hex there, or
    /// `tcpi_state`).
    pub(crate) fn from_hex(code: u8) -> Self {
        match code {
            0x01 => Self::Established,
            0x02 => Self::SynSent,
            0x03 => Self::SynRecv,
            0x04 => Self::FinWait1,
            0x05 => Self::FinWait2,
            0x06 => Self::TimeWait,
            0x07 => Self::Close,
            0x08 => Self::CloseWait,
            0x09 => Self::LastAck,
            0x0A => Self::Listen,
            0x0B => Self::Closing,
            0x0C => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }

    /// The state's name as netstat(8) and the kernel spell it (`ESTABLISHED`, `SYN_SENT`,
    /// `CLOSE_WAIT`, ...); `UNKNOWN` for codes outside the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

/// One line of `/proc/<pid>/net/tcp` or `tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InetSocket {
    pub(crate) local: SocketAddr,
    /// `0.0.0.0:0` / `[::]:0` for a listener. A peer of a dual-stack listener is an IPv4-mapped
    /// IPv6 address (`::ffff:10.0.0.7`; `IpAddr::to_canonical` shows it as IPv4).
    pub(crate) peer: SocketAddr,
    pub(crate) state: TcpState,
    /// `tx_queue`: bytes sent and not yet acknowledged (plus those not yet sent).
    pub(crate) send_q: u64,
    /// `rx_queue`: bytes received and not yet read by the app; for a LISTEN socket, the
    /// connections waiting in the accept queue.
    pub(crate) recv_q: u64,
    /// 0 for sockets no descriptor refers to (TIME_WAIT, not yet accepted).
    pub(crate) inode: u64,
}

fn hex_u32(digits: &str) -> Option<u32> {
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// `ADDR:PORT` as the kernel prints it: the address as 32-bit words in host byte order (`%08X`
/// of the network-order word read as a native integer, so `0100007F` is 127.0.0.1 on a
/// little-endian machine), the port as a plain hex number.
fn parse_inet_addr(token: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = token.split_once(':')?;
    if port.is_empty() || port.len() > 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            let word = hex_u32(addr.get(i * 8..i * 8 + 8)?)?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(bytes),
            port,
            0,
            0,
        )))
    } else {
        let word = hex_u32(addr)?;
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(word.to_ne_bytes()),
            port,
        )))
    }
}

fn parse_tcp_line(line: &str, v6: bool) -> Option<InetSocket> {
    let mut f = line.split_ascii_whitespace();
    // "sl" column: "12:"; the header line starts with "sl" and is skipped here.
    let sl = f.next()?.strip_suffix(':')?;
    if sl.is_empty() || !sl.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = parse_inet_addr(f.next()?, v6)?;
    let peer = parse_inet_addr(f.next()?, v6)?;
    let st = f.next()?;
    if st.len() != 2 {
        return None;
    }
    let state = TcpState::from_hex(u8::from_str_radix(st, 16).ok()?);
    let (tx, rx) = f.next()?.split_once(':')?;
    let send_q = u64::from(hex_u32(tx)?);
    let recv_q = u64::from(hex_u32(rx)?);
    let _timer = f.next()?;
    let _retransmits = f.next()?;
    let _uid = f.next()?;
    let _timeout = f.next()?;
    let inode = f.next()?.parse().ok()?;
    Some(InetSocket {
        local,
        peer,
        state,
        send_q,
        recv_q,
        inode,
    })
}

/// Parses `/proc/<pid>/net/tcp` (`v6 = false`) or `tcp6` (`v6 = true`). The header and
/// malformed lines are skipped.
pub(crate) fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<InetSocket> {
    text.lines()
        .filter_map(|line| parse_tcp_line(line, v6))
        .collect()
}

/// One line of `/proc/<pid>/net/unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnixSocket {
    pub(crate) inode: u64,
    /// The bound (or, for an accepted socket, the listener's) path; abstract names start with
    /// `@` (and the kernel prints their NULs as `@`). Capped at 300 characters.
    pub(crate) path: Option<String>,
    /// `LISTEN`, `CONNECTED`, `UNCONNECTED`, `CONNECTING`, `DISCONNECTING` or `UNKNOWN`.
    pub(crate) state: &'static str,
}

/// Longest Unix socket path kept, in characters.
pub(crate) const UNIX_PATH_MAX: usize = 300;
/// `__SO_ACCEPTCON` in the `Flags` column: a listening socket.
const SO_ACCEPTCON: u32 = 1 << 16;

/// The next space-separated token of `s` and what follows it (unconsumed).
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    let end = s.find(' ').unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

fn hex_field(tok: &str, max_len: usize) -> Option<u32> {
    if tok.is_empty() || tok.len() > max_len || !tok.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(tok, 16).ok()
}

fn parse_unix_line(line: &str) -> Option<UnixSocket> {
    // "%pK: %08X %08X %08X %04X %02X %5lu" then, when bound, ' ' and the path (which may hold
    // spaces).
    let (num, rest) = token(line)?;
    num.strip_suffix(':')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let (_refcount, rest) = token(rest)?;
    let (_protocol, rest) = token(rest)?;
    let (flags, rest) = token(rest)?;
    let flags = hex_field(flags, 8)?;
    let (_type, rest) = token(rest)?;
    let (st, rest) = token(rest)?;
    let st = hex_field(st, 2)?;
    let (inode, rest) = token(rest)?;
    if !inode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let inode = inode.parse().ok()?;
    let path = rest
        .strip_prefix(' ')
        .filter(|p| !p.is_empty())
        .map(|p| truncate_chars(p, UNIX_PATH_MAX));
    let state = if flags & SO_ACCEPTCON != 0 {
        "LISTEN"
    } else {
        match st {
            1 => "UNCONNECTED",
            2 => "CONNECTING",
            3 => "CONNECTED",
            4 => "DISCONNECTING",
            _ => "UNKNOWN",
        }
    };
    Some(UnixSocket { inode, path, state })
}

/// Parses `/proc/<pid>/net/unix`. The header and malformed lines are skipped.
pub(crate) fn parse_proc_net_unix(text: &str) -> Vec<UnixSocket> {
    text.lines().filter_map(parse_unix_line).collect()
}

/// Reads a `/proc/self/net` table: at most `max_bytes`, ending at the last complete line.
///
/// These are seq_files: one `read(2)` returns whole records up to about a page, and a short
/// read does NOT mean the end; only a read that returns 0 does.
fn read_net_table(path: &std::path::Path, max_bytes: usize) -> io::Result<String> {
    use std::io::Read;
    const CHUNK: usize = 64 * 1024;
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    while buf.len() < max_bytes {
        let start = buf.len();
        buf.resize(start + CHUNK.min(max_bytes - start), 0);
        let n = loop {
            match file.read(&mut buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = n?;
        buf.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    // A line cut by the bound could parse as a different socket (a shorter inode): drop it.
    let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(end);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Keeps the first entry per inode (a seq_file read in several calls can show a socket twice
/// when the table changes in between); inode 0 (no descriptor) is never merged.
fn dedup_by_inode<T>(items: &mut Vec<T>, inode: impl Fn(&T) -> u64) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|s| {
        let i = inode(s);
        i == 0 || seen.insert(i)
    });
}

/// The TCP sockets of this network namespace from `/proc/self/net/tcp` and `tcp6` (each read
/// to at most `max_bytes`; `tcp6` may be absent when IPv6 is off). Join with our descriptors
/// by inode.
#[cfg(test)]
pub(crate) fn read_inet_sockets(max_bytes: usize) -> io::Result<Vec<InetSocket>> {
    read_inet_sockets_of(max_bytes, true, true)
}

/// [`read_inet_sockets`] of the tables asked for only: `tcp` for IPv4 (`v4`), `tcp6` for IPv6
/// (`v6`). Each read walks the whole namespace's socket hash in the kernel (tens of
/// milliseconds on a busy host, more under load): a table none of our sockets can be in is
/// not read.
#[cfg(target_os = "linux")]
pub(crate) fn read_inet_sockets_of(
    max_bytes: usize,
    v4: bool,
    v6: bool,
) -> io::Result<Vec<InetSocket>> {
    let dir = std::path::Path::new("/proc/self/net");
    let mut out = Vec::new();
    if v4 {
        out = parse_proc_net_tcp(&read_net_table(&dir.join("tcp"), max_bytes)?, false);
    }
    if v6 {
        match read_net_table(&dir.join("tcp6"), max_bytes) {
            Ok(text) => out.extend(parse_proc_net_tcp(&text, true)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dedup_by_inode(&mut out, |s| s.inode);
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_inet_sockets_of(
    _max_bytes: usize,
    _v4: bool,
    _v6: bool,
) -> io::Result<Vec<InetSocket>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The address family (`SO_DOMAIN`: `AF_INET`, `AF_INET6`, `AF_UNIX`, ...) and type
/// (`SO_TYPE`: `SOCK_STREAM`, ...) of our socket `fd`, so that a snapshot reads only the
/// tables that can hold it. `None` when it cannot be had (the descriptor was closed since it
/// was listed, or not Linux): the caller then reads every table.
pub(crate) fn socket_kind(fd: i32) -> Option<(i32, i32)> {
    #[cfg(target_os = "linux")]
    {
        let int_opt = |name: libc::c_int| {
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `value` is valid for writes of `len` bytes (one c_int) and `len` holds
            // that size; a bad `fd` is an error, not undefined behaviour.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&raw mut value).cast(),
                    &mut len,
                )
            };
            (rc == 0).then_some(value)
        };
        Some((int_opt(libc::SO_DOMAIN)?, int_opt(libc::SO_TYPE)?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// The Unix sockets of this network namespace from `/proc/self/net/unix` (at most `max_bytes`).
#[cfg(target_os = "linux")]
pub(crate) fn read_unix_sockets(max_bytes: usize) -> io::Result<Vec<UnixSocket>> {
    let text = read_net_table(std::path::Path::new("/proc/self/net/unix"), max_bytes)?;
    let mut out = parse_proc_net_unix(&text);
    dedup_by_inode(&mut out, |s| s.inode);
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_unix_sockets(_max_bytes: usize) -> io::Result<Vec<UnixSocket>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// What `TCP_INFO` says about one of our TCP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpTimes {
    pub(crate) state: TcpState,
    /// Since the last data segment was received (on a connection that never received any:
    /// since it was established).
    pub(crate) last_data_recv: Duration,
    /// Since data was last sent (never sent: since it was established).
    pub(crate) last_data_sent: Duration,
    /// Segments sent and not yet acknowledged.
    pub(crate) unacked: u32,
    /// Consecutive retransmission timeouts of the current segment.
    pub(crate) retransmits: u8,
}

/// `getsockopt(fd, IPPROTO_TCP, TCP_INFO)` on one of OUR descriptors (no privilege needed).
/// Not a TCP socket (a Unix or UDP socket, a file) → `Err`.
#[cfg(target_os = "linux")]
pub(crate) fn tcp_info(fd: i32) -> io::Result<TcpTimes> {
    // SAFETY: tcp_info is a plain C struct of integers; all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes and `len` is a valid socklen_t; the
    // kernel writes at most `len` bytes and stores the length it wrote. A bad `fd` is an error,
    // not undefined behaviour.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Every kernel since 2.6 fills at least up to the fields read here.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_last_ack_recv);
    if (len as usize) < needed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP_INFO shorter than expected",
        ));
    }
    Ok(TcpTimes {
        state: TcpState::from_hex(info.tcpi_state),
        last_data_recv: Duration::from_millis(info.tcpi_last_data_recv.into()),
        last_data_sent: Duration::from_millis(info.tcpi_last_data_sent.into()),
        unacked: info.tcpi_unacked,
        retransmits: info.tcpi_retransmits,
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn tcp_info(_fd: i32) -> io::Result<TcpTimes> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on Linux 6.18 x86_64 (little-endian): a listener on 0.0.0.0:2024, three
    // TIME_WAIT sockets (inode 0), one established loopback connection.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1525 1 00000000970a0e22 100 0 0 10 0                      
   1: 0100007F:AD41 0100007F:C9CA 06 00000000:00000000 03:0000166B 00000000     0        0 0 3 000000002354d7b0                                      
   2: 0100007F:B3F1 0100007F:DA7E 06 00000000:00000000 03:00000CCA 00000000     0        0 0 3 00000000eac6c002                                      
   3: 0100007F:8F75 0100007F:8888 06 00000000:00000000 03:00001242 00000000     0        0 0 3 00000000e9fb67ea                                      
   4: 0100007F:82AE 0100007F:81B9 01 00000000:00000000 00:00000000 00000000     0        0 82166 2 000000009849fd3c 20 0 0 10 -1                     
";
    // A dual-stack listener on [::]:33209, a v4-mapped accepted peer, and a ::1 connection
    // with 5 unread bytes.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:81B9 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 82163 1 00000000635619b8 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:81B9 0000000000000000FFFF00000100007F:82AE 01 00000000:00000000 00:00000000 00000000     0        0 82167 1 0000000082b5bf30 20 0 0 10 -1
   2: 00000000000000000000000001000000:9B9A 00000000000000000000000001000000:81B9 01 00000000:00000000 00:00000000 00000000     0        0 82164 2 000000004a489c33 20 0 0 11 -1
   3: 00000000000000000000000001000000:81B9 00000000000000000000000001000000:9B9A 01 00000000:00000005 00:00000000 00000000     0        0 82165 1 00000000e418d76a 20 4 30 10 -1
";
    // A listener on "/tmp/fx sock" (a space in the path), its connected client (unbound) and
    // accepted end, an abstract datagram socket "\0abs\0name", and two unbound sockets.
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
00000000258fcde2: 00000002 00000000 00010000 0001 01 82168 /tmp/fx sock
000000002c8cecc5: 00000003 00000000 00000000 0001 03 82169
0000000025ba4586: 00000003 00000000 00000000 0001 03 82170 /tmp/fx sock
00000000bb7a3803: 00000002 00000000 00000000 0002 01 82171 @abs@name
000000004a119b68: 00000003 00000000 00000000 0001 03  1522
00000000249fc6b2: 00000003 00000000 00000000 0001 04  1521
";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_fixture() {
        let v4 = parse_proc_net_tcp(TCP, false);
        assert_eq!(v4.len(), 5);
        assert_eq!(
            v4[0],
            InetSocket {
                local: "0.0.0.0:2024".parse().unwrap(),
                peer: "0.0.0.0:0".parse().unwrap(),
                state: TcpState::Listen,
                send_q: 0,
                recv_q: 0,
                inode: 1525,
            }
        );
        assert_eq!(v4[1].state, TcpState::TimeWait);
        assert_eq!(v4[1].inode, 0);
        assert_eq!(
            v4[4],
            InetSocket {
                local: "127.0.0.1:33454".parse().unwrap(),
                peer: "127.0.0.1:33209".parse().unwrap(),
                state: TcpState::Established,
                send_q: 0,
                recv_q: 0,
                inode: 82166,
            }
        );
        let v6 = parse_proc_net_tcp(TCP6, true);
        assert_eq!(v6.len(), 4);
        assert_eq!(v6[0].local, "[::]:33209".parse().unwrap());
        assert_eq!(v6[0].state, TcpState::Listen);
        assert_eq!(v6[1].peer, "[::ffff:127.0.0.1]:33454".parse().unwrap());
        assert_eq!(v6[3].local, "[::1]:33209".parse().unwrap());
        assert_eq!(v6[3].peer, "[::1]:39834".parse().unwrap());
        assert_eq!((v6[3].recv_q, v6[3].send_q, v6[3].inode), (5, 0, 82165));
        // The wrong family's table parses to nothing rather than to wrong addresses.
        assert!(parse_proc_net_tcp(TCP, true).is_empty());
        assert!(parse_proc_net_tcp(TCP6, false).is_empty());
    }

    #[test]
    fn states() {
        for (code, name) in [
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
            (11, "CLOSING"),
            (12, "NEW_SYN_RECV"),
            (0, "UNKNOWN"),
            (13, "UNKNOWN"),
            (255, "UNKNOWN"),
        ] {
            assert_eq!(TcpState::from_hex(code).name(), name);
        }
        assert_eq!(TcpState::from_hex(200), TcpState::Unknown(200));
    }

    #[test]
    fn malformed_tcp_lines_are_skipped() {
        for line in [
            "",
            "garbage",
            "   0: 00000000:07E8",
            "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0",
            "   0: 0000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: 00000000:107E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: 00000000:07E8 00000000:0000 0A0 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: 00000000:07E8 00000000:0000 0A 00000000 00:00000000 00000000 0 0 1525",
            "   0: 0000000g:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: +0000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 99999999999999999999999",
            "   x: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
            "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 -1",
            "   0: é0000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525",
        ] {
            assert_eq!(parse_proc_net_tcp(line, false), vec![], "{line:?}");
        }
        let ok =
            "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1525";
        assert_eq!(parse_proc_net_tcp(ok, false).len(), 1);
        assert_eq!(parse_proc_net_tcp("", true), vec![]);
    }

    #[test]
    fn unix_fixture() {
        let u = parse_proc_net_unix(UNIX);
        let get = |inode| u.iter().find(|s| s.inode == inode).unwrap();
        assert_eq!(u.len(), 6);
        assert_eq!(
            *get(82168),
            UnixSocket {
                inode: 82168,
                path: Some("/tmp/fx sock".into()),
                state: "LISTEN"
            }
        );
        assert_eq!(get(82169).path, None);
        assert_eq!(get(82169).state, "CONNECTED");
        assert_eq!(get(82170).path.as_deref(), Some("/tmp/fx sock"));
        assert_eq!(get(82171).path.as_deref(), Some("@abs@name"));
        assert_eq!(get(82171).state, "UNCONNECTED");
        assert_eq!(get(1522).path, None, "the %5lu padding is not a path");
        assert_eq!(get(1521).state, "DISCONNECTING");
        for line in [
            "",
            "Num       RefCount Protocol Flags    Type St Inode Path",
            "00000000258fcde2: 00000002 00000000 00010000 0001 01",
            "00000000258fcde2: 00000002 00000000 0001000g 0001 01 82168",
            "00000000258fcde2: 00000002 00000000 00010000 0001 001 82168",
            "00000000258fcde2: 00000002 00000000 00010000 0001 01 -82168",
            "00000000258fcde2: 00000002 00000000 00010000 0001 01 99999999999999999999999",
            "00000000258fcde2 00000002 00000000 00010000 0001 01 82168",
        ] {
            assert_eq!(parse_proc_net_unix(line), vec![], "{line:?}");
        }
        let long = format!(
            "00000000258fcde2: 00000002 00000000 00010000 0001 01 5 /{}",
            "é".repeat(400)
        );
        let p = parse_proc_net_unix(&long)[0].path.clone().unwrap();
        assert_eq!(p.chars().count(), UNIX_PATH_MAX);
        assert_eq!(
            parse_proc_net_unix("00000000258fcde2: 00000002 00000000 00000000 0001 07 5")[0].state,
            "UNKNOWN"
        );
    }

    #[test]
    fn mutated_tables_never_panic() {
        let mut found = 0;
        // 20 000 mutants for the TCP parser: half of each family's table.
        crate::fuzz::mutants(&[TCP.as_bytes(), TCP6.as_bytes()], 20_000, |m| {
            let text = String::from_utf8_lossy(m);
            found += parse_proc_net_tcp(&text, false).len();
            found += parse_proc_net_tcp(&text, true).len();
        });
        crate::fuzz::mutants(&[UNIX.as_bytes()], 20_000, |m| {
            for s in parse_proc_net_unix(&String::from_utf8_lossy(m)) {
                assert!(s.path.is_none_or(|p| p.chars().count() <= UNIX_PATH_MAX));
                found += 1;
            }
        });
        assert!(found > 0);
    }

    #[test]
    fn a_net_table_is_read_past_short_reads_and_cut_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(read_net_table(&p, 1000).unwrap(), "one\ntwo\nthree\n");
        assert_eq!(read_net_table(&p, 10).unwrap(), "one\ntwo\n");
        assert_eq!(read_net_table(&p, 2).unwrap(), "");
        assert!(read_net_table(&dir.path().join("none"), 10).is_err());
    }

    /// A table larger than one page (many sockets) is read whole: seq_file hands out about a
    /// page per read(2), and a reader that stopped at the first short read would miss most.
    #[cfg(target_os = "linux")]
    #[test]
    fn our_connection_is_found_among_more_than_a_page_of_sockets() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // ~150 bytes a line: 80 connections (160 sockets) are several pages.
        let mut keep = Vec::new();
        for _ in 0..80 {
            let c = std::net::TcpStream::connect(addr).unwrap();
            keep.push(listener.accept().unwrap().0);
            keep.push(c);
        }
        let client = keep.last().unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
            .unwrap()
            .ino();
        assert_eq!(
            crate::sys::fd::read_fd(client.as_raw_fd()),
            Some(crate::sys::fd::FdTarget::Socket { inode })
        );
        let all = read_inet_sockets(16 << 20).unwrap();
        let ours = all.iter().find(|s| s.inode == inode).expect("listed");
        assert_eq!(ours.local, client.local_addr().unwrap());
        assert_eq!(ours.peer, addr);
        assert_eq!(ours.state, TcpState::Established);
        for s in &keep {
            let ino = std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap()
                .ino();
            assert!(all.iter().any(|x| x.inode == ino), "every socket is listed");
        }
        // The bound holds (and cuts at a line).
        let few = read_inet_sockets(4096).unwrap();
        assert!(few.len() < all.len());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn unread_bytes_and_unix_sockets_are_seen() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let ino = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        let listener = std::net::TcpListener::bind("[::1]:0");
        if let Ok(listener) = listener {
            let mut c = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            c.write_all(b"hello").unwrap();
            let inode = ino(server.as_raw_fd());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let all = read_inet_sockets(16 << 20).unwrap();
                let s = all.iter().find(|s| s.inode == inode).unwrap().clone();
                if s.recv_q == 5 || std::time::Instant::now() > deadline {
                    assert_eq!(s.recv_q, 5, "{s:?}");
                    assert_eq!(s.local, listener.local_addr().unwrap());
                    assert_eq!(s.peer, c.local_addr().unwrap());
                    break;
                }
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a sock");
        let ul = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let uc = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (ua, _) = ul.accept().unwrap();
        let all = read_unix_sockets(16 << 20).unwrap();
        let find = |fd: i32| all.iter().find(|s| s.inode == ino(fd)).unwrap().clone();
        let want = path.to_string_lossy().into_owned();
        let l = find(ul.as_raw_fd());
        assert_eq!((l.state, l.path.as_deref()), ("LISTEN", Some(&*want)));
        let c = find(uc.as_raw_fd());
        assert_eq!((c.state, c.path.as_deref()), ("CONNECTED", None));
        let a = find(ua.as_raw_fd());
        assert_eq!((a.state, a.path.as_deref()), ("CONNECTED", Some(&*want)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tcp_info_of_a_silent_peer() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let first = tcp_info(client.as_raw_fd()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let second = tcp_info(client.as_raw_fd()).unwrap();
        assert_eq!(second.state, TcpState::Established);
        assert!(
            second.last_data_recv >= first.last_data_recv + Duration::from_millis(150),
            "{first:?} {second:?}"
        );
        assert!(second.last_data_sent >= Duration::from_millis(150));
        assert_eq!((second.unacked, second.retransmits), (0, 0));
        assert_eq!(
            tcp_info(listener.as_raw_fd()).unwrap().state,
            TcpState::Listen
        );

        let (u, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(tcp_info(u.as_raw_fd()).is_err(), "a Unix socket");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(tcp_info(udp.as_raw_fd()).is_err(), "a UDP socket");
        let f = tempfile::tempfile().unwrap();
        assert!(tcp_info(f.as_raw_fd()).is_err(), "a file");
        assert!(tcp_info(-1).is_err());
    }
}
