//! Signal names and the sender of a signal, as the kernel reported it in `siginfo_t`.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Standard signals in number order, as `(number, name)`.
const STANDARD: &[(libc::c_int, &str)] = &[
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// The real-time signal range `SIGRTMIN..=SIGRTMAX` as the C library reports it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn realtime_range() -> Option<(libc::c_int, libc::c_int)> {
    Some((libc::SIGRTMIN(), libc::SIGRTMAX()))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn realtime_range() -> Option<(libc::c_int, libc::c_int)> {
    None
}

/// The conventional name of signal `num`: `"SIGTERM"` for 15, `"SIGRTMIN+3"` for a real-time
/// signal, `"signal#N"` for anything this platform does not define.
///
/// ```
/// use shutdown_forensics::context::signal_name;
/// assert_eq!(signal_name(15), "SIGTERM");
/// assert_eq!(signal_name(9999), "signal#9999");
/// ```
#[must_use]
pub fn signal_name(num: i32) -> Cow<'static, str> {
    if let Some((_, name)) = STANDARD.iter().find(|(n, _)| *n == num) {
        return Cow::Borrowed(name);
    }
    if let Some((min, max)) = realtime_range() {
        if num == min {
            return Cow::Borrowed("SIGRTMIN");
        }
        if num > min && num <= max {
            return Cow::Owned(format!("SIGRTMIN+{}", num - min));
        }
    }
    Cow::Owned(format!("signal#{num}"))
}

/// The name of an optional signal: [`signal_name`] for `Some`, `"UNKNOWN"` for `None`.
#[must_use]
pub fn signal_name_or_unknown(num: Option<i32>) -> Cow<'static, str> {
    num.map_or(Cow::Borrowed("UNKNOWN"), signal_name)
}

/// The number of a signal given by name: `"SIGTERM"`, `"TERM"`, `"term"`, `"15"`,
/// `"SIGRTMIN+3"` or `"signal#15"`. `None` when the name is not a signal here.
///
/// ```
/// use shutdown_forensics::context::signal_number;
/// assert_eq!(signal_number("SIGTERM"), Some(libc::SIGTERM));
/// assert_eq!(signal_number("hup"), Some(libc::SIGHUP));
/// assert_eq!(signal_number("SIGNOPE"), None);
/// ```
#[must_use]
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (n > 0).then_some(n);
    }
    if let Some(n) = name
        .strip_prefix("signal#")
        .and_then(|n| n.parse::<i32>().ok())
    {
        return (n > 0).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((num, _)) = STANDARD.iter().find(|(_, n)| &n[3..] == bare) {
        return Some(*num);
    }
    let (min, max) = realtime_range()?;
    let offset = match bare.strip_prefix("RTMIN") {
        Some("") => 0,
        Some(rest) => rest.strip_prefix('+')?.parse::<i32>().ok()?,
        None => return None,
    };
    let num = min.checked_add(offset)?;
    (offset >= 0 && num <= max).then_some(num)
}

/// How a signal came to be, from `siginfo_t::si_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignalCause {
    /// `kill(2)` (`SI_USER`): `kill`, `systemctl stop`, `docker stop`, the kubelet.
    Kill,
    /// `tkill(2)`/`tgkill(2)` (`SI_TKILL`): `pthread_kill`, `raise`.
    Tkill,
    /// `sigqueue(3)` (`SI_QUEUE`).
    Sigqueue,
    /// The kernel itself (`SI_KERNEL`): e.g. the terminal's Ctrl-C, a hangup, the OOM path.
    Kernel,
    /// Any other or unknown code.
    Other,
}

impl SignalCause {
    /// Classifies a raw `si_code`.
    #[must_use]
    pub fn from_si_code(code: i32) -> Self {
        match code {
            si_code::USER => Self::Kill,
            si_code::QUEUE => Self::Sigqueue,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            si_code::TKILL => Self::Tkill,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            si_code::KERNEL => Self::Kernel,
            _ => Self::Other,
        }
    }

    /// True when the cause carries a sender pid and uid (`kill`, `tkill`, `sigqueue`).
    #[must_use]
    pub fn has_sender(self) -> bool {
        matches!(self, Self::Kill | Self::Tkill | Self::Sigqueue)
    }

    /// The stable lowercase word used in log lines: `kill`, `tkill`, `sigqueue`, `kernel`, `other`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Tkill => "tkill",
            Self::Sigqueue => "sigqueue",
            Self::Kernel => "kernel",
            Self::Other => "other",
        }
    }
}

/// `si_code` values. The libc crate exports them only for some targets (not `SI_USER` on the
/// BSDs, not `SI_KERNEL` anywhere), so they are spelled out from the system headers.
mod si_code {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) const USER: i32 = 0;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) const QUEUE: i32 = -1;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) const TKILL: i32 = -6;
    /// `<asm-generic/siginfo.h>`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) const KERNEL: i32 = 0x80;
    /// `<sys/signal.h>` on FreeBSD, NetBSD, OpenBSD and macOS.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(super) const USER: i32 = 0x10001;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(super) const QUEUE: i32 = 0x10002;
}

impl fmt::Display for SignalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The process that sent a signal, as far as the kernel told us (`si_pid`, `si_uid`, `si_code`)
/// plus what its `/proc` entry still said when we looked.
///
/// `pid == 0` never means "ourselves": the sender lives outside our pid namespace (a container
/// runtime, the host's systemd) or the kernel sent the signal. See [`SignalSender::is_outside`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignalSender {
    /// `si_pid`: the sender's pid in our pid namespace; 0 when outside it or the kernel.
    pub pid: u32,
    /// `si_uid`: the sender's real uid.
    pub uid: u32,
    /// How the signal was sent.
    pub cause: SignalCause,
    /// The sender's `comm` (escaped when logged), when its `/proc` entry could still be read.
    /// A sender that already exited but is not yet reaped (a zombie) still has its name.
    pub name: Option<String>,
    /// The sender's parent, when readable: tells `kill` typed in a shell from one run by a
    /// supervisor.
    pub ppid: Option<u32>,
    /// The sender's state letter when read (`Z` for an exited, unreaped sender).
    pub state: Option<char>,
}

impl SignalSender {
    /// Builds a sender from the raw `siginfo_t` parts without touching `/proc`.
    #[must_use]
    pub fn from_raw(pid: i32, uid: u32, si_code: i32) -> Self {
        Self {
            pid: u32::try_from(pid).unwrap_or(0),
            uid,
            cause: SignalCause::from_si_code(si_code),
            name: None,
            ppid: None,
            state: None,
        }
    }

    /// Builds a sender from the raw `siginfo_t` parts and reads its `/proc` entry at once:
    /// a `kill` process exits within microseconds, so this should run before anything else.
    /// A sender that already exited keeps `name: None`; a zombie still has its name.
    #[must_use]
    pub fn from_siginfo(pid: i32, uid: u32, si_code: i32) -> Self {
        Self::from_proc(pid, uid, SignalCause::from_si_code(si_code), Instant::now())
    }

    /// [`Self::from_siginfo`] with the cause classified and the signal's receipt time: a
    /// process whose start time is later than the receipt holds a recycled pid and is not the
    /// sender, so it is not named.
    pub(crate) fn from_proc(pid: i32, uid: u32, cause: SignalCause, received: Instant) -> Self {
        Self::from_proc_with(pid, uid, cause, received, |pid, buf| {
            crate::sys::proc::ProcRoot::default().stat(Some(pid), buf)
        })
    }

    /// [`Self::from_proc`] with the sender's `stat` read by `read_stat` (e.g. through a file
    /// kept open for the parent, the usual sender under a supervisor).
    pub(crate) fn from_proc_with(
        pid: i32,
        uid: u32,
        cause: SignalCause,
        received: Instant,
        read_stat: impl FnOnce(u32, &mut Vec<u8>) -> Option<crate::sys::proc::Stat>,
    ) -> Self {
        let mut sender = Self::from_raw(pid, uid, 0);
        sender.cause = cause;
        if sender.pid == 0 {
            return sender;
        }
        let mut buf = Vec::with_capacity(512);
        let Some(stat) = read_stat(sender.pid, &mut buf) else {
            return sender;
        };
        let received_ticks = crate::sys::proc::boot_ticks_now()
            .zip(crate::sys::proc::clock_ticks_per_sec())
            .map(|(now, hz)| now.saturating_sub((received.elapsed().as_secs_f64() * hz) as u64));
        if received_ticks.is_some_and(|at| stat.start_time > at) {
            return sender; // started after the signal arrived: the pid was reused
        }
        sender.name = Some(stat.comm);
        sender.ppid = Some(stat.ppid);
        sender.state = Some(stat.state);
        sender
    }

    /// True when the sender cannot be named from here: `si_pid == 0` means the signal came
    /// from outside our pid namespace or from the kernel, never from this process.
    #[must_use]
    pub fn is_outside(&self) -> bool {
        self.pid == 0
    }

    /// The name to show in a log line: the `comm` when known, `kernel` or `outside-pidns`
    /// when the pid is 0, `unknown` when the entry was already gone.
    #[must_use]
    pub fn display_name(&self) -> &str {
        match (&self.name, self.pid, self.cause) {
            (Some(name), _, _) => name,
            (None, 0, SignalCause::Kernel) => "kernel",
            (None, 0, _) => "outside-pidns",
            (None, _, _) => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_numbers() {
        for (num, name) in STANDARD {
            assert_eq!(signal_name(*num), *name);
            assert_eq!(signal_number(name), Some(*num));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn realtime_signals_are_named_relative_to_rtmin() {
        let min = libc::SIGRTMIN();
        assert_eq!(signal_name(min), "SIGRTMIN");
        assert_eq!(signal_name(min + 3), "SIGRTMIN+3");
        assert_eq!(signal_number("SIGRTMIN+3"), Some(min + 3));
        assert_eq!(
            signal_name(libc::SIGRTMAX() + 1),
            format!("signal#{}", libc::SIGRTMAX() + 1)
        );
    }

    #[test]
    fn unknown_and_none() {
        assert_eq!(signal_name(9999), "signal#9999");
        assert_eq!(signal_name(0), "signal#0");
        assert_eq!(signal_name(-1), "signal#-1");
        assert_eq!(signal_name_or_unknown(None), "UNKNOWN");
        assert_eq!(signal_number(""), None);
        assert_eq!(signal_number("-15"), None);
        assert_eq!(signal_number("SIGRTMIN+999"), None);
        assert_eq!(signal_number("SIGRTMIN-1"), None);
    }

    #[test]
    fn a_recycled_pid_is_not_named() {
        // Our own process started before "now" and is named; a receipt time earlier than our
        // start (as for a pid recycled after the signal) leaves the sender unnamed.
        let me = std::process::id() as i32;
        let named = SignalSender::from_proc(me, 0, SignalCause::Kill, Instant::now());
        assert!(named.name.is_some());
        let age = crate::sys::proc::boot_ticks_now().zip(crate::sys::proc::clock_ticks_per_sec());
        let mut buf = Vec::new();
        let start = crate::sys::proc::ProcRoot::default()
            .stat(None, &mut buf)
            .map(|s| s.start_time);
        if let (Some((now, hz)), Some(start)) = (age, start) {
            // A receipt one second before we started.
            let before_start = std::time::Duration::from_secs_f64((now - start) as f64 / hz + 1.0);
            if let Some(received) = Instant::now().checked_sub(before_start) {
                let s = SignalSender::from_proc(me, 0, SignalCause::Kill, received);
                assert_eq!(s.name, None);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn si_codes_match_the_c_library() {
        assert_eq!(si_code::USER, libc::SI_USER);
        assert_eq!(si_code::QUEUE, libc::SI_QUEUE);
        assert_eq!(si_code::TKILL, libc::SI_TKILL);
    }

    #[test]
    fn pid_zero_is_never_self() {
        let s = SignalSender::from_raw(0, 0, si_code::USER);
        assert!(s.is_outside());
        assert_eq!(s.display_name(), "outside-pidns");
        assert_eq!(s.cause, SignalCause::Kill);
        #[cfg(target_os = "linux")]
        {
            let k = SignalSender::from_raw(0, 0, si_code::KERNEL);
            assert_eq!(k.cause, SignalCause::Kernel);
            assert_eq!(k.display_name(), "kernel");
            assert_eq!(
                SignalCause::from_si_code(libc::SI_TKILL),
                SignalCause::Tkill
            );
        }
        assert_eq!(
            SignalCause::from_si_code(si_code::QUEUE),
            SignalCause::Sigqueue
        );
        assert_eq!(SignalCause::from_si_code(12345), SignalCause::Other);
    }
}
