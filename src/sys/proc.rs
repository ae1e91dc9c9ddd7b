//! `/proc` text parsers (pure, over bytes) and the thin I/O shell that feeds them.
//!
//! Every parser returns `None` on malformed input; nothing here panics on what the kernel (or a
//! fixture, or a hostile process name) puts in these files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The facts of `/proc/<pid>/stat` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) comm: String,
    pub(crate) state: char,
    pub(crate) ppid: u32,
    /// Controlling terminal (`tty_nr`, field 7); 0 when none.
    pub(crate) tty_nr: i64,
    /// Start time in clock ticks after boot (field 22).
    pub(crate) start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The name sits between the first `(` and the LAST `)`, because a
/// process may call itself `a) R 1 (b`.
pub(crate) fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // Fields after the name start at field 3 (state).
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let _session = fields.next()?;
    let tty_nr = fields.next()?.parse().ok()?;
    // Field 22 is the 17th field after tty_nr (field 7).
    let start_time = fields.nth(14)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        tty_nr,
        start_time,
    })
}

/// The value of `Key:` in `/proc/<pid>/status`, trimmed.
pub(crate) fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// `TracerPid` from `/proc/<pid>/status`: `Some(pid)` only when a tracer is attached.
pub(crate) fn parse_tracer_pid(status: &str) -> Option<u32> {
    status_field(status, "TracerPid")?
        .parse()
        .ok()
        .filter(|&p| p != 0)
}

/// The real uid (first of four) from the `Uid:` line of `/proc/<pid>/status`.
pub(crate) fn parse_uid(status: &str) -> Option<u32> {
    status_field(status, "Uid")?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `PPid` from `/proc/<pid>/status`.
pub(crate) fn parse_ppid(status: &str) -> Option<u32> {
    status_field(status, "PPid")?.parse().ok()
}

/// The state letter from the `State:` line of `/proc/<pid>/status` (`S (sleeping)` → `S`).
pub(crate) fn parse_state(status: &str) -> Option<char> {
    status_field(status, "State")?.chars().next()
}

/// The 1-minute load average from `/proc/loadavg`.
pub(crate) fn parse_loadavg_1m(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// `/proc/<pid>/cmdline` (NUL-separated) as one space-joined string of at most `max` chars.
pub(crate) fn parse_cmdline(raw: &[u8], max: usize) -> String {
    let joined = String::from_utf8_lossy(raw).replace('\0', " ");
    truncate_chars(joined.trim_end(), max)
}

/// The first `max` characters of `s` (never splits a character).
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => s[..idx].to_owned(),
        None => s.to_owned(),
    }
}

/// Seconds since boot, suspend included: the clock `/proc/<pid>/stat` start times count on.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn boottime_secs() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn boottime_secs() -> Option<f64> {
    None
}

/// `_SC_CLK_TCK`: the unit of `/proc/<pid>/stat` start times.
pub(crate) fn clock_ticks_per_sec() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// Now, in clock ticks since boot (comparable with start times).
pub(crate) fn boot_ticks_now() -> Option<u64> {
    Some((boottime_secs()? * clock_ticks_per_sec()?) as u64)
}

/// A short summary of one process, as far as its `/proc` entry could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcSummary {
    /// The process id.
    pub pid: u32,
    /// `comm` (at most 15 bytes, chosen by the process itself: escape before display).
    pub name: Option<String>,
    /// State letter: `R`, `S`, `D`, `Z` (exited, not yet reaped), ...
    pub state: Option<char>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// For this process its real uid (`/proc/self/status`); for others the owner of
    /// `/proc/<pid>`, i.e. the effective uid (root for processes that are not dumpable).
    pub uid: Option<u32>,
    /// Start time in clock ticks after boot; with the pid, identifies the process uniquely.
    pub start_time: Option<u64>,
    /// Command line, only when asked for ([`crate::context::ContextOptions::include_cmdline`]) and
    /// truncated to 300 characters. Command lines can hold secrets; they are off by default.
    pub cmdline: Option<String>,
}

/// Longest command line kept, in characters.
pub(crate) const CMDLINE_MAX: usize = 300;

/// Bound on a `/proc/<pid>/` file read here (they are small; this bounds the unexpected).
pub(crate) const PID_FILE_LIMIT: u64 = 64 * 1024;
/// Bound on a file at the root of `/proc` read here (`loadavg`, `uptime`).
pub(crate) const ROOT_FILE_LIMIT: u64 = 4096;

/// Reads `/proc` under a root directory (normally `/proc`; a fixture tree in tests).
#[derive(Debug, Clone)]
pub(crate) struct ProcRoot {
    root: PathBuf,
}

impl Default for ProcRoot {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }
}

impl ProcRoot {
    #[cfg(test)]
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub(crate) fn path(&self, pid: Option<u32>, file: &str) -> PathBuf {
        let mut p = self.root.clone();
        match pid {
            Some(pid) => p.push(pid.to_string()),
            None => p.push("self"),
        }
        p.push(file);
        p
    }

    /// Reads a whole `/proc` file (they are small; `limit` bounds the unexpected).
    pub(crate) fn read(&self, pid: Option<u32>, file: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        read_bounded(&self.path(pid, file), buf, PID_FILE_LIMIT)
    }

    pub(crate) fn read_root(&self, file: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        read_bounded(&self.root.join(file), buf, ROOT_FILE_LIMIT)
    }

    /// Opens a `/proc` file to be read again later with [`read_file_bounded`].
    pub(crate) fn open(&self, pid: Option<u32>, file: &str) -> io::Result<File> {
        File::open(self.path(pid, file))
    }

    /// Opens a file at the root of `/proc` (e.g. `loadavg`) to be read again later.
    pub(crate) fn open_root(&self, file: &str) -> io::Result<File> {
        File::open(self.root.join(file))
    }

    pub(crate) fn stat(&self, pid: Option<u32>, buf: &mut Vec<u8>) -> Option<Stat> {
        self.read(pid, "stat", buf).ok()?;
        parse_stat(buf)
    }

    /// A summary of `pid`; fields stay `None` when the process is gone or unreadable.
    pub(crate) fn summary(&self, pid: u32, cmdline: bool, buf: &mut Vec<u8>) -> ProcSummary {
        self.summary_known(pid, cmdline, buf, None)
    }

    /// [`Self::summary`], reusing the uid of `known` (start time, uid) when the process is
    /// the same one (same start time): one `stat(2)` less on the signal path.
    pub(crate) fn summary_known(
        &self,
        pid: u32,
        cmdline: bool,
        buf: &mut Vec<u8>,
        known: Option<(u64, u32)>,
    ) -> ProcSummary {
        let stat = self.stat(Some(pid), buf);
        self.summary_of(pid, stat, cmdline, buf, known)
    }

    /// [`Self::summary_known`] with the `stat` already read (`None`: gone or unreadable).
    pub(crate) fn summary_of(
        &self,
        pid: u32,
        stat: Option<Stat>,
        cmdline: bool,
        buf: &mut Vec<u8>,
        known: Option<(u64, u32)>,
    ) -> ProcSummary {
        let mut s = ProcSummary {
            pid,
            ..ProcSummary::default()
        };
        if let Some(stat) = stat {
            s.name = Some(stat.comm);
            s.state = Some(stat.state);
            s.ppid = Some(stat.ppid);
            s.start_time = Some(stat.start_time);
        }
        s.uid = match known {
            Some((start, uid)) if s.start_time == Some(start) => Some(uid),
            _ => owner_uid(&self.path(Some(pid), "")),
        };
        if cmdline && self.read(Some(pid), "cmdline", buf).is_ok() {
            s.cmdline = Some(parse_cmdline(buf, CMDLINE_MAX));
        }
        s
    }
}

/// The owner of `/proc/<pid>`: the process's effective uid, without reading `status`.
fn owner_uid(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.uid())
}

/// Reads at most `limit` bytes of `path` into `buf` (cleared first).
///
/// The `/proc` files read here are produced whole by one `read(2)` when the buffer is large
/// enough, so a read that does not fill the buffer ends the file: the usual extra `read` that
/// returns 0 is skipped (on the signal path every syscall after a wake-up is a cold one).
pub(crate) fn read_bounded(path: &Path, buf: &mut Vec<u8>, limit: u64) -> io::Result<()> {
    read_file_bounded(&File::open(path)?, buf, limit)
}

/// [`read_bounded`] through a file opened earlier, from offset 0 with `pread(2)`: `/proc`
/// regenerates the text on a read at offset 0, so the content is as fresh as a new open's,
/// without the path lookup (the costliest part after a thread wakes cold).
pub(crate) fn read_file_bounded(file: &File, buf: &mut Vec<u8>, limit: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 4096;
    buf.clear();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    while buf.len() < limit {
        let start = buf.len();
        let want = CHUNK.min(limit - start);
        buf.resize(start + want, 0);
        let n = loop {
            match file.read_at(&mut buf[start..], start as u64) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + n);
        if n < want {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (gate way) S 1 4242 4242 34816 4242 4194560 1 0 0 0 3 1 0 0 20 0 4 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 17002 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.comm, "gate way");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_name_with_parens_and_newline() {
        let text = b"7 (a) R 1 (b\nX) Z 99 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "a) R 1 (b\nX");
        assert_eq!(s.state, 'Z');
        assert_eq!(s.ppid, 99);
        assert_eq!(s.start_time, 555);
    }

    #[test]
    fn malformed_stat_is_none() {
        for text in [
            &b""[..],
            b"1 (x",
            b"1 x) S",
            b"1 (x) S notanumber",
            b"1 (x) S 1 2 3 4",
            b")(",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_stat(text), None, "{text:?}");
        }
    }

    #[test]
    fn status_and_loadavg() {
        let status = "Name:\tx\nState:\tS (sleeping)\nPPid:\t77\nUid:\t1000\t1000\t1000\t1000\nTracerPid:\t0\n";
        assert_eq!(parse_uid(status), Some(1000));
        assert_eq!(parse_ppid(status), Some(77));
        assert_eq!(parse_state(status), Some('S'));
        assert_eq!(parse_ppid("PPid:\tx"), None);
        assert_eq!(parse_state("State:\t"), None);
        assert_eq!(parse_tracer_pid(status), None);
        assert_eq!(parse_tracer_pid("TracerPid:\t321\n"), Some(321));
        assert_eq!(parse_tracer_pid("TracerPid: garbage"), None);
        assert_eq!(parse_loadavg_1m("0.42 0.30 0.20 1/234 5678\n"), Some(0.42));
        assert_eq!(parse_loadavg_1m("nan 1 1"), None);
        assert_eq!(parse_loadavg_1m(""), None);
    }

    #[test]
    fn bounded_reads_of_large_and_small_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &big).unwrap();
        let mut buf = Vec::new();
        read_bounded(&p, &mut buf, 64 * 1024).unwrap();
        assert_eq!(buf, big);
        read_bounded(&p, &mut buf, 5000).unwrap();
        assert_eq!(buf, &big[..5000]);
        read_bounded(Path::new("/proc/self/status"), &mut buf, 64 * 1024).unwrap();
        assert!(String::from_utf8_lossy(&buf).contains("TracerPid:"));
        assert!(read_bounded(&dir.path().join("none"), &mut buf, 10).is_err());
    }

    #[test]
    fn cmdline_is_joined_and_truncated() {
        assert_eq!(parse_cmdline(b"python3\0-m\0app\0", 300), "python3 -m app");
        assert_eq!(parse_cmdline("ééé\0".as_bytes(), 2), "éé");
    }

    #[test]
    fn fixture_root_and_gone_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("77")).unwrap();
        std::fs::write(dir.path().join("77/stat"), STAT).unwrap();
        let root = ProcRoot::new(dir.path());
        let mut buf = Vec::new();
        let s = root.summary(77, false, &mut buf);
        assert_eq!(s.name.as_deref(), Some("gate way"));
        assert_eq!(s.cmdline, None);
        // The uid is reused only for the very same process (same start time).
        assert_eq!(
            root.summary_known(77, false, &mut buf, Some((987654, 4242)))
                .uid,
            Some(4242)
        );
        let me = std::fs::metadata(dir.path().join("77"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .ok();
        assert_eq!(
            root.summary_known(77, false, &mut buf, Some((1, 4242))).uid,
            me
        );
        let gone = root.summary(78, true, &mut buf);
        assert_eq!(
            gone,
            ProcSummary {
                pid: 78,
                ..ProcSummary::default()
            }
        );
    }

    /// An open `/proc/<pid>/stat` read again at offset 0 shows the process as it is now, and
    /// once the process is gone it reads nothing at all (never another process's entry).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_open_proc_file_reads_fresh_and_fails_once_the_process_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("this test needs sleep(1)");
        let pid = child.id();
        let root = ProcRoot::default();
        let file = root.open(Some(pid), "stat").unwrap();
        let mut buf = Vec::new();
        let state = |buf: &mut Vec<u8>| {
            read_file_bounded(&file, buf, PID_FILE_LIMIT)
                .ok()
                .and_then(|()| parse_stat(buf))
                .map(|s| s.state)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state(&mut buf) != Some('S') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(state(&mut buf), Some('S'));
        // SAFETY: kill(2) on our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        while state(&mut buf) != Some('T') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(state(&mut buf), Some('T'), "the second read is fresh");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(read_file_bounded(&file, &mut buf, PID_FILE_LIMIT).is_err());
        assert!(buf.is_empty(), "{buf:?}");
    }

    #[test]
    fn an_open_file_is_read_from_its_start_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = Vec::new();
        read_file_bounded(&file, &mut buf, 20_000).unwrap();
        assert_eq!(buf.len(), 10_000);
        read_file_bounded(&file, &mut buf, 20_000).unwrap();
        assert_eq!(buf.len(), 10_000, "read again from offset 0");
        read_file_bounded(&file, &mut buf, 5_000).unwrap();
        assert_eq!(buf.len(), 5_000, "never past the bound");
    }
}
