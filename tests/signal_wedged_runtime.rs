//! Capture does not need a healthy async runtime: the listener is its own thread.
//!
//! One install per process (signal handlers are process-global): ONE test in this file.

mod support;

use std::sync::Arc;

use support::{install_with_capture, kill_us, wait_until, LOOSE};

#[test]
fn the_context_is_logged_while_the_only_runtime_thread_is_blocked() {
    let (forensics, cap) = install_with_capture();
    let signal = forensics.signal();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (logged_while_wedged, from_task) = rt.block_on(async {
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.recv().await }
        });
        let mut kill = kill_us("TERM");
        // Wedge the runtime's only thread: no task, timer or I/O driver runs until this ends.
        let logged = wait_until(LOOSE, || cap.text().contains("Shutdown context"));
        kill.wait().unwrap();
        (logged, waiter.await.unwrap())
    });
    assert!(logged_while_wedged, "{}", cap.text());
    // Once the runtime runs again, the task waiting on it wakes with the same context.
    assert!(Arc::ptr_eq(&from_task, &signal.context().unwrap()));
    assert_eq!(from_task.signal, "SIGTERM");
}
