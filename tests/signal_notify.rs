//! sd_notify from the signal helper, to a real unix datagram socket bound by the test and
//! named by `NOTIFY_SOCKET` (a path here; `signal_notify_abstract.rs` has the `@` form).
//!
//! `NOTIFY_SOCKET` and signal handlers are process-global: ONE test in this file.
//!
//! Real or fake: the test's socket stands in for systemd (exact datagrams and their order,
//! extensions capped by their ceiling); a real systemd acting on them: `tests/systemd_real.rs`.
#![cfg(feature = "systemd")]

mod signal_notify_common;
mod support;

use std::os::unix::net::UnixDatagram;

#[test]
fn stopping_status_and_bounded_extensions_reach_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    // Before install: the notifier is read from the environment then.
    std::env::set_var("NOTIFY_SOCKET", &path);
    signal_notify_common::run(socket);
}
