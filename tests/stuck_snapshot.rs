//! Where and why a shutdown is stuck, with real threads, real sockets and real spans in this
//! process: a request waiting on a peer that never answers, a thread blocked in `read` on a
//! silent socket, a mutex held by another thread, an idle instrumented task, `thread::sleep`
//! on a runtime worker, a spinning thread, a `connect` to a listener whose backlog is full.
//! Each asserts the syscall, the peer and the span named in the snapshot, the log line and
//! the report. (The SIGKILL-and-next-start scenario runs the gateway: `stuck_gateway.rs`.)

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shutdown_forensics::report::{StuckReason, StuckSnapshot};
use shutdown_forensics::{phase, ShutdownHandle, ShutdownLayer};
use support::{dispatch, wait_until, Capture, LOOSE};
use tracing::Dispatch;

fn layer() -> (Dispatch, ShutdownHandle, Capture) {
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let cap = Capture::default();
    (dispatch(layer, &cap), handle, cap)
}

/// The one `stuck` line of the capture.
fn stuck_line(cap: &Capture) -> String {
    let lines: Vec<String> = cap
        .lines()
        .into_iter()
        .filter(|l| l.contains(" stuck ("))
        .collect();
    assert_eq!(lines.len(), 1, "one stuck line: {lines:#?}");
    lines[0].clone()
}

fn thread_named<'a>(
    snap: &'a StuckSnapshot,
    name: &str,
) -> &'a shutdown_forensics::report::ThreadState {
    snap.threads
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("thread {name} in {:#?}", snap.threads))
}

/// A connected client socket whose peer (a listener that never accepts) never sends.
fn silent_peer() -> (TcpListener, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (listener, client)
}

#[test]
fn a_request_waiting_on_a_silent_peer_is_named_with_its_thread_syscall_and_peer() {
    let (d, handle, cap) = layer();
    let (listener, client) = silent_peer();
    let peer: SocketAddr = listener.local_addr().unwrap();
    let fd = client.as_raw_fd();
    let (entered_tx, entered) = mpsc::channel();
    let d2 = d.clone();
    // The request began before the stop and now waits on its peer, on a thread of its own.
    let worker = std::thread::Builder::new()
        .name("req-worker".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let span =
                    tracing::info_span!("request", method = "POST", path = "/upload", peer = %peer);
                let _e = span.enter();
                entered_tx.send(()).unwrap();
                let mut client = client;
                let mut buf = [0u8; 16];
                let _ = client.read(&mut buf); // returns when the test shuts the socket down
            });
        })
        .unwrap();
    entered.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _drain = phase!("drain").entered();
        handle.stuck_snapshot()
    });

    assert_eq!(snap.phase.as_deref(), Some("drain"));
    assert_eq!(snap.reason, StuckReason::OnDemand);
    // The span: opened before the stop, still entered on its thread.
    let span = snap
        .spans
        .iter()
        .find(|s| s.name == "request")
        .expect("request span");
    let fields = span
        .fields
        .as_deref()
        .expect("fields captured by the layer");
    assert_eq!(fields, format!("method=POST path=/upload peer={peer}"));
    assert_eq!(span.idle_s, None, "entered: running, not idle");
    assert!(span.age_s >= 0.2, "{span:?}");
    assert!(span
        .last_thread
        .as_deref()
        .unwrap()
        .starts_with("req-worker (tid "));
    // The thread: blocked in a receive on that very socket, whose peer is the listener.
    let t = thread_named(&snap, "req-worker");
    let syscall = t.syscall.as_deref().unwrap();
    assert!(["read", "recvfrom"].contains(&syscall), "{t:?}");
    assert_eq!(
        t.target.as_deref(),
        Some(format!("fd {fd} -> {peer} ESTABLISHED").as_str())
    );
    assert!(t.cpu_pct.unwrap() < 5.0, "{t:?}");
    // The socket, with TCP_INFO's silence.
    let s = snap
        .sockets
        .iter()
        .find(|s| s.fd == fd)
        .expect("the socket");
    assert_eq!(s.peer.as_deref(), Some(peer.to_string().as_str()));
    assert_eq!(s.state.as_deref(), Some("ESTABLISHED"));
    assert!(s.last_recv_s.unwrap() >= 0.2, "{s:?}");
    // The joined finding, first: span, thread, syscall, peer.
    let first = &snap.findings[0];
    assert!(
        first.starts_with("request{")
            && first.contains(" running ")
            && first.contains("req-worker (tid"),
        "{first}"
    );
    assert!(
        first.contains(&format!("(fd {fd} -> {peer} ESTABLISHED)")),
        "{first}"
    );
    assert!(first.contains("no data for"), "{first}");
    // One WARN line with the first findings and the counts.
    let line = stuck_line(&cap);
    assert!(
        line.contains("WARN") && line.contains("drain stuck (on demand): request{"),
        "{line}"
    );
    assert!(
        line.contains("blocked_threads=") && line.contains("open_spans="),
        "{line}"
    );
    // The report keeps it, and the Chrome trace has an instant event.
    let report = handle.report();
    assert_eq!(report.stuck.len(), 1);
    assert_eq!(report.stuck[0].findings, snap.findings);
    assert!(report.to_chrome_trace().contains("\"drain stuck\""));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["stuck"][0]["phase"], "drain");
    assert!(
        format!("{report:#}").contains("-> stuck at +"),
        "{report:#}"
    );

    client_shutdown(fd);
    worker.join().unwrap();
}

fn client_shutdown(fd: i32) {
    // SAFETY: shutdown(2) on a descriptor this test owns (its thread still holds the stream).
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[test]
fn a_thread_blocked_on_a_mutex_another_thread_holds_sits_in_futex() {
    let (d, handle, _cap) = layer();
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l2 = Arc::clone(&lock);
    let d2 = d.clone();
    let waiter = std::thread::Builder::new()
        .name("db-sync".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let _s = tracing::info_span!("flush", table = "sessions").entered();
                drop(l2.lock().unwrap());
            });
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _db = phase!("db_close").entered();
        handle.stuck_snapshot()
    });
    let t = thread_named(&snap, "db-sync");
    assert_eq!(t.syscall.as_deref(), Some("futex"), "{t:?}");
    assert_eq!(
        t.target, None,
        "a futex waits on an address, not a descriptor"
    );
    let finding = snap
        .findings
        .iter()
        .find(|f| f.starts_with("flush{"))
        .expect("the span on the blocked thread");
    assert!(
        finding.contains("db-sync (tid") && finding.contains("blocked in futex"),
        "{finding}"
    );
    drop(held);
    waiter.join().unwrap();
}

#[test]
fn an_idle_task_and_a_sleeping_runtime_worker_are_told_apart() {
    let (d, handle, _cap) = layer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rt-worker")
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let (started_tx, started) = mpsc::channel();
    tracing::dispatcher::with_default(&d, || {
        use tracing::Instrument;
        // An instrumented task awaiting a future that never completes: idle, not entered.
        rt.spawn(
            std::future::pending::<()>().instrument(tracing::info_span!("idle_task", job = 7)),
        );
        // Blocking sleep on a runtime worker: entered, its thread in (clock_)nanosleep.
        rt.spawn(
            async move {
                started_tx.send(()).unwrap();
                while !stop2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(400));
                }
            }
            .instrument(tracing::info_span!("blocking_in_async")),
        );
    });
    started.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _drain = phase!("drain").entered();
        handle.stuck_snapshot()
    });
    let idle = snap
        .spans
        .iter()
        .find(|s| s.name == "idle_task")
        .expect("idle task");
    assert!(idle.idle_s.unwrap() >= 0.2, "{idle:?}");
    assert_eq!(idle.fields.as_deref(), Some("job=7"));
    let busy = snap
        .spans
        .iter()
        .find(|s| s.name == "blocking_in_async")
        .expect("blocking span");
    assert_eq!(busy.idle_s, None);
    let worker = busy.last_thread.as_deref().unwrap();
    assert!(worker.starts_with("rt-worker (tid "), "{worker}");
    let tid: u32 = worker
        .trim_start_matches("rt-worker (tid ")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    let t = snap.threads.iter().find(|t| t.tid == tid).unwrap();
    assert!(
        ["nanosleep", "clock_nanosleep"].contains(&t.syscall.as_deref().unwrap()),
        "{t:?}"
    );
    assert!(
        snap.findings
            .iter()
            .any(|f| f.starts_with("blocking_in_async running") && f.contains("nanosleep")),
        "{:#?}",
        snap.findings
    );
    stop.store(true, Ordering::SeqCst);
    rt.shutdown_timeout(Duration::from_secs(2));
}

#[test]
fn a_spinning_thread_is_told_from_a_blocked_one() {
    let (d, handle, _cap) = layer();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let spinner = std::thread::Builder::new()
        .name("spinner".into())
        .spawn(move || {
            let mut x = 0u64;
            while !s2.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    stop.store(true, Ordering::SeqCst);
    spinner.join().unwrap();
    let t = thread_named(&snap, "spinner");
    // Loose: on a loaded 2-core machine a spinner still gets a good share of a core.
    let cpu = t.cpu_pct.unwrap();
    assert!(cpu >= 5.0, "{t:?}");
    assert_eq!(t.state, "R", "{t:?}");
    if cpu >= 50.0 {
        assert!(
            snap.findings
                .iter()
                .any(|f| f.starts_with("thread spinner (tid") && f.contains("spinning")),
            "{:#?}",
            snap.findings
        );
    }
}

#[test]
fn a_connect_to_a_full_backlog_hangs_in_syn_sent() {
    // A listener with backlog 0 whose queue is filled and never accepted: the next connect's
    // SYN is dropped, and the connecting thread sits in connect(2).
    // SAFETY: plain socket calls on descriptors this test creates; sockaddr_in is zeroed and
    // filled for 127.0.0.1 with port 0.
    let (lfd, addr) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, std::ptr::addr_of!(sa).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut l = len;
        assert_eq!(
            libc::getsockname(fd, std::ptr::addr_of_mut!(got).cast(), &mut l),
            0
        );
        (
            fd,
            SocketAddr::from(([127, 0, 0, 1], u16::from_be(got.sin_port))),
        )
    };
    // Fill the accept queue (backlog 0 holds one; take a few to be sure).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    let (d, handle, _cap) = layer();
    let connecting = std::thread::Builder::new()
        .name("connector".into())
        .spawn(move || TcpStream::connect_timeout(&addr, Duration::from_secs(20)).is_ok())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    let t = thread_named(&snap, "connector");
    // connect_timeout is a non-blocking connect followed by poll(2).
    let syscall = t.syscall.as_deref().unwrap();
    assert!(["connect", "poll", "ppoll"].contains(&syscall), "{t:?}");
    let syn_sent = snap.sockets.iter().find(|s| {
        s.state.as_deref() == Some("SYN_SENT")
            && s.peer.as_deref() == Some(addr.to_string().as_str())
    });
    assert!(syn_sent.is_some(), "{:#?}", snap.sockets);
    // SAFETY: closing the listener this test created makes the pending connect fail.
    unsafe { libc::close(lfd) };
    drop(fillers);
    let _ = connecting.join();
}

#[test]
fn a_phase_over_budget_is_snapshotted_by_the_watchdog_and_the_done_line_counts_what_it_abandons() {
    let layer = ShutdownLayer::builder()
        .with_phase_budget("drain", Duration::from_millis(200))
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    let (listener, client) = silent_peer();
    let peer = listener.local_addr().unwrap();
    tracing::dispatcher::with_default(&d, || {
        // A request span opened before the stop, idle (as an async request between polls).
        let request =
            tracing::info_span!("request", method = "POST", path = "/upload", peer = %peer);
        handle.begin();
        let drain = phase!("drain");
        let g = drain.enter();
        assert!(wait_until(LOOSE, || cap
            .text()
            .contains("drain stuck (budget 0.20s)")));
        drop(g);
        drop(drain);
        drop(request);
    });
    let text = cap.text();
    let line = stuck_line(&cap);
    assert!(line.contains("request{"), "{line}");
    let done = text.lines().find(|l| l.contains(" drain done (")).unwrap();
    assert!(done.contains("abandoned_spans=1"), "{done}");
    assert!(
        done.contains(&format!(
            "oldest_abandoned=\"request{{method=POST path=/upload peer={peer}}} age "
        )),
        "{done}"
    );
    // Order: over budget, then stuck, then done.
    let pos = |n: &str| text.find(n).unwrap();
    assert!(pos("over budget") < pos(" stuck (") && pos(" stuck (") < pos(" drain done"));
    let report = handle.report();
    assert_eq!(report.stuck[0].reason, StuckReason::Budget);
    assert_eq!(report.stuck[0].budget_s, Some(0.2));
    drop(client);
}

#[test]
fn a_known_kill_deadline_gets_a_snapshot_shortly_before_it() {
    let (d, handle, cap) = layer();
    handle.set_kill_deadline(Duration::from_millis(800));
    tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _drain = phase!("drain").entered();
        // Half the time left (0.4 s) is less than 1 s: the snapshot comes at +0.40s.
        assert!(wait_until(LOOSE, || cap
            .text()
            .contains("drain stuck (kill deadline near)")));
    });
    let report = handle.report();
    assert_eq!(report.stuck.len(), 1);
    assert_eq!(report.stuck[0].reason, StuckReason::KillDeadline);
    assert!(report.stuck[0].at_s >= 0.39, "{}", report.stuck[0].at_s);
}

#[test]
fn hostile_thread_names_and_span_fields_cannot_forge_a_line() {
    let (d, handle, cap) = layer();
    let (_listener, client) = silent_peer();
    let d2 = d.clone();
    let (tx, rx) = mpsc::channel();
    let evil = std::thread::Builder::new()
        .name("x\nERROR \u{1b}[31m".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let _s = tracing::info_span!("request", path = %"/a\nERROR forged=1 \u{1b}[2J\"")
                    .entered();
                tx.send(()).unwrap();
                let mut c = client;
                let _ = c.read(&mut [0u8; 4]);
            });
        })
        .unwrap();
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    let line = stuck_line(&cap);
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert_eq!(
        cap.text().lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{}",
        cap.text()
    );
    assert!(line.contains("\\nERROR forged=1 \\u{1b}[2J"), "{line}");
    for s in snap
        .findings
        .iter()
        .chain(snap.threads.iter().map(|t| &t.name))
    {
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }
    // The thread's own name (the kernel keeps 15 bytes) is escaped too.
    assert!(
        snap.threads
            .iter()
            .any(|t| t.name.starts_with("x\\nERROR ")),
        "{:#?}",
        snap.threads
    );
    drop(evil); // left blocked: the process ends with the test binary
}

#[test]
fn threads_that_come_and_go_during_the_snapshot_do_not_break_it() {
    let (d, handle, _cap) = layer();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let churn = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s2.load(Ordering::Relaxed) {
            let _ = std::thread::Builder::new()
                .name("short-lived".into())
                .spawn(|| std::thread::sleep(Duration::from_millis(2)))
                .map(|h| h.join());
            n += 1;
        }
        n
    });
    let snaps: Vec<StuckSnapshot> = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        (0..3).map(|_| handle.stuck_snapshot()).collect()
    });
    stop.store(true, Ordering::SeqCst);
    assert!(churn.join().unwrap() > 0);
    for s in &snaps {
        assert!(!s.threads.is_empty());
        assert!(!s.findings.is_empty());
    }
    // Three on-demand snapshots: all kept.
    assert_eq!(handle.report().stuck.len(), 3);
}

/// Runs one role of this binary as uid/gid 65534 (nobody), with no capabilities. The binary
/// is copied to a world-readable temporary directory first: wherever the checkout lives (a
/// home directory may be 0700), nobody can run it from there.
fn as_nobody(role: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::Builder::new()
        .prefix("stuck-nobody")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("stuck_snapshot");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    support::retry_text_busy(|| {
        std::process::Command::new(&exe)
            .args(["--exact", role, "--ignored", "--nocapture"])
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output()
    })
    .expect("run the role")
}

#[test]
fn unprivileged_it_still_gets_spans_threads_and_sockets() {
    // SAFETY: getuid(2) has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        // Already unprivileged: the role's checks are this process's own.
        role_unprivileged_snapshot();
        return;
    }
    let out = as_nobody("role_unprivileged_snapshot");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ROLE OK uid=65534"), "{stdout}");
}

#[test]
#[ignore = "a role: run by unprivileged_it_still_gets_spans_threads_and_sockets"]
fn role_unprivileged_snapshot() {
    // SAFETY: getuid(2) and the capability query have no preconditions.
    let uid = unsafe { libc::getuid() };
    let (d, handle, _cap) = layer();
    let (listener, client) = silent_peer();
    let peer = listener.local_addr().unwrap();
    let fd = client.as_raw_fd();
    let d2 = d.clone();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::Builder::new()
        .name("req-worker".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let _s = tracing::info_span!("request", peer = %peer).entered();
                tx.send(()).unwrap();
                let mut c = client;
                let _ = c.read(&mut [0u8; 4]);
            });
        })
        .unwrap();
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    assert!(snap.spans.iter().any(|s| s.name == "request"), "{snap:#?}");
    let w = thread_named(&snap, "req-worker");
    assert_eq!(w.syscall.as_deref(), Some("recvfrom"), "{w:?}");
    assert!(
        snap.sockets
            .iter()
            .any(|s| s.fd == fd && s.last_recv_s.is_some()),
        "{:#?}",
        snap.sockets
    );
    assert!(snap.unknown.is_empty(), "{:?}", snap.unknown);
    client_shutdown(fd);
    t.join().unwrap();
    println!("ROLE OK uid={uid}");
}

#[test]
fn ten_thousand_descriptors_give_a_bounded_snapshot() {
    let out = support::rerun_as("role_many_descriptors")
        .output()
        .expect("run the role");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ROLE OK"), "{stdout}");
}

#[test]
#[ignore = "a role: run by ten_thousand_descriptors_give_a_bounded_snapshot (raises its fd limit)"]
fn role_many_descriptors() {
    // SAFETY: getrlimit/setrlimit on a zeroed rlimit owned here.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        // As root the hard limit can be raised too; otherwise up to it.
        let want = 20_000;
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max.min(want);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    // SAFETY: getrlimit on a zeroed rlimit owned here.
    let limit = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    };
    // Room for the snapshot's own reads and the test harness.
    let pairs = usize::try_from(limit.saturating_sub(200) / 4)
        .unwrap_or(0)
        .min(2_500);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // 2 500 connections (5 000 socket fds) and 2 500 pipes (5 000 more).
    for _ in 0..pairs {
        let Ok(c) = TcpStream::connect(addr) else {
            break;
        };
        let Ok((s, _)) = listener.accept() else { break };
        held.push((c, s));
    }
    let mut pipes = Vec::new();
    for _ in 0..pairs {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) writes two descriptors into the array owned here.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            break;
        }
        pipes.push(fds);
    }
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count();
    assert!(
        open >= 9_000,
        "only {open} descriptors could be opened (RLIMIT_NOFILE {limit})"
    );
    let (d, handle, cap) = layer();
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    assert!(snap.sockets.len() <= 64, "{}", snap.sockets.len());
    assert!(snap.truncated);
    assert!(snap.findings.len() <= 8);
    assert!(serde_json::to_string(&snap).unwrap().len() < 256 * 1024);
    assert!(stuck_line(&cap).len() < 8 * 1024);
    println!(
        "ROLE OK {open} descriptors, snapshot took {:.0} ms",
        snap.took_ms
    );
}

#[test]
fn a_phase_that_overruns_as_it_closes_still_gets_exactly_one_snapshot() {
    // Budget equal to the app's own timeout is common: the phase then closes over budget at
    // about the moment the watchdog would see it. Whoever sees it first, one snapshot follows
    // (the close path hands it to the watchdog), and completion waits for it.
    for round in 0..5 {
        let clock = shutdown_forensics::report::ManualClock::new();
        let layer = ShutdownLayer::builder()
            .with_clock(clock.clone())
            .with_phase_budget("drain", Duration::from_millis(100))
            .with_stuck_cpu_sample_gap(Duration::ZERO)
            .build();
        let handle = layer.handle();
        let cap = Capture::default();
        let d = dispatch(layer, &cap);
        tracing::dispatcher::with_default(&d, || {
            handle.begin();
            phase!("drain").in_scope(|| clock.advance(Duration::from_secs(1)));
            handle.finish();
        });
        let text = cap.text();
        assert_eq!(
            text.matches("drain stuck (budget 0.10s)").count(),
            1,
            "round {round}:\n{text}"
        );
        assert_eq!(
            text.matches("drain over budget").count(),
            1,
            "round {round}:\n{text}"
        );
        let stuck = text.find(" stuck (").unwrap();
        assert!(
            stuck < text.find("shutdown complete").unwrap(),
            "round {round}:\n{text}"
        );
    }
}

#[test]
fn spans_the_layer_cannot_read_are_named_with_their_short_fields_and_the_snapshot_says_why() {
    // tracing-subscriber's `Option<L>` does not pass `on_register_dispatch` on: the layer never
    // learns its subscriber, so the snapshot cannot read fields and parents. It says so.
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    use tracing_subscriber::layer::SubscriberExt;
    let d = Dispatch::new(tracing_subscriber::registry().with(Some(layer)));
    let snap = tracing::dispatcher::with_default(&d, || {
        let _request = tracing::info_span!("request", method = "GET");
        handle.begin();
        handle.stuck_snapshot()
    });
    let span = snap.spans.iter().find(|s| s.name == "request").unwrap();
    // Short fields are kept by the layer itself (in the span's table slot): still named.
    assert_eq!(span.fields.as_deref(), Some("method=GET"));
    assert!(span.path.is_empty(), "{span:?}");
    assert!(
        snap.unknown
            .iter()
            .any(|u| u.starts_with("span parents and long fields: the layer cannot read")),
        "{:?}",
        snap.unknown
    );
}
