//! sd_notify from the signal helper to a Linux abstract socket (`NOTIFY_SOCKET=@name`), which
//! sd-notify 0.5 cannot reach.
//!
//! `NOTIFY_SOCKET` and signal handlers are process-global: ONE test in this file.
//!
//! Real or fake: the test's socket stands in for systemd (systemd 252 itself binds a path socket,
//! so the abstract form can only be proven this way); a real systemd: `tests/systemd_real.rs`.
#![cfg(all(feature = "systemd", target_os = "linux"))]

mod signal_notify_common;
mod support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

#[test]
fn stopping_status_and_bounded_extensions_reach_an_abstract_socket() {
    let name = format!("shutdown-forensics-signal-notify-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
    signal_notify_common::run(socket);
}
