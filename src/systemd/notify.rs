//! `sd_notify(3)` messages for the stop: `STOPPING=1`, `STATUS=`, `EXTEND_TIMEOUT_USEC=`.
//!
//! The datagram is written here with `UnixDatagram` rather than through `sd_notify::notify`,
//! because sd-notify 0.5 (a) only reads `$NOTIFY_SOCKET`, so a notifier cannot be pointed at a
//! socket of the caller's choosing; (b) passes `@name` to `connect()` as a file path, so an
//! abstract socket (which `sd_notify(3)` allows and some managers use) is never reached; (c)
//! sends on a blocking socket, so a manager that does not read its queue stalls the sender in
//! the middle of a shutdown; and (d) takes `EXTEND_TIMEOUT_USEC` as a `u32` (71 minutes at most).
//! The protocol itself is one datagram of `KEY=value` lines, which std does in a few lines.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// Sends notifications to the service manager's socket.
///
/// Every send uses a fresh non-blocking socket: it never waits on the manager, never panics,
/// and returns the error (a missing listener, a full queue) for the caller to ignore or log.
///
/// ```
/// use shutdown_forensics::systemd::Notifier;
///
/// // None outside systemd (no NOTIFY_SOCKET); then there is nothing to notify.
/// if let Some(notifier) = Notifier::from_env() {
///     let _ = notifier.stopping();
///     let _ = notifier.status("shutting down: drain");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    /// An abstract socket name, without the leading `@`.
    Abstract(Vec<u8>),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "NOTIFY_SOCKET {}", p.display()),
            Self::Abstract(name) => write!(f, "NOTIFY_SOCKET @{}", String::from_utf8_lossy(name)),
        }
    }
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`; `None` when it is unset or not a form accepted by
    /// [`Notifier::new`].
    #[must_use]
    pub fn from_env() -> Option<Self> {
        Self::new(std::env::var_os("NOTIFY_SOCKET")?)
    }

    /// A notifier for `socket`, spelled as `$NOTIFY_SOCKET` spells it: an absolute path, or
    /// `@name` for a Linux abstract socket. `None` for anything else (empty, relative, and the
    /// `vsock:` form, which this crate does not speak).
    ///
    /// ```
    /// use shutdown_forensics::systemd::Notifier;
    ///
    /// assert!(Notifier::new("/run/systemd/notify").is_some());
    /// assert!(Notifier::new("@gateway-notify").is_some());
    /// assert!(Notifier::new("relative/path").is_none());
    /// ```
    #[must_use]
    pub fn new(socket: impl AsRef<OsStr>) -> Option<Self> {
        let socket = socket.as_ref();
        let address = match socket.as_bytes() {
            [b'/', ..] => Address::Path(PathBuf::from(socket)),
            [b'@', name @ ..] if !name.is_empty() => Address::Abstract(name.to_vec()),
            _ => return None,
        };
        Some(Self { address })
    }

    /// Sends `STOPPING=1`: the service has begun its shutdown.
    ///
    /// # Errors
    ///
    /// When the datagram cannot be sent (no listener, full queue, abstract socket on a
    /// non-Linux system).
    pub fn stopping(&self) -> Result<(), Error> {
        self.send("STOPPING=1")
    }

    /// Sends `STATUS=<text>`, shown by `systemctl status`. Control characters (a newline would
    /// start another assignment, e.g. a forged `READY=1`) are sent as spaces.
    ///
    /// # Errors
    ///
    /// As for [`stopping`](Self::stopping).
    pub fn status(&self, text: &str) -> Result<(), Error> {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={clean}"))
    }

    /// Sends `EXTEND_TIMEOUT_USEC=<by>`: the manager waits at least `by` longer for the next
    /// message before its stop timeout applies. See [`ExtendPolicy`] for how far to go.
    /// Less than a microsecond sends nothing: `EXTEND_TIMEOUT_USEC=0` would ask for no time.
    ///
    /// # Errors
    ///
    /// As for [`stopping`](Self::stopping).
    pub fn extend_timeout(&self, by: Duration) -> Result<(), Error> {
        let usec = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        if usec == 0 {
            return Ok(());
        }
        self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"))
    }

    /// Sends the extension `policy` allows `elapsed` after the shutdown began, if any; returns
    /// what was sent (`None` once the ceiling is reached, and nothing is sent then).
    ///
    /// # Errors
    ///
    /// As for [`stopping`](Self::stopping).
    pub fn heartbeat(
        &self,
        policy: &ExtendPolicy,
        elapsed: Duration,
    ) -> Result<Option<Duration>, Error> {
        match policy.next_extension(elapsed) {
            Some(by) => self.extend_timeout(by).map(|()| Some(by)),
            None => Ok(None),
        }
    }

    /// The socket address the datagrams go to: an error for a path too long for `sun_path`
    /// or holding a NUL, and for an abstract name off Linux. Pure: fuzzed (`src/fuzz/`).
    pub(crate) fn socket_address(&self) -> io::Result<SocketAddr> {
        match &self.address {
            Address::Path(path) => SocketAddr::from_pathname(path),
            Address::Abstract(name) => abstract_address(name),
        }
    }

    /// Sends `state` as it is: one or more `KEY=value` lines (`READY=1`, `WATCHDOG=1`, …).
    ///
    /// # Errors
    ///
    /// As for [`stopping`](Self::stopping); `WriteZero` if the datagram was cut short.
    pub fn send(&self, state: &str) -> Result<(), Error> {
        self.send_datagram(state).map_err(|e| {
            let what = state.split('\n').next().unwrap_or_default();
            Error::io(format!("sd_notify {what} to {}", self.address), e)
        })
    }

    fn send_datagram(&self, state: &str) -> io::Result<()> {
        let address = self.socket_address()?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = socket.send_to_addr(state.as_bytes(), &address)?;
        if sent == state.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification cut short",
            ))
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets are Linux-only",
    ))
}

/// How far `EXTEND_TIMEOUT_USEC` heartbeats may push the stop deadline: `step` at a time, and
/// never past `ceiling` measured from the start of the shutdown.
///
/// A shutdown that makes progress can ask for more time; one that is wedged stops asking, and
/// one that keeps asking still ends by `ceiling`, so the supervisor keeps the last word.
///
/// ```
/// use std::time::Duration;
/// use shutdown_forensics::systemd::ExtendPolicy;
///
/// let s = Duration::from_secs;
/// let policy = ExtendPolicy::new(s(10), s(120));
/// assert_eq!(policy.next_extension(s(0)), Some(s(10)));
/// assert_eq!(policy.next_extension(s(115)), Some(s(5))); // up to the ceiling, not past it
/// assert_eq!(policy.next_extension(s(120)), None);
/// assert_eq!(policy.interval(), s(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendPolicy {
    step: Duration,
    ceiling: Duration,
}

impl ExtendPolicy {
    /// Extensions of `step` each, ending `ceiling` after the shutdown began.
    #[must_use]
    pub fn new(step: Duration, ceiling: Duration) -> Self {
        Self { step, ceiling }
    }

    /// How much each heartbeat extends by.
    #[must_use]
    pub fn step(&self) -> Duration {
        self.step
    }

    /// The latest deadline any extension may reach, from the start of the shutdown.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// How often to send heartbeats: half a step, so that one late heartbeat does not let the
    /// extension lapse.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.step / 2
    }

    /// The extension to send `elapsed` after the shutdown began: `step`, shortened so that
    /// `elapsed + extension` never passes `ceiling`; `None` once less than a microsecond (the
    /// unit of `EXTEND_TIMEOUT_USEC`) is left.
    #[must_use]
    pub fn next_extension(&self, elapsed: Duration) -> Option<Duration> {
        let left = self.ceiling.checked_sub(elapsed)?;
        let by = self.step.min(left);
        (by >= Duration::from_micros(1)).then_some(by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn extensions_never_pass_the_ceiling() {
        let policy = ExtendPolicy::new(s(10), s(45));
        for ms in (0..60_000).step_by(250) {
            let elapsed = Duration::from_millis(ms);
            if let Some(by) = policy.next_extension(elapsed) {
                assert!(by <= s(10));
                assert!(elapsed + by <= s(45), "{elapsed:?} + {by:?}");
            } else {
                assert!(elapsed >= s(45), "stopped early at {elapsed:?}");
            }
        }
        assert_eq!(policy.next_extension(s(40)), Some(s(5)));
        assert_eq!(policy.next_extension(s(45)), None);
        assert_eq!(policy.next_extension(s(999)), None);
    }

    #[test]
    fn a_zero_step_or_ceiling_never_extends() {
        assert_eq!(ExtendPolicy::new(s(0), s(60)).next_extension(s(1)), None);
        assert_eq!(ExtendPolicy::new(s(10), s(0)).next_extension(s(0)), None);
    }

    #[test]
    fn nothing_under_a_microsecond_is_ever_sent_as_extend_timeout_usec_0() {
        let ns = Duration::from_nanos;
        // A tiny step, and the last sliver before the ceiling: both would read as 0 µs.
        assert_eq!(ExtendPolicy::new(ns(500), s(60)).next_extension(s(1)), None);
        assert_eq!(
            ExtendPolicy::new(s(10), s(60)).next_extension(s(60) - ns(999)),
            None
        );
        assert_eq!(
            ExtendPolicy::new(s(10), s(60)).next_extension(s(60) - ns(1000)),
            Some(ns(1000))
        );
        // And the notifier itself sends nothing for less than a microsecond.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let n = Notifier::new(&path).unwrap();
        n.extend_timeout(ns(999)).unwrap();
        n.extend_timeout(Duration::ZERO).unwrap();
        n.extend_timeout(ns(1500)).unwrap();
        let mut buf = [0u8; 64];
        let got = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"EXTEND_TIMEOUT_USEC=1");
        assert!(listener.recv(&mut buf).is_err(), "a second datagram");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            Notifier::new("/run/x").map(|n| n.address),
            Some(Address::Path("/run/x".into()))
        );
        assert_eq!(
            Notifier::new("@x").map(|n| n.address),
            Some(Address::Abstract(b"x".to_vec()))
        );
        assert_eq!(Notifier::new("@"), None);
        assert_eq!(Notifier::new(""), None);
        assert_eq!(Notifier::new("vsock:2:1234"), None);
    }
}
