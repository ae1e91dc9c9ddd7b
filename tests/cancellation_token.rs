//! Feature `tokio-util`: `ShutdownSignal::cancellation_token` is cancelled by a real SIGTERM
//! from another process, and cancelling a handed-out token does not start the shutdown.
//!
//! One install per process (signal handlers are process-global): ONE test in this file.
#![cfg(feature = "tokio-util")]

mod support;

use support::{install_with_capture, kill_us, LOOSE};

#[test]
fn a_sigterm_cancels_the_handed_out_tokens() {
    let (forensics, cap) = install_with_capture();
    let signal = forensics.signal();

    // Cancelling a handed-out token stops its holders only.
    let own = signal.cancellation_token();
    own.cancel();
    assert_eq!(signal.signal_count(), 0);
    assert!(signal.context().is_none());

    let token = signal.cancellation_token();
    assert!(!token.is_cancelled());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let worker = token.clone();
    let task = rt.spawn(async move { worker.cancelled().await });
    let mut kill = kill_us("TERM");
    let done = rt.block_on(async { tokio::time::timeout(LOOSE, task).await.is_ok() });
    kill.wait().unwrap();
    assert!(done, "the task never saw the cancellation");
    assert!(token.is_cancelled());
    // By then the context was captured and logged.
    let ctx = signal.context().expect("context before the cancellation");
    assert_eq!(ctx.signal, "SIGTERM");
    assert!(cap.wait_for("Shutdown context"));
    // A token asked for afterwards is already cancelled.
    assert!(signal.cancellation_token().is_cancelled());
}
