//! The threads of this process: `/proc/self/task/<tid>/{comm,stat,syscall,wchan}` (pure
//! parsers over bytes, and the thin I/O shell that feeds them), and the names of the syscalls a
//! blocked thread sits in.
//!
//! What a process may read about its own threads without privileges:
//! - `comm`, `stat`, `wchan`: always (a thread that could not read `wchan` would see `0`).
//! - `syscall`: the kernel asks for ptrace rights, which a process has over its own threads, but
//!   the file is mode 0400 and owned by root once the process is not dumpable
//!   (`prctl(PR_SET_DUMPABLE, 0)`, or after a setuid/setgid change of credentials), so an
//!   unprivileged process then gets `EACCES`. The sample says so (`syscall: None`) rather than
//!   guess. The file also exists only on kernels built with `CONFIG_HAVE_ARCH_TRACEHOOK`.
//! - The thread that reads its own `syscall` file sees itself inside that `read`.

use std::io;

use super::proc::ProcRoot;

/// One sample of one thread, from `/proc/self/task/<tid>/{comm,stat,syscall,wchan}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskSample {
    pub(crate) tid: u32,
    /// `comm`, raw (escaping is the caller's job), with the kernel's one trailing `'\n'` removed.
    pub(crate) name: String,
    /// From `stat` (`R`, `S`, `D`, `T`, `Z`, ...).
    pub(crate) state: char,
    /// `utime + stime` from `stat`, in clock ticks (`_SC_CLK_TCK`).
    pub(crate) cpu_ticks: u64,
    /// `None` when `syscall` could not be read or parsed (see the module docs: not dumpable,
    /// or a kernel without the file).
    pub(crate) syscall: Option<SyscallState>,
    /// The kernel function the thread sleeps in; `"0"` (running, or not allowed) or empty → `None`.
    pub(crate) wchan: Option<String>,
}

/// What `/proc/<pid>/task/<tid>/syscall` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyscallState {
    /// The file says `running`: the thread is on a CPU.
    Running,
    /// `-1 <sp> <pc>`: blocked outside a syscall (e.g. in a page fault).
    NotInSyscall,
    /// `<nr> <arg0> .. <arg5> <sp> <pc>` (arguments in hex).
    InSyscall { nr: i64, args: [u64; 6] },
}

fn parse_hex_u64(token: &str) -> Option<u64> {
    let digits = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}

/// Parses `/proc/<pid>/task/<tid>/syscall`. Anything but the kernel's three shapes (a
/// truncated line, garbage) is `None`.
pub(crate) fn parse_task_syscall(text: &[u8]) -> Option<SyscallState> {
    let text = std::str::from_utf8(text).ok()?;
    let mut tokens = text.split_ascii_whitespace();
    let first = tokens.next()?;
    if first == "running" {
        return tokens.next().is_none().then_some(SyscallState::Running);
    }
    let nr: i64 = first.parse().ok()?;
    let rest: Vec<u64> = tokens.map(parse_hex_u64).collect::<Option<_>>()?;
    if nr < 0 {
        // "%d 0x%llx 0x%llx": nr (-1), stack pointer, program counter.
        return (rest.len() == 2).then_some(SyscallState::NotInSyscall);
    }
    // Six arguments, then the stack pointer and the program counter.
    if rest.len() != 8 {
        return None;
    }
    let mut args = [0u64; 6];
    args.copy_from_slice(&rest[..6]);
    Some(SyscallState::InSyscall { nr, args })
}

/// The fields after the name in a `stat` line: the name sits between the first `(` and the
/// LAST `)` (the rule of [`super::proc::parse_stat`]), because a thread may call itself `a) R 1 (b`.
fn stat_fields_after_comm(text: &[u8]) -> Option<&str> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    std::str::from_utf8(text.get(close + 1..)?).ok()
}

/// The state letter and `utime + stime` (clock ticks) of a `/proc/<pid>/task/<tid>/stat` line.
pub(crate) fn parse_task_stat(text: &[u8]) -> Option<(char, u64)> {
    let mut fields = stat_fields_after_comm(text)?.split_ascii_whitespace();
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let state_field = fields.next()?;
    let mut chars = state_field.chars();
    let state = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let utime: u64 = fields.nth(10)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((state, utime.saturating_add(stime)))
}

/// `comm` text: lossy UTF-8, the kernel's one trailing newline removed (a name may itself end
/// in a newline; that one stays).
pub(crate) fn parse_comm(text: &[u8]) -> String {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    String::from_utf8_lossy(text).into_owned()
}

/// `wchan` text: the symbol a sleeping thread waits in; `"0"` or empty → `None`.
pub(crate) fn parse_wchan(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    (!text.is_empty() && text != "0").then(|| super::proc::truncate_chars(text, 128))
}

/// Thread ids listed under `/proc/self/task`, at most `limit` (the lowest, sorted ascending);
/// an error listing the directory → `Err`.
#[cfg(target_os = "linux")]
pub(crate) fn list_tasks(limit: usize) -> io::Result<Vec<u32>> {
    list_tasks_at(&ProcRoot::default(), limit)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn list_tasks(_limit: usize) -> io::Result<Vec<u32>> {
    Err(io::ErrorKind::Unsupported.into())
}

/// [`list_tasks`] under a `/proc` root (a fixture tree in tests).
pub(crate) fn list_tasks_at(root: &ProcRoot, limit: usize) -> io::Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(root.path(None, "task"))? {
        // An entry that fails mid-listing is a thread that just went; the rest still count.
        let Ok(entry) = entry else { continue };
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    tids.dedup();
    tids.truncate(limit);
    Ok(tids)
}

/// Reads one thread of this process; `None` when it vanished between listing and reading
/// (`ENOENT`/`ESRCH`), or its `comm`/`stat` could not be read at all.
#[cfg(target_os = "linux")]
pub(crate) fn read_task(tid: u32, buf: &mut Vec<u8>) -> Option<TaskSample> {
    read_task_at(&ProcRoot::default(), tid, buf)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_task(_tid: u32, _buf: &mut Vec<u8>) -> Option<TaskSample> {
    None
}

/// The second sample of a thread sampled once already: only what changes between the two
/// (`stat` for state and CPU, `syscall`), the name and `wchan` kept from `first`. `None` when
/// the thread is gone.
#[cfg(target_os = "linux")]
pub(crate) fn resample_task(first: &TaskSample, buf: &mut Vec<u8>) -> Option<TaskSample> {
    resample_task_at(&ProcRoot::default(), first, buf)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn resample_task(_first: &TaskSample, _buf: &mut Vec<u8>) -> Option<TaskSample> {
    None
}

/// [`resample_task`] under a `/proc` root.
pub(crate) fn resample_task_at(
    root: &ProcRoot,
    first: &TaskSample,
    buf: &mut Vec<u8>,
) -> Option<TaskSample> {
    let tid = first.tid;
    root.read(None, &format!("task/{tid}/stat"), buf).ok()?;
    let (state, cpu_ticks) = parse_task_stat(buf)?;
    let syscall = root
        .read(None, &format!("task/{tid}/syscall"), buf)
        .ok()
        .and_then(|()| parse_task_syscall(buf));
    Some(TaskSample {
        state,
        cpu_ticks,
        syscall,
        ..first.clone()
    })
}

/// [`read_task`] under a `/proc` root (a fixture tree in tests).
pub(crate) fn read_task_at(root: &ProcRoot, tid: u32, buf: &mut Vec<u8>) -> Option<TaskSample> {
    let read = |file: &str, buf: &mut Vec<u8>| -> Option<()> {
        root.read(None, &format!("task/{tid}/{file}"), buf).ok()
    };
    // stat first: it decides whether the thread is still there.
    read("stat", buf)?;
    let (state, cpu_ticks) = parse_task_stat(buf)?;
    read("comm", buf)?;
    let name = parse_comm(buf);
    let syscall = read("syscall", buf).and_then(|()| parse_task_syscall(buf));
    let wchan = read("wchan", buf).and_then(|()| parse_wchan(buf));
    Some(TaskSample {
        tid,
        name,
        state,
        cpu_ticks,
        syscall,
        wchan,
    })
}

/// `(number, name, index of the fd argument)` for the syscalls a blocked thread is commonly
/// found in. Numbers come from the `libc` crate's `SYS_*` constants for the target.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const SYSCALLS: &[(i64, &str, Option<usize>)] = &[
    (libc::SYS_read, "read", Some(0)),
    (libc::SYS_write, "write", Some(0)),
    (libc::SYS_readv, "readv", Some(0)),
    (libc::SYS_writev, "writev", Some(0)),
    (libc::SYS_pread64, "pread64", Some(0)),
    (libc::SYS_pwrite64, "pwrite64", Some(0)),
    (libc::SYS_preadv, "preadv", Some(0)),
    (libc::SYS_pwritev, "pwritev", Some(0)),
    (libc::SYS_preadv2, "preadv2", Some(0)),
    (libc::SYS_pwritev2, "pwritev2", Some(0)),
    (libc::SYS_recvfrom, "recvfrom", Some(0)),
    (libc::SYS_recvmsg, "recvmsg", Some(0)),
    (libc::SYS_recvmmsg, "recvmmsg", Some(0)),
    (libc::SYS_sendto, "sendto", Some(0)),
    (libc::SYS_sendmsg, "sendmsg", Some(0)),
    (libc::SYS_sendmmsg, "sendmmsg", Some(0)),
    (libc::SYS_connect, "connect", Some(0)),
    (libc::SYS_accept, "accept", Some(0)),
    (libc::SYS_accept4, "accept4", Some(0)),
    (libc::SYS_shutdown, "shutdown", Some(0)),
    (libc::SYS_poll, "poll", None),
    (libc::SYS_ppoll, "ppoll", None),
    (libc::SYS_select, "select", None),
    (libc::SYS_pselect6, "pselect6", None),
    (libc::SYS_epoll_wait, "epoll_wait", Some(0)),
    (libc::SYS_epoll_pwait, "epoll_pwait", Some(0)),
    (libc::SYS_epoll_pwait2, "epoll_pwait2", Some(0)),
    (libc::SYS_futex, "futex", None),
    (libc::SYS_futex_waitv, "futex_waitv", None),
    (libc::SYS_nanosleep, "nanosleep", None),
    (libc::SYS_clock_nanosleep, "clock_nanosleep", None),
    (libc::SYS_wait4, "wait4", None),
    (libc::SYS_waitid, "waitid", None),
    (libc::SYS_open, "open", None),
    // The fd of openat is a directory (usually AT_FDCWD), not what the call waits on.
    (libc::SYS_openat, "openat", None),
    (libc::SYS_close, "close", Some(0)),
    (libc::SYS_fsync, "fsync", Some(0)),
    (libc::SYS_fdatasync, "fdatasync", Some(0)),
    (libc::SYS_sync_file_range, "sync_file_range", Some(0)),
    (libc::SYS_flock, "flock", Some(0)),
    (libc::SYS_fcntl, "fcntl", Some(0)),
    (libc::SYS_ioctl, "ioctl", Some(0)),
    (libc::SYS_ftruncate, "ftruncate", Some(0)),
    (libc::SYS_fallocate, "fallocate", Some(0)),
    (libc::SYS_io_uring_enter, "io_uring_enter", Some(0)),
    (libc::SYS_io_getevents, "io_getevents", None),
    (libc::SYS_splice, "splice", Some(0)),
    (libc::SYS_tee, "tee", Some(0)),
    (libc::SYS_sendfile, "sendfile", Some(0)),
    (libc::SYS_copy_file_range, "copy_file_range", Some(0)),
    (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait", None),
    (libc::SYS_rt_sigsuspend, "rt_sigsuspend", None),
    (libc::SYS_pause, "pause", None),
    (libc::SYS_sched_yield, "sched_yield", None),
    (libc::SYS_msgrcv, "msgrcv", None),
    (libc::SYS_semop, "semop", None),
    (libc::SYS_semtimedop, "semtimedop", None),
    (libc::SYS_getrandom, "getrandom", None),
];

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
const SYSCALLS: &[(i64, &str, Option<usize>)] = &[
    // aarch64 has no open, poll, select, epoll_wait or pause: only their newer forms.
    (libc::SYS_read, "read", Some(0)),
    (libc::SYS_write, "write", Some(0)),
    (libc::SYS_readv, "readv", Some(0)),
    (libc::SYS_writev, "writev", Some(0)),
    (libc::SYS_pread64, "pread64", Some(0)),
    (libc::SYS_pwrite64, "pwrite64", Some(0)),
    (libc::SYS_preadv, "preadv", Some(0)),
    (libc::SYS_pwritev, "pwritev", Some(0)),
    (libc::SYS_preadv2, "preadv2", Some(0)),
    (libc::SYS_pwritev2, "pwritev2", Some(0)),
    (libc::SYS_recvfrom, "recvfrom", Some(0)),
    (libc::SYS_recvmsg, "recvmsg", Some(0)),
    (libc::SYS_recvmmsg, "recvmmsg", Some(0)),
    (libc::SYS_sendto, "sendto", Some(0)),
    (libc::SYS_sendmsg, "sendmsg", Some(0)),
    (libc::SYS_sendmmsg, "sendmmsg", Some(0)),
    (libc::SYS_connect, "connect", Some(0)),
    (libc::SYS_accept, "accept", Some(0)),
    (libc::SYS_accept4, "accept4", Some(0)),
    (libc::SYS_shutdown, "shutdown", Some(0)),
    (libc::SYS_ppoll, "ppoll", None),
    (libc::SYS_pselect6, "pselect6", None),
    (libc::SYS_epoll_pwait, "epoll_pwait", Some(0)),
    (libc::SYS_epoll_pwait2, "epoll_pwait2", Some(0)),
    (libc::SYS_futex, "futex", None),
    (libc::SYS_futex_waitv, "futex_waitv", None),
    (libc::SYS_nanosleep, "nanosleep", None),
    (libc::SYS_clock_nanosleep, "clock_nanosleep", None),
    (libc::SYS_wait4, "wait4", None),
    (libc::SYS_waitid, "waitid", None),
    // The fd of openat is a directory (usually AT_FDCWD), not what the call waits on.
    (libc::SYS_openat, "openat", None),
    (libc::SYS_close, "close", Some(0)),
    (libc::SYS_fsync, "fsync", Some(0)),
    (libc::SYS_fdatasync, "fdatasync", Some(0)),
    // glibc's libc bindings have no SYS_sync_file_range on aarch64 (84 on LP64).
    (84, "sync_file_range", Some(0)),
    (libc::SYS_flock, "flock", Some(0)),
    (libc::SYS_fcntl, "fcntl", Some(0)),
    (libc::SYS_ioctl, "ioctl", Some(0)),
    (libc::SYS_ftruncate, "ftruncate", Some(0)),
    (libc::SYS_fallocate, "fallocate", Some(0)),
    (libc::SYS_io_uring_enter, "io_uring_enter", Some(0)),
    (libc::SYS_io_getevents, "io_getevents", None),
    (libc::SYS_splice, "splice", Some(0)),
    (libc::SYS_tee, "tee", Some(0)),
    (libc::SYS_sendfile, "sendfile", Some(0)),
    (libc::SYS_copy_file_range, "copy_file_range", Some(0)),
    (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait", None),
    (libc::SYS_rt_sigsuspend, "rt_sigsuspend", None),
    (libc::SYS_sched_yield, "sched_yield", None),
    (libc::SYS_msgrcv, "msgrcv", None),
    (libc::SYS_semop, "semop", None),
    (libc::SYS_semtimedop, "semtimedop", None),
    (libc::SYS_getrandom, "getrandom", None),
];

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn syscall_entry(nr: i64) -> Option<(&'static str, Option<usize>)> {
    SYSCALLS
        .iter()
        .find(|(n, _, _)| *n == nr)
        .map(|&(_, name, fd)| (name, fd))
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn syscall_entry(_nr: i64) -> Option<(&'static str, Option<usize>)> {
    None
}

/// The syscall's name on this architecture (x86_64 and aarch64 Linux); `None` for numbers not
/// in the table (the caller prints `syscall 123`) and on other targets.
pub(crate) fn syscall_name(nr: i64) -> Option<&'static str> {
    syscall_entry(nr).map(|(name, _)| name)
}

/// Which argument (0-based) of syscall `nr` is the file descriptor it waits on, if any
/// (`read`, `recvfrom`, `connect`, `accept4`, `epoll_wait`, `fsync`, `flock`, ... → 0;
/// `poll`, `select`, `futex`, `nanosleep`, `openat` → `None`).
pub(crate) fn syscall_fd_arg(nr: i64) -> Option<usize> {
    syscall_entry(nr).and_then(|(_, fd)| fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on Linux 6.18 x86_64: a python thread blocked in os.read on a pipe, a sleep(1)
    // in clock_nanosleep, and the kernel's shape for a thread outside a syscall.
    const SYSCALL_READ: &[u8] =
        b"0 0x3 0x7fe278dcc500 0x1 0x7fe278ef85b8 0x0 0x0 0x7fe278cf39b0 0x7fe2790e32ec\n";
    const SYSCALL_SLEEP: &[u8] =
        b"230 0x0 0x0 0x7ffe094736c0 0x7ffe09473700 0x0 0x0 0x7ffe094736a8 0x7f1f655d8503\n";
    const SYSCALL_FAULT: &[u8] = b"-1 0x7ffd0b0ec728 0x7fa3254b22ad\n";
    const SYSCALL_RUNNING: &[u8] = b"running\n";
    // A thread's stat (sleep(1)'s, with utime 37 and stime 5).
    const STAT: &[u8] = b"10769 (sleep) S 10766 10766 31089 0 -1 4194304 129 0 0 0 37 5 0 0 20 0 1 0 104514 2990080 414 18446744073709551615 94510447644672 94510447662601 140729054083248 0 0 0 0 6 0 1 0 0 17 0 0 0 0 0 0 94510447676688 94510447677952 94511384334336 140729054092008 140729054092018 140729054092018 140729054093289 0\n";

    #[test]
    fn syscall_shapes() {
        assert_eq!(
            parse_task_syscall(SYSCALL_READ),
            Some(SyscallState::InSyscall {
                nr: 0,
                args: [0x3, 0x7fe278dcc500, 0x1, 0x7fe278ef85b8, 0, 0]
            })
        );
        assert_eq!(
            parse_task_syscall(SYSCALL_SLEEP),
            Some(SyscallState::InSyscall {
                nr: 230,
                args: [0, 0, 0x7ffe094736c0, 0x7ffe09473700, 0, 0]
            })
        );
        assert_eq!(
            parse_task_syscall(SYSCALL_FAULT),
            Some(SyscallState::NotInSyscall)
        );
        assert_eq!(
            parse_task_syscall(SYSCALL_RUNNING),
            Some(SyscallState::Running)
        );
        assert_eq!(
            parse_task_syscall(b"0 0xffffffffffffffff 0x0 0x0 0x0 0x0 0x0 0x1 0x2"),
            Some(SyscallState::InSyscall {
                nr: 0,
                args: [u64::MAX, 0, 0, 0, 0, 0]
            })
        );
    }

    #[test]
    fn malformed_syscall_is_none() {
        for text in [
            &b""[..],
            b"\n",
            b"running x",
            b"runnin",
            b"0 0x3 0x7fe278dcc500 0x1",
            b"0 0x3 0x7fe278dcc500 0x1 0x7fe278ef85b8 0x0 0x0 0x7fe278cf39b0",
            b"0 0x3 0x7fe278dcc500 0x1 0x7fe278ef85b8 0x0 0x0 0x7fe278cf39b0 0x1 0x2",
            b"0 3 1 1 1 1 1 1 1",
            b"-1 0x1",
            b"-1",
            b"x 0x0 0x0",
            b"99999999999999999999999 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            b"0 0x10000000000000000 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            b"0 0x 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            b"\xff\xfe 0x0",
        ] {
            assert_eq!(parse_task_syscall(text), None, "{text:?}");
        }
    }

    #[test]
    fn stat_state_and_ticks() {
        assert_eq!(parse_task_stat(STAT), Some(('S', 42)));
        // The name is everything between the first '(' and the LAST ')'.
        let hostile = b"7 (a) R 1 (b\nX) D 1 1 1 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5\n";
        assert_eq!(parse_task_stat(hostile), Some(('D', 30)));
        let huge = b"7 (x) R 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 5 0\n";
        assert_eq!(parse_task_stat(huge), Some(('R', u64::MAX)));
        for text in [
            &b""[..],
            b"7 (x",
            b"7 x) R",
            b")(",
            b"7 (x) R 1 1 1 0 -1 0 0 0 0 0 10",
            b"7 (x) R 1 1 1 0 -1 0 0 0 0 0 -10 5",
            b"7 (x) R 1 1 1 0 -1 0 0 0 0 0 99999999999999999999999 5",
            b"7 (x) RS 1 1 1 0 -1 0 0 0 0 0 10 5",
            b"7 (x) \xff 1 1 1 0 -1 0 0 0 0 0 10 5",
        ] {
            assert_eq!(parse_task_stat(text), None, "{text:?}");
        }
    }

    #[test]
    fn comm_and_wchan_are_raw() {
        assert_eq!(parse_comm(b"db-sync\n"), "db-sync");
        assert_eq!(parse_comm(b"a\"b\nc=d\n"), "a\"b\nc=d");
        assert_eq!(parse_comm(b"nl\n\n"), "nl\n");
        assert_eq!(parse_comm(b"\xffx\n"), "\u{fffd}x");
        assert_eq!(parse_comm(b""), "");
        assert_eq!(
            parse_wchan(b"hrtimer_nanosleep"),
            Some("hrtimer_nanosleep".into())
        );
        assert_eq!(parse_wchan(b"0"), None);
        assert_eq!(parse_wchan(b"0\n"), None);
        assert_eq!(parse_wchan(b""), None);
    }

    #[test]
    fn mutated_fixtures_never_panic() {
        let fixtures = [
            SYSCALL_READ,
            SYSCALL_SLEEP,
            SYSCALL_FAULT,
            SYSCALL_RUNNING,
            STAT,
        ];
        let mut parsed = 0usize;
        crate::fuzz::mutants(&fixtures, 20_000, |m| {
            parsed += usize::from(parse_task_syscall(m).is_some());
            parsed += usize::from(parse_task_stat(m).is_some());
            let _ = parse_comm(m);
            let _ = parse_wchan(m);
        });
        assert!(parsed > 0, "some mutants stay valid");
    }

    #[test]
    fn syscall_table() {
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(i64::MAX), None);
        assert_eq!(syscall_fd_arg(i64::MIN), None);
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            assert_eq!(syscall_name(0), Some("read"));
            assert_eq!(syscall_name(45), Some("recvfrom"));
            assert_eq!(syscall_name(202), Some("futex"));
            assert_eq!(syscall_name(232), Some("epoll_wait"));
            assert_eq!(syscall_name(230), Some("clock_nanosleep"));
            assert_eq!(syscall_fd_arg(0), Some(0));
            assert_eq!(syscall_fd_arg(7), None, "poll");
        }
        #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
        {
            assert_eq!(syscall_name(63), Some("read"));
            assert_eq!(syscall_name(98), Some("futex"));
        }
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        {
            let mut seen = std::collections::HashSet::new();
            for (nr, name, _) in SYSCALLS {
                assert!(seen.insert(*nr), "{name}: number {nr} twice");
            }
            for name in [
                "read",
                "write",
                "readv",
                "writev",
                "pread64",
                "pwrite64",
                "recvfrom",
                "recvmsg",
                "recvmmsg",
                "sendto",
                "sendmsg",
                "connect",
                "accept",
                "accept4",
                "epoll_pwait",
                "epoll_pwait2",
                "fsync",
                "fdatasync",
                "flock",
                "close",
                "io_uring_enter",
                "splice",
                "sendfile",
            ] {
                let nr = SYSCALLS.iter().find(|e| e.1 == name).unwrap().0;
                assert_eq!(syscall_name(nr), Some(name));
                assert_eq!(syscall_fd_arg(nr), Some(0), "{name}");
            }
            for name in [
                "ppoll",
                "pselect6",
                "futex",
                "nanosleep",
                "clock_nanosleep",
                "wait4",
                "waitid",
                "openat",
                "rt_sigtimedwait",
                "sched_yield",
            ] {
                let nr = SYSCALLS.iter().find(|e| e.1 == name).unwrap().0;
                assert_eq!(syscall_name(nr), Some(name));
                assert_eq!(syscall_fd_arg(nr), None, "{name}");
            }
            #[cfg(target_arch = "x86_64")]
            for name in ["poll", "select", "epoll_wait", "pause"] {
                let nr = SYSCALLS.iter().find(|e| e.1 == name).unwrap().0;
                assert_eq!(syscall_name(nr), Some(name));
            }
        }
    }

    #[test]
    fn fixture_tree_sample() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("self/task");
        for tid in ["77", "5", "notanumber", "1000"] {
            std::fs::create_dir_all(task.join(tid)).unwrap();
        }
        std::fs::write(task.join("77/stat"), STAT).unwrap();
        std::fs::write(task.join("77/comm"), b"ev\"il\nname=x\n").unwrap();
        std::fs::write(task.join("77/wchan"), b"0").unwrap();
        std::fs::write(task.join("5/stat"), b"garbage").unwrap();
        std::fs::write(task.join("5/comm"), b"x\n").unwrap();
        let root = ProcRoot::new(dir.path());
        assert_eq!(list_tasks_at(&root, 10).unwrap(), vec![5, 77, 1000]);
        assert_eq!(list_tasks_at(&root, 2).unwrap(), vec![5, 77]);
        let mut buf = Vec::new();
        assert_eq!(
            read_task_at(&root, 77, &mut buf),
            Some(TaskSample {
                tid: 77,
                name: "ev\"il\nname=x".into(),
                state: 'S',
                cpu_ticks: 42,
                syscall: None,
                wchan: None,
            })
        );
        std::fs::write(task.join("77/syscall"), SYSCALL_READ).unwrap();
        std::fs::write(task.join("77/wchan"), b"anon_pipe_read").unwrap();
        let s = read_task_at(&root, 77, &mut buf).unwrap();
        assert_eq!(s.wchan.as_deref(), Some("anon_pipe_read"));
        assert!(matches!(
            s.syscall,
            Some(SyscallState::InSyscall { nr: 0, .. })
        ));
        assert_eq!(read_task_at(&root, 5, &mut buf), None, "bad stat");
        assert_eq!(read_task_at(&root, 1000, &mut buf), None, "no files");
        assert_eq!(read_task_at(&root, 6, &mut buf), None, "gone");
        let empty = ProcRoot::new(dir.path().join("none"));
        assert!(list_tasks_at(&empty, 10).is_err());
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn gettid() -> u32 {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() as u32 }
    }

    /// Runs `block` on a new thread (named `name`) and samples that thread until `done` holds
    /// for its sample (10 s at most); then `unblock` lets it finish and it is joined.
    #[cfg(target_os = "linux")]
    pub(crate) fn sample_while(
        name: &str,
        block: impl FnOnce() + Send + 'static,
        done: impl Fn(&TaskSample) -> bool,
        unblock: impl FnOnce(),
    ) -> TaskSample {
        use std::time::{Duration, Instant};
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                tx.send(gettid()).unwrap();
                block();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let sample = loop {
            let s = read_task(tid, &mut buf).expect("the thread is alive");
            if done(&s) || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        unblock();
        handle.join().unwrap();
        sample
    }

    #[cfg(target_os = "linux")]
    fn in_syscall(s: &TaskSample) -> Option<(&'static str, Option<u64>)> {
        match s.syscall? {
            SyscallState::InSyscall { nr, args } => {
                Some((syscall_name(nr)?, syscall_fd_arg(nr).map(|i| args[i])))
            }
            _ => None,
        }
    }

    /// std's `UnixStream::read` and `TcpStream::read` call `recv(2)`, which glibc and musl
    /// make a `recvfrom` syscall; a plain `read(2)` on the same socket shows as `read`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn a_thread_blocked_on_a_socket_shows_the_syscall_and_fd() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;

        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let s = sample_while(
            "blocked-recv",
            move || {
                let mut buf = [0u8; 8];
                let _ = (&a).read(&mut buf);
            },
            |s| in_syscall(s).is_some_and(|(n, _)| n != "futex"),
            || b.write_all(b"x").unwrap(),
        );
        assert_eq!(in_syscall(&s), Some(("recvfrom", Some(fd as u64))), "{s:?}");
        assert_eq!(s.state, 'S');
        assert_eq!(s.name, "blocked-recv");

        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let s = sample_while(
            "blocked-read",
            move || {
                let mut buf = [0u8; 8];
                // SAFETY: `buf` is valid for 8 bytes; `a` owns the descriptor while we read.
                unsafe { libc::read(a.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            },
            |s| in_syscall(s).is_some_and(|(n, _)| n != "futex"),
            || b.write_all(b"x").unwrap(),
        );
        assert_eq!(in_syscall(&s), Some(("read", Some(fd as u64))), "{s:?}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let fd = client.as_raw_fd();
        let s = sample_while(
            "blocked-tcp",
            move || {
                let mut buf = [0u8; 8];
                let _ = (&client).read(&mut buf);
            },
            |s| in_syscall(s).is_some_and(|(n, _)| n != "futex"),
            || server.write_all(b"x").unwrap(),
        );
        assert_eq!(in_syscall(&s), Some(("recvfrom", Some(fd as u64))), "{s:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_spinning_thread_uses_cpu_between_samples() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let mut x = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        let tid = rx.recv().unwrap();
        let mut buf = Vec::new();
        // Two samples ~150 ms apart; on a loaded machine the thread may get little CPU in one
        // window, so a few windows are allowed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (first, second) = loop {
            let first = read_task(tid, &mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            let second = read_task(tid, &mut buf).unwrap();
            if second.cpu_ticks > first.cpu_ticks || Instant::now() > deadline {
                break (first, second);
            }
        };
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        assert!(second.cpu_ticks > first.cpu_ticks, "{first:?} {second:?}");
        assert!(
            matches!(
                second.syscall,
                Some(SyscallState::Running | SyscallState::NotInSyscall)
            ),
            "{second:?}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn listed_threads_and_one_that_exits() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = go_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let tids = list_tasks(100_000).unwrap();
        assert!(
            tids.contains(&tid) && tids.contains(&std::process::id()),
            "{tids:?}"
        );
        assert!(tids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(list_tasks(1).unwrap(), tids[..1]);
        assert_eq!(list_tasks(0).unwrap(), Vec::<u32>::new());
        let mut buf = Vec::new();
        assert_eq!(read_task(tid, &mut buf).unwrap().tid, tid);
        // The thread exits between the listing and the read.
        go_tx.send(()).unwrap();
        handle.join().unwrap();
        assert_eq!(read_task(tid, &mut buf), None);
        assert!(!list_tasks(100_000).unwrap().contains(&tid));
    }

    /// The thread that reads its own files sees itself inside that read (`pread64`: the
    /// crate reads `/proc` with `pread(2)` from offset 0).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_reader_sees_itself_in_pread() {
        let mut buf = Vec::new();
        let s = read_task(gettid(), &mut buf).unwrap();
        assert_eq!(s.state, 'R');
        assert_eq!(in_syscall(&s).map(|(n, _)| n), Some("pread64"), "{s:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hostile_thread_name_is_returned_raw() {
        let name = "ev\"il\nname=x";
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let s = sample_while(
            name,
            move || {
                let _ = rx.recv();
            },
            |_| true,
            move || tx.send(()).unwrap(),
        );
        assert_eq!(s.name, name);
    }
}
