//! This process's file descriptors: what `/proc/self/fd/<n>` links to (a pure parser over the
//! link's bytes, and the thin I/O shell that lists and reads the links).
//!
//! A process may always list and read its own `/proc/self/fd`, even when it is not dumpable
//! (the kernel lets a thread group into its own fd directory).

use std::io;

use super::proc::truncate_chars;

/// Longest path (or other link text) kept, in characters.
pub(crate) const FD_TEXT_MAX: usize = 300;
/// Longest anonymous inode kind kept (`eventpoll`, `io_uring`, ...), in characters.
const ANON_MAX: usize = 64;

/// What a descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FdTarget {
    /// `socket:[12345]`: join with `/proc/self/net/*` by inode.
    Socket { inode: u64 },
    /// `pipe:[12345]`.
    Pipe { inode: u64 },
    /// `anon_inode:[eventpoll]` → `eventpoll`; also the bracketless `anon_inode:inotify`.
    AnonInode(String),
    /// A path (`/var/lib/x.db`, `/x (deleted)`, `/memfd:name (deleted)`): lossy UTF-8, capped
    /// at [`FD_TEXT_MAX`] characters.
    Path(String),
    /// Anything else (`net:[4026531840]`, `[eventfd]` on old kernels, ...), capped.
    Other(String),
}

/// `<prefix>[<decimal inode>]` → the inode.
fn bracketed_inode(link: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = link
        .strip_prefix(prefix)?
        .strip_prefix(b"[")?
        .strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses the bytes `readlink(2)` returns for `/proc/self/fd/<n>`. Never fails: what is not
/// recognised is [`FdTarget::Other`].
pub(crate) fn parse_fd_link(link: &[u8]) -> FdTarget {
    if let Some(inode) = bracketed_inode(link, b"socket:") {
        return FdTarget::Socket { inode };
    }
    if let Some(inode) = bracketed_inode(link, b"pipe:") {
        return FdTarget::Pipe { inode };
    }
    if let Some(kind) = link.strip_prefix(b"anon_inode:") {
        let kind = kind
            .strip_prefix(b"[")
            .and_then(|k| k.strip_suffix(b"]"))
            .unwrap_or(kind);
        if !kind.is_empty() {
            return FdTarget::AnonInode(truncate_chars(&String::from_utf8_lossy(kind), ANON_MAX));
        }
    }
    let text = truncate_chars(&String::from_utf8_lossy(link), FD_TEXT_MAX);
    if link.starts_with(b"/") {
        FdTarget::Path(text)
    } else {
        FdTarget::Other(text)
    }
}

/// `(fd, target)` for the descriptors of this process, at most `limit`, sorted by fd (the
/// lowest first); a descriptor that closes between listing and `readlink` is skipped (as is the
/// one the listing itself used). An error listing the directory → `Err`.
#[cfg(target_os = "linux")]
pub(crate) fn list_fds(limit: usize) -> io::Result<Vec<(i32, FdTarget)>> {
    list_fds_in(std::path::Path::new("/proc/self/fd"), limit)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn list_fds(_limit: usize) -> io::Result<Vec<(i32, FdTarget)>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// [`list_fds`] over a directory of links (a fixture tree in tests).
pub(crate) fn list_fds_in(dir: &std::path::Path, limit: usize) -> io::Result<Vec<(i32, FdTarget)>> {
    let mut fds: Vec<i32> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    fds.dedup();
    let mut out = Vec::with_capacity(fds.len().min(limit));
    for fd in fds {
        if out.len() >= limit {
            break;
        }
        if let Some(target) = read_link_in(dir, fd) {
            out.push((fd, target));
        }
    }
    Ok(out)
}

fn read_link_in(dir: &std::path::Path, fd: i32) -> Option<FdTarget> {
    use std::os::unix::ffi::OsStrExt;
    let link = std::fs::read_link(dir.join(fd.to_string())).ok()?;
    Some(parse_fd_link(link.as_os_str().as_bytes()))
}

/// What descriptor `fd` of this process refers to; `None` when it is not open (or on
/// systems without `/proc/self/fd`).
#[cfg(target_os = "linux")]
pub(crate) fn read_fd(fd: i32) -> Option<FdTarget> {
    if fd < 0 {
        return None;
    }
    read_link_in(std::path::Path::new("/proc/self/fd"), fd)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_fd(_fd: i32) -> Option<FdTarget> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Link texts seen in /proc/*/fd on Linux 6.18.
    const LINKS: &[&[u8]] = &[
        b"socket:[38905]",
        b"pipe:[38905]",
        b"anon_inode:[eventpoll]",
        b"anon_inode:[eventfd]",
        b"anon_inode:[io_uring]",
        b"anon_inode:inotify",
        b"/dev/null",
        b"/tmp/bash_jobs.0/3cd543b67805/stdout",
        b"/tmp/x.db (deleted)",
        b"/memfd:buf (deleted)",
        b"net:[4026531840]",
        b"/dev/pts/0",
    ];

    #[test]
    fn links() {
        let p = parse_fd_link;
        assert_eq!(p(b"socket:[38905]"), FdTarget::Socket { inode: 38905 });
        assert_eq!(p(b"pipe:[12]"), FdTarget::Pipe { inode: 12 });
        assert_eq!(
            p(b"anon_inode:[eventpoll]"),
            FdTarget::AnonInode("eventpoll".into())
        );
        assert_eq!(
            p(b"anon_inode:[eventfd]"),
            FdTarget::AnonInode("eventfd".into())
        );
        assert_eq!(
            p(b"anon_inode:inotify"),
            FdTarget::AnonInode("inotify".into())
        );
        assert_eq!(p(b"/var/lib/x.db"), FdTarget::Path("/var/lib/x.db".into()));
        assert_eq!(
            p(b"/tmp/x.db (deleted)"),
            FdTarget::Path("/tmp/x.db (deleted)".into())
        );
        assert_eq!(
            p(b"net:[4026531840]"),
            FdTarget::Other("net:[4026531840]".into())
        );
        assert_eq!(p(b"/\xffa"), FdTarget::Path("/\u{fffd}a".into()));
        assert_eq!(p(b""), FdTarget::Other(String::new()));
        // Not quite a socket or pipe: kept as text.
        for odd in [
            &b"socket:[]"[..],
            b"socket:[12",
            b"socket:[-1]",
            b"socket:[1 2]",
            b"socket:[99999999999999999999999]",
            b"pipe:12",
            b"anon_inode:",
        ] {
            assert!(matches!(p(odd), FdTarget::Other(_)), "{odd:?}");
        }
        let long = format!("/{}", "é".repeat(1000));
        match p(long.as_bytes()) {
            FdTarget::Path(s) => assert_eq!(s.chars().count(), FD_TEXT_MAX),
            other => panic!("{other:?}"),
        }
        match p(format!("anon_inode:[{}]", "x".repeat(500)).as_bytes()) {
            FdTarget::AnonInode(s) => assert_eq!(s.len(), ANON_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mutated_links_never_panic() {
        let mut sockets = 0;
        crate::fuzz::mutants(LINKS, 20_000, |m| match parse_fd_link(m) {
            FdTarget::Socket { .. } => sockets += 1,
            FdTarget::Path(s) | FdTarget::Other(s) | FdTarget::AnonInode(s) => {
                assert!(s.chars().count() <= FD_TEXT_MAX)
            }
            FdTarget::Pipe { .. } => {}
        });
        assert!(sockets > 0);
    }

    #[test]
    fn fixture_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, target) in [
            ("10", "socket:[7]"),
            ("2", "/dev/null"),
            ("x", "/nope"),
            ("0", "pipe:[3]"),
        ] {
            std::os::unix::fs::symlink(target, d.join(name)).unwrap();
        }
        std::fs::write(d.join("5"), b"not a link: read_link fails, skipped").unwrap();
        assert_eq!(
            list_fds_in(d, 10).unwrap(),
            vec![
                (0, FdTarget::Pipe { inode: 3 }),
                (2, FdTarget::Path("/dev/null".into())),
                (10, FdTarget::Socket { inode: 7 }),
            ]
        );
        assert_eq!(list_fds_in(d, 2).unwrap().len(), 2);
        assert!(list_fds_in(&d.join("none"), 2).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_descriptors() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = client.as_raw_fd();
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        assert_eq!(read_fd(fd), Some(FdTarget::Socket { inode }));
        let fds = list_fds(100_000).unwrap();
        assert!(fds.contains(&(fd, FdTarget::Socket { inode })), "{fds:?}");
        assert!(fds.windows(2).all(|w| w[0].0 < w[1].0));

        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().canonicalize().unwrap();
        assert_eq!(
            read_fd(file.as_file().as_raw_fd()),
            Some(FdTarget::Path(path.to_string_lossy().into_owned()))
        );
        let mut pipe = [-1; 2];
        // SAFETY: `pipe` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just opened by pipe(2) and are owned only here.
        let (r, _w) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(pipe[0]),
                std::os::fd::OwnedFd::from_raw_fd(pipe[1]),
            )
        };
        assert!(matches!(
            read_fd(r.as_raw_fd()),
            Some(FdTarget::Pipe { .. })
        ));
        // SAFETY: epoll_create1 has no memory preconditions; the fd is closed below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        assert_eq!(read_fd(ep), Some(FdTarget::AnonInode("eventpoll".into())));
        // SAFETY: `ep` is ours and closed once.
        unsafe { libc::close(ep) };
        // (Not `read_fd(ep)`: another test's thread may reuse the number by now.)
        assert_eq!(read_fd(i32::MAX), None, "not open");
        assert_eq!(read_fd(-1), None);
        assert_eq!(list_fds(0).unwrap(), vec![]);
    }
}
