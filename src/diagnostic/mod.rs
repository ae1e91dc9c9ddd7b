//! What else was running: a bounded, detached snapshot of the host at the stop.
//!
//! On the first stop signal the signal helper can spawn a diagnostic child
//! ([`ForensicsBuilder::with_diagnostic`](crate::ForensicsBuilder::with_diagnostic)) that
//! appends the process table (names only, unless asked), our process tree, the load and the
//! kernel's last messages to a private log file (0600), headed by our pid, the signal and a
//! correlation id that the `Shutdown context` line carries too. Nothing waits for it: the spawn
//! returns as soon as the child exists, and the child is killed at its timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use shutdown_forensics::diagnostic::{spawn_diagnostic_with, DiagnosticOptions};
//!
//! # fn main() -> Result<(), shutdown_forensics::Error> {
//! let options = DiagnosticOptions::new("logs/shutdown-diag.log")
//!     .with_signal_name("SIGTERM")
//!     .with_timeout(Duration::from_secs(3));
//! let diag = spawn_diagnostic_with(&options)?;
//! println!("diagnostic pid {} ({})", diag.pid(), diag.correlation_id());
//! # Ok(()) }
//! ```
//!
//! It works with less when `timeout`, `ps`, `pstree` or `dmesg` are missing, and says which
//! section could not be read. Each run appends at most [`DEFAULT_SIZE_CAP`]; the file is
//! rotated past [`DEFAULT_ROTATE_AT`].
//
// For contributors: the child runs in its own process group with a clean environment; every
// value reaches it as a positional argument, never as shell text. A reaper thread in this
// process waits for it, kills the whole group at the timeout and reaps it, so no zombie is left
// behind. If this process exits first, the child's own watchdog (`sleep` + `kill 0`, when
// `sleep` exists) bounds it instead.

#[cfg(unix)]
mod logfile;
mod reaper;
#[cfg(unix)]
mod script;

#[cfg(unix)]
pub(crate) use script::generate_correlation_id;

pub use reaper::DiagnosticOutcome;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// Default timeout after which the whole diagnostic process group is killed: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on what one diagnostic run may append to the log: 256 KiB.
pub const DEFAULT_SIZE_CAP: u64 = 256 * 1024;
/// Default size past which the log is rotated to `<path>.1` before a run: 4 MiB.
pub const DEFAULT_ROTATE_AT: u64 = 4 * 1024 * 1024;
/// Smallest accepted size cap; the cap is applied in 512-byte blocks.
#[cfg(unix)]
const MIN_SIZE_CAP: u64 = 1024;

/// What a diagnostic run should capture and where it goes.
///
/// Built by value: start from [`DiagnosticOptions::new`] and chain `with_*` setters.
///
/// ```
/// use std::time::Duration;
/// use shutdown_forensics::diagnostic::DiagnosticOptions;
///
/// let options = DiagnosticOptions::new("/var/log/myservice/shutdown-diag.log")
///     .with_signal_name("SIGTERM")
///     .with_timeout(Duration::from_secs(3))
///     .with_correlation_id("7f3a9c");
/// assert_eq!(options.timeout(), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DiagnosticOptions {
    log_path: PathBuf,
    signal_name: String,
    timeout: Duration,
    correlation_id: Option<String>,
    target_pid: Option<u32>,
    size_cap: u64,
    rotate_at: u64,
    include_cmdline: bool,
    search_path: Option<OsString>,
}

impl DiagnosticOptions {
    /// Options that append to `log_path`, with every other setting at its default.
    pub fn new(log_path: impl Into<PathBuf>) -> Self {
        Self {
            log_path: log_path.into(),
            signal_name: "UNKNOWN".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            correlation_id: None,
            target_pid: None,
            size_cap: DEFAULT_SIZE_CAP,
            rotate_at: DEFAULT_ROTATE_AT,
            include_cmdline: false,
            search_path: None,
        }
    }

    /// The signal named in the header line (`=== shutdown diagnostic @ SIGTERM ===`).
    /// Default: `"UNKNOWN"`. Control characters are replaced by `?` and the name is cut to
    /// 128 characters; shell syntax in it is inert.
    pub fn with_signal_name(mut self, name: impl Into<String>) -> Self {
        self.signal_name = name.into();
        self
    }

    /// How long the diagnostic may run before its whole process group is killed.
    /// Default: [`DEFAULT_TIMEOUT`] (5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The id written in the header, so the log event of the signal and the diagnostic can be
    /// joined. Default: a fresh random 16-hex-digit id per run, see [`Diagnostic::correlation_id`].
    /// Sanitized like the signal name.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The process whose tree is shown and whose pid is in the header.
    /// Default: this process ([`std::process::id`]).
    pub fn with_target_pid(mut self, pid: u32) -> Self {
        self.target_pid = Some(pid);
        self
    }

    /// The most one run may append to the log, in bytes (enforced as a file size limit in
    /// 512-byte blocks, at least 1 KiB; the crate may add one short trailer line after it).
    /// Default: [`DEFAULT_SIZE_CAP`] (256 KiB).
    pub fn with_size_cap(mut self, bytes: u64) -> Self {
        self.size_cap = bytes;
        self
    }

    /// Rotate the log to `<path>.1` (replacing an older `.1`) when it is larger than this
    /// before a run. Default: [`DEFAULT_ROTATE_AT`] (4 MiB).
    pub fn with_rotate_at(mut self, bytes: u64) -> Self {
        self.rotate_at = bytes;
        self
    }

    /// Show full command lines (`ps … args`, `pstree -a`) instead of command names.
    /// Default: `false`, because other processes' arguments may hold secrets.
    pub fn with_include_cmdline(mut self, include: bool) -> Self {
        self.include_cmdline = include;
        self
    }

    /// The exact `PATH` the diagnostic searches for `ps`, `pstree`, `dmesg`, `journalctl`,
    /// `tail` and `sleep`. Default: this process's `PATH` followed by
    /// `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`.
    pub fn with_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.search_path = Some(path.into());
        self
    }

    /// The log file path.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The timeout after which the diagnostic is killed.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A running (or finished) diagnostic child. Dropping it does not stop or detach anything:
/// the reaper thread keeps watching the child.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pid: u32,
    correlation_id: String,
    outcome: reaper::OutcomeCell,
}

impl Diagnostic {
    /// The pid of the diagnostic shell, which is also its process group id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The correlation id written in the header (caller-supplied or generated, sanitized).
    #[must_use]
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// How the run ended, or `None` while it is still running. Never blocks.
    #[must_use]
    pub fn outcome(&self) -> Option<DiagnosticOutcome> {
        self.outcome.get()
    }

    /// Wait up to `limit` for the run to end (it ends by the configured timeout at the latest,
    /// while this process lives). `None` if it is still running after `limit`.
    #[must_use]
    pub fn wait_timeout(&self, limit: Duration) -> Option<DiagnosticOutcome> {
        self.outcome.wait_timeout(limit)
    }
}

/// Spawn the detached diagnostic with default options and return the child's pid.
///
/// Returns within milliseconds; the child appends to `log_path` (created 0600) and is killed
/// with its whole process group after `timeout`. See [`spawn_diagnostic_with`] for details.
///
/// # Errors
///
/// As [`spawn_diagnostic_with`].
///
/// ```no_run
/// use std::{path::Path, time::Duration};
///
/// let pid = shutdown_forensics::diagnostic::spawn_diagnostic(
///     Path::new("/var/log/myservice/shutdown-diag.log"),
///     "SIGTERM",
///     Duration::from_secs(5),
/// )?;
/// # let _ = pid;
/// # Ok::<(), shutdown_forensics::Error>(())
/// ```
pub fn spawn_diagnostic(
    log_path: &Path,
    signal_name: &str,
    timeout: Duration,
) -> Result<u32, Error> {
    let options = DiagnosticOptions::new(log_path)
        .with_signal_name(signal_name)
        .with_timeout(timeout);
    spawn_diagnostic_with(&options).map(|diagnostic| diagnostic.pid())
}

/// Spawn the detached diagnostic described by `options`.
///
/// Before spawning, the log is checked and opened: a symlink or a non-regular file at the
/// path is refused, a log larger than the rotation size is renamed to `<path>.1`, and the file
/// is opened `O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC` with mode 0600 (an existing file with
/// a wider mode is `fchmod`ed to 0600). The child is `/bin/sh` in its own process group, with
/// stdin from `/dev/null`, stdout and stderr on the log, the working directory `/` and an
/// environment of only `PATH` and `LC_ALL=C`.
///
/// ```
/// use std::time::Duration;
/// use shutdown_forensics::diagnostic::{spawn_diagnostic_with, DiagnosticOptions, DiagnosticOutcome};
///
/// let dir = std::env::temp_dir().join(format!("sf-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let log = dir.join("diag.log");
/// let diagnostic = spawn_diagnostic_with(
///     &DiagnosticOptions::new(&log).with_signal_name("SIGTERM").with_timeout(Duration::from_secs(5)),
/// )?;
/// let outcome = diagnostic.wait_timeout(Duration::from_secs(10));
/// assert!(matches!(outcome, Some(DiagnosticOutcome::Exited(_))));
/// assert!(std::fs::read_to_string(&log)?.contains(diagnostic.correlation_id()));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// At once, without spawning: the log path is a symlink or not a regular file, cannot be
/// rotated, created or opened (missing directories above it are created, mode 0700; one that
/// cannot be is named in the error); `/bin/sh` cannot be spawned;
/// the reaper thread cannot be started (the child is then killed and reaped before returning).
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) on platforms other than Unix.
pub fn spawn_diagnostic_with(options: &DiagnosticOptions) -> Result<Diagnostic, Error> {
    imp::spawn(options).map_err(|e| {
        Error::io(
            format!("spawn shutdown diagnostic {}", options.log_path().display()),
            e,
        )
    })
}

#[cfg(unix)]
mod imp {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::{logfile, reaper, script, Diagnostic, DiagnosticOptions, MIN_SIZE_CAP};

    pub(super) fn spawn(options: &DiagnosticOptions) -> std::io::Result<Diagnostic> {
        let log = logfile::open(&options.log_path, options.rotate_at)?;
        let correlation_id = match &options.correlation_id {
            Some(id) => script::sanitize(id),
            None => script::generate_correlation_id(),
        };
        let size_limit = log.len.saturating_add(options.size_cap.max(MIN_SIZE_CAP));
        let args = script::Arguments {
            signal_name: script::sanitize(&options.signal_name),
            target_pid: options.target_pid.unwrap_or_else(std::process::id),
            correlation_id: &correlation_id,
            timeout: options.timeout,
            include_cmdline: options.include_cmdline,
            size_limit,
        };
        let stdout = log.file.try_clone()?;
        let stderr = log.file.try_clone()?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script::SCRIPT)
            .args(args.to_argv())
            .env_clear()
            .env("PATH", script::search_path(options.search_path.as_deref()))
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        let outcome = reaper::start(
            child,
            reaper::Watch {
                timeout: options.timeout,
                trailer: log.file,
                size_limit,
                correlation_id: correlation_id.clone(),
            },
        )?;
        Ok(Diagnostic {
            pid,
            correlation_id,
            outcome,
        })
    }
}

#[cfg(not(unix))]
mod imp {
    use super::{Diagnostic, DiagnosticOptions};

    pub(super) fn spawn(_options: &DiagnosticOptions) -> std::io::Result<Diagnostic> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the shutdown diagnostic needs a Unix /bin/sh",
        ))
    }
}
