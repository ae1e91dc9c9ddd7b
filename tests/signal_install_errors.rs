//! `install` refuses signals it cannot listen for with an error, never a panic, and leaves
//! every signal's disposition as it was (a half-registered set would swallow SIGTERM: signal-hook
//! never restores the default action once it took a signal over).
//!
//! Nothing in this file installs successfully, so its tests may share the process.

use shutdown_forensics::{ErrorKind, Forensics};

/// The current handler of `sig`, as `sigaction(2)` reports it.
fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries; `old` is a valid, writable `sigaction`.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "sigaction query of {sig}");
    old.sa_sigaction
}

fn install_err(signals: &[i32]) -> ErrorKind {
    match Forensics::builder()
        .with_signals(signals)
        .with_stop_budget(None, std::time::Duration::ZERO)
        .install()
    {
        Ok(_) => panic!("install({signals:?}) succeeded"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.kind()
        }
    }
}

#[test]
fn forbidden_or_invalid_signals_are_errors_not_panics() {
    assert_eq!(install_err(&[libc::SIGKILL]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[libc::SIGSTOP]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[libc::SIGSEGV]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[0]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[-1]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[1000]), ErrorKind::InvalidInput);
    assert_eq!(install_err(&[i32::MAX]), ErrorKind::InvalidInput);
}

#[test]
fn a_bad_signal_in_the_set_leaves_the_good_ones_untouched() {
    assert_eq!(handler_of(libc::SIGTERM), libc::SIG_DFL);
    assert_eq!(handler_of(libc::SIGINT), libc::SIG_DFL);
    assert_eq!(
        install_err(&[libc::SIGTERM, libc::SIGINT, libc::SIGKILL]),
        ErrorKind::InvalidInput
    );
    assert_eq!(handler_of(libc::SIGTERM), libc::SIG_DFL);
    assert_eq!(handler_of(libc::SIGINT), libc::SIG_DFL);
}

/// glibc keeps 32 and 33 for itself (threads, setxid): `sigaction` refuses them at run time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_signal_the_libc_reserves_leaves_the_good_ones_untouched() {
    assert_eq!(handler_of(libc::SIGHUP), libc::SIG_DFL);
    assert_eq!(install_err(&[libc::SIGHUP, 32]), ErrorKind::InvalidInput);
    assert_eq!(handler_of(libc::SIGHUP), libc::SIG_DFL);
}
