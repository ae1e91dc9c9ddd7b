//! "Planned stop" and "takeover" marker files: a note left by whoever is about to stop the
//! service on purpose (a deploy script, an `ExecStop=`, a preStop hook, an upgrade), so that
//! the `Shutdown context` line says `planned_stop_marker_present=yes` and `stop=planned`, at INFO (a
//! routine stop, not a warning).
//!
//! Write one with [`write_marker`] before sending the signal, in the directory given to
//! [`ContextOptions::with_marker_dir`](crate::context::ContextOptions::with_marker_dir) (file
//! names `.planned-stop.json` and `.takeover.json` by default):
//!
//! ```no_run
//! # fn main() -> Result<(), shutdown_forensics::Error> {
//! // Before `kill -TERM 4242` as part of a planned restart:
//! shutdown_forensics::context::markers::write_marker("/var/lib/gateway/.planned-stop.json".as_ref(), 4242)?;
//! # Ok(()) }
//! ```
//!
//! # The format, for tools not written in Rust
//!
//! One JSON object, at most [`MARKER_READ_LIMIT`] bytes, written atomically (a temporary file
//! in the same directory, then `rename(2)`), mode 0600:
//!
//! ```text
//! {"target_pid": 4242, "target_start_time": 81234567, "written_at": 1733500000.5, "writer_pid": 999, "reason": "deploy 42"}
//! ```
//!
//! From a shell, with the pid of the service (here from systemd), before stopping it:
//!
//! ```text
//! pid=$(systemctl show -p MainPID --value gateway.service)
//! tmp=$(mktemp /var/lib/gateway/.planned-stop.json.XXXXXX)   # mode 0600, same directory
//! printf '{"target_pid": %d, "written_at": %s, "reason": "deploy 42"}' "$pid" "$(date +%s)" > "$tmp"
//! mv "$tmp" /var/lib/gateway/.planned-stop.json              # rename(2): atomic
//! ```
//!
//! or `shutdown-forensics mark /var/lib/gateway --reason "deploy 42"` (the command-line tool,
//! `cli/` in the repository), which reads the pid and start time from the flight record.
//!
//! - `target_pid` (required): the pid of the process to be stopped, a JSON number.
//! - `target_start_time` (optional): field 22 of `/proc/<target_pid>/stat` (clock ticks after
//!   boot); when present, a recycled pid does not match.
//! - `written_at` (optional): Unix seconds; a marker older than the configured maximum age
//!   (10 minutes by default) is stale and names nobody.
//! - `reason` (optional): why the stop is planned (`deploy 42`, a ticket), a JSON string of at
//!   most [`REASON_MAX`] characters (longer is cut); when the marker names the process, the
//!   `Shutdown context` line shows it as `stop_reason` after `stop=planned`, escaped.
//! - `writer_pid` (optional, informational): who wrote it.
//! - Anything else is ignored. A marker names its target by number, never by substring:
//!   `"target_pid": 12` does not match pid 123, and compact JSON matches as well as spaced.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sys::proc::truncate_chars;

/// Largest marker read; anything bigger is reported as [`MarkerStatus::TooLarge`].
pub const MARKER_READ_LIMIT: u64 = 64 * 1024;

/// How far in the future a marker's `written_at` may be before it counts as stale.
const MAX_CLOCK_SKEW_S: f64 = 60.0;

/// Characters of the marker's text kept in [`MarkerInfo::raw`].
const RAW_MAX: usize = 300;

/// Characters of a marker's `reason` kept (and written by [`write_marker_with_reason`]).
pub const REASON_MAX: usize = 200;

/// Whether a marker file could be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MarkerStatus {
    /// Valid JSON object.
    Valid,
    /// Present but not a JSON object (or `target_pid` is not a non-negative integer).
    Malformed,
    /// Larger than [`MARKER_READ_LIMIT`]; not parsed.
    TooLarge,
    /// Not a regular file (a FIFO, a device, a directory); not read.
    NotAFile,
    /// Exists but could not be read (permissions, I/O error).
    Unreadable,
}

/// What a marker file said, as found at capture time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MarkerInfo {
    /// Where it was found.
    pub path: PathBuf,
    /// Whether it could be read and parsed.
    pub status: MarkerStatus,
    /// True only when the marker is valid, fresh, names our pid and, when both are known, our
    /// start time.
    pub for_self: bool,
    /// `target_pid` from the marker.
    pub target_pid: Option<u64>,
    /// `target_start_time` (clock ticks after boot, field 22 of `/proc/<pid>/stat`).
    pub target_start_time: Option<u64>,
    /// `written_at` (unix seconds).
    pub written_at: Option<f64>,
    /// Seconds between `written_at` and the capture.
    pub age_s: Option<f64>,
    /// True when older than the configured maximum age (then it is not `for_self`).
    pub stale: bool,
    /// The first 300 characters of the file (lossy UTF-8), for the record.
    pub raw: String,
    /// Why it is not `Valid`, when it is not.
    pub detail: Option<String>,
    /// The marker's `reason` (at most [`REASON_MAX`] characters), when it gave one as a string.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Who we are, for comparing against a marker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start_time: Option<u64>,
}

/// The JSON fields a marker may hold; everything else is ignored.
#[derive(Deserialize)]
struct MarkerJson {
    target_pid: Option<serde_json::Value>,
    target_start_time: Option<serde_json::Value>,
    written_at: Option<serde_json::Value>,
    reason: Option<serde_json::Value>,
}

/// Reads the marker at `path`. `None` when there is no file; never blocks on a FIFO, never
/// reads more than [`MARKER_READ_LIMIT`] bytes.
pub(crate) fn read_marker(
    path: &Path,
    me: Identity,
    now: SystemTime,
    max_age: Option<Duration>,
) -> Option<MarkerInfo> {
    let mut info = unread(path);
    // No symlinks (a marker linked to /proc/self/environ would copy secrets into the record),
    // no FIFOs (they would block), nothing larger than the limit.
    let bytes = match crate::sys::private_file::read_bounded(path, MARKER_READ_LIMIT) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            info.status = match e.kind() {
                io::ErrorKind::InvalidInput => MarkerStatus::NotAFile,
                io::ErrorKind::InvalidData => MarkerStatus::TooLarge,
                _ => MarkerStatus::Unreadable,
            };
            info.detail = Some(e.to_string());
            return Some(info);
        }
    };
    Some(parse_marker(path, &bytes, me, now, max_age))
}

/// A marker at `path` before anything is known of it.
fn unread(path: &Path) -> MarkerInfo {
    MarkerInfo {
        path: path.to_owned(),
        status: MarkerStatus::Unreadable,
        for_self: false,
        target_pid: None,
        target_start_time: None,
        written_at: None,
        age_s: None,
        stale: false,
        raw: String::new(),
        detail: None,
        reason: None,
    }
}

/// What the marker at `path` says, from its bytes (read, bounded, by [`read_marker`]). Pure:
/// no I/O, so it is fuzzed (`src/fuzz/`).
pub(crate) fn parse_marker(
    path: &Path,
    bytes: &[u8],
    me: Identity,
    now: SystemTime,
    max_age: Option<Duration>,
) -> MarkerInfo {
    let mut info = unread(path);
    let text = String::from_utf8_lossy(bytes);
    info.raw = truncate_chars(&text, RAW_MAX);
    let parsed = match serde_json::from_slice::<MarkerJson>(bytes) {
        Ok(p) => p,
        Err(e) => {
            info.status = MarkerStatus::Malformed;
            info.detail = Some(format!("not a JSON object: {e}"));
            return info;
        }
    };
    info.target_start_time = parsed
        .target_start_time
        .as_ref()
        .and_then(serde_json::Value::as_u64);
    info.written_at = parsed
        .written_at
        .as_ref()
        .and_then(serde_json::Value::as_f64);
    info.reason = (parsed.reason.as_ref())
        .and_then(serde_json::Value::as_str)
        .map(|r| truncate_chars(r, REASON_MAX));
    info.target_pid = match &parsed.target_pid {
        Some(v) => match v.as_u64() {
            Some(pid) => Some(pid),
            None => {
                info.status = MarkerStatus::Malformed;
                info.detail = Some(format!("target_pid is not a non-negative integer: {v}"));
                return info;
            }
        },
        None => None,
    };
    info.status = MarkerStatus::Valid;
    if let Some(written) = info.written_at {
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let age = now_s - written;
        info.age_s = Some(age);
        // A marker from the future (clock skew aside) is as untrustworthy as an old one.
        info.stale = age < -MAX_CLOCK_SKEW_S || max_age.is_some_and(|max| age > max.as_secs_f64());
    }
    let pid_matches = info.target_pid == Some(u64::from(me.pid));
    let start_matches = match (info.target_start_time, me.start_time) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => true,
    };
    info.for_self = pid_matches && start_matches && !info.stale;
    info
}

/// Writes a marker naming `target_pid` (with its start time when readable and the current
/// time), atomically: a temporary file in the same directory renamed over `path`.
///
/// This is the other side of the protocol, for the tool that is about to stop the service on
/// purpose (an upgrade script, a `--replace` installer, a test).
///
/// ```no_run
/// # fn main() -> Result<(), shutdown_forensics::Error> {
/// // Before `kill -TERM 4242` as part of a planned restart:
/// shutdown_forensics::context::markers::write_marker("/var/lib/gateway/.planned-stop.json".as_ref(), 4242)?;
/// # Ok(()) }
/// ```
pub fn write_marker(path: &Path, target_pid: u32) -> Result<(), crate::Error> {
    write_marker_with_reason(path, target_pid, None)
}

/// [`write_marker`] with a `reason` (cut to [`REASON_MAX`] characters) that the `Shutdown
/// context` line shows as `stop_reason`.
///
/// ```no_run
/// # fn main() -> Result<(), shutdown_forensics::Error> {
/// use shutdown_forensics::context::markers::write_marker_with_reason;
/// write_marker_with_reason("/var/lib/gateway/.planned-stop.json".as_ref(), 4242, Some("deploy 42"))?;
/// # Ok(()) }
/// ```
pub fn write_marker_with_reason(
    path: &Path,
    target_pid: u32,
    reason: Option<&str>,
) -> Result<(), crate::Error> {
    let mut buf = Vec::new();
    let start_time = crate::sys::proc::ProcRoot::default()
        .stat(Some(target_pid), &mut buf)
        .map(|s| s.start_time);
    let written_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let body = serde_json::json!({
        "target_pid": target_pid,
        "target_start_time": start_time,
        "written_at": written_at,
        "writer_pid": std::process::id(),
    });
    let mut body = body;
    if let Some(reason) = reason {
        body["reason"] = serde_json::json!(truncate_chars(reason, REASON_MAX));
    }
    crate::sys::private_file::write_atomic(path, body.to_string().as_bytes())
        .map_err(|e| crate::Error::io(format!("write marker {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            pid: 123,
            start_time: Some(5000),
        }
    }

    fn read(dir: &Path, body: &[u8]) -> MarkerInfo {
        let p = dir.join("m.json");
        std::fs::write(&p, body).unwrap();
        read_marker(&p, me(), SystemTime::now(), Some(Duration::from_secs(600))).unwrap()
    }

    #[test]
    fn compact_and_spaced_json_both_match() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path(), br#"{"target_pid":123}"#).for_self);
        assert!(
            read(
                d.path(),
                b"{ \"target_pid\" : 123 ,\n \"replacer_pid\": 9 }"
            )
            .for_self
        );
    }

    #[test]
    fn pid_prefix_does_not_match() {
        let d = tempfile::tempdir().unwrap();
        let m = read(d.path(), br#"{"target_pid": 12}"#);
        assert_eq!(m.status, MarkerStatus::Valid);
        assert!(!m.for_self);
        assert!(!read(d.path(), br#"{"target_pid": 1234}"#).for_self);
        assert!(!read(d.path(), br#"{"other": 123}"#).for_self);
    }

    #[test]
    fn start_time_must_match_when_both_known() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path(), br#"{"target_pid":123,"target_start_time":5000}"#).for_self);
        assert!(!read(d.path(), br#"{"target_pid":123,"target_start_time":4999}"#).for_self);
    }

    #[test]
    fn stale_markers_do_not_name_us() {
        let d = tempfile::tempdir().unwrap();
        let old = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - 3600.0;
        let m = read(
            d.path(),
            format!(r#"{{"target_pid":123,"written_at":{old}}}"#).as_bytes(),
        );
        assert!(m.stale);
        assert!(!m.for_self);
        assert!(m.age_s.unwrap() > 3500.0);
    }

    #[test]
    fn markers_from_the_future_are_stale() {
        let d = tempfile::tempdir().unwrap();
        let future = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 3600.0;
        let m = read(
            d.path(),
            format!(r#"{{"target_pid":123,"written_at":{future}}}"#).as_bytes(),
        );
        assert!(m.stale && !m.for_self);
    }

    #[test]
    fn symlinked_markers_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.json");
        std::os::unix::fs::symlink("/proc/self/environ", &p).unwrap();
        let m = read_marker(&p, me(), SystemTime::now(), None).unwrap();
        assert_eq!(m.status, MarkerStatus::NotAFile);
        assert!(m.raw.is_empty());
    }

    #[test]
    fn malformed_is_reported_not_absent() {
        let d = tempfile::tempdir().unwrap();
        for body in [
            &b"target_pid=123"[..],
            b"[123]",
            br#"{"target_pid":"123"}"#,
            br#"{"target_pid":-1}"#,
            b"\xff\xfe",
        ] {
            let m = read(d.path(), body);
            assert_eq!(m.status, MarkerStatus::Malformed, "{body:?}");
            assert!(!m.for_self);
            assert!(m.detail.is_some());
        }
    }

    #[test]
    fn missing_file_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_marker(&d.path().join("nope"), me(), SystemTime::now(), None).is_none());
    }

    #[test]
    fn raw_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let body = format!(r#"{{"target_pid":123,"pad":"{}"}}"#, "x".repeat(5000));
        let m = read(d.path(), body.as_bytes());
        assert!(m.for_self);
        assert_eq!(m.raw.chars().count(), RAW_MAX);
    }

    #[test]
    fn a_reason_is_read_bounded_and_only_as_a_string() {
        let d = tempfile::tempdir().unwrap();
        let m = read(d.path(), br#"{"target_pid":123,"reason":"deploy 42"}"#);
        assert!(m.for_self);
        assert_eq!(m.reason.as_deref(), Some("deploy 42"));
        assert_eq!(
            read(d.path(), br#"{"target_pid":123,"reason":42}"#).reason,
            None
        );
        let long = format!(r#"{{"target_pid":123,"reason":"{}"}}"#, "r".repeat(1000));
        let m = read(d.path(), long.as_bytes());
        assert_eq!(m.reason.unwrap().chars().count(), REASON_MAX);
        let p = d.path().join(".planned-stop.json");
        write_marker_with_reason(&p, 123, Some("deploy\n42")).unwrap();
        let m = read_marker(&p, me(), SystemTime::now(), None).unwrap();
        assert_eq!(m.reason.as_deref(), Some("deploy\n42"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn write_marker_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".planned-stop.json");
        let pid = std::process::id();
        write_marker(&p, pid).unwrap();
        let mut buf = Vec::new();
        let start = crate::sys::proc::ProcRoot::default()
            .stat(None, &mut buf)
            .map(|s| s.start_time);
        let m = read_marker(
            &p,
            Identity {
                pid,
                start_time: start,
            },
            SystemTime::now(),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        assert!(m.for_self, "{m:?}");
        assert!(m.age_s.unwrap() < 60.0);
    }
}
