//! The threads the layer starts: a layer that tracks no span starts no clock thread; the
//! default one starts one `shutdown-clock` thread, once per process. (One test in its own
//! binary: no other test's layer is in this process.)

use shutdown_forensics::ShutdownLayer;

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn only_a_layer_that_tracks_spans_starts_the_clock_thread_and_only_one() {
    let off = ShutdownLayer::builder().without_span_tracking().build();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        threads_named("shutdown-clock"),
        0,
        "tracking off: no thread"
    );
    let on = ShutdownLayer::new();
    let again = ShutdownLayer::new();
    // The thread is spawned at once; give it a moment to name itself in /proc.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while threads_named("shutdown-clock") == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        threads_named("shutdown-clock"),
        1,
        "one clock for the process"
    );
    drop((off, on, again));
}
