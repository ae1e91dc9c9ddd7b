//! One fuzz target per parser of untrusted bytes, each with the invariants its callers rely
//! on. The default counts keep the whole pass within seconds in a debug build; the length cap
//! of each target is the bound of the read that feeds the real parser.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::engine::{fuzz, Target};
use crate::sys::{cgroup, fd, net, proc, task};
use crate::verdict::PreviousShutdown;

fn text(input: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(input)
}

#[test]
fn fuzz_systemd_duration() {
    let dict: &[&[u8]] = &[
        b"infinity",
        b"s",
        b"sec",
        b"min",
        b"m",
        b"M",
        b"ms",
        b"msec",
        b"us",
        b"usec",
        b"\xc2\xb5s",
        b"ns",
        b"h",
        b"hr",
        b"d",
        b"w",
        b"y",
        b"month",
        b"years",
        b"TimeoutStopUSec=",
        b"LoadState=loaded\n",
        b"LoadState=not-found\n",
        b"gw.service",
        b" stop running\n",
        b" restart waiting\n",
        b"No jobs running.\n",
    ];
    let target = Target {
        name: "systemd_duration",
        default_iters: 60_000,
        max_len: 4096,
        dict,
    };
    let summary = fuzz(target, |input| {
        let t = text(input);
        let parsed = crate::systemd::parse_systemd_duration(&t);
        // Whatever it accepted reads back the same in microseconds (up to strtoll's i64, as
        // in systemd: `18446461844646s` is valid, its 20-digit count of microseconds is not).
        let micros_fit = |d: &Duration| d.as_micros() <= i64::MAX as u128;
        if let Some(d) = parsed.filter(micros_fit) {
            let again = crate::systemd::parse_systemd_duration(&format!("{}us", d.as_micros()));
            assert_eq!(again, Some(d), "{t:?}");
        }
        // The same values behind `TimeoutStopUSec=` in `systemctl show` output.
        let _ = crate::systemd::systemctl::parse_show_output(&t);
        // `systemctl list-jobs` output: a stop job is only ever one of our unit's, of a type
        // that stops it, and only from a line of four words.
        if let crate::context::ManagerJob::Stop { job_type, job_id } =
            crate::systemd::stop_job::parse_list_jobs(&t, "gw.service")
        {
            assert!(
                ["stop", "restart", "try-restart"].contains(&job_type.as_str()),
                "{t:?}"
            );
            let of_ours = |l: &str| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() == 4
                    && w[0].parse::<u32>() == Ok(job_id)
                    && w[1] == "gw.service"
                    && w[2] == job_type
            };
            assert!(t.lines().any(of_ours), "{t:?}");
        }
        parsed.is_some()
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_proc_stat() {
    let target = Target {
        name: "proc_stat",
        default_iters: 30_000,
        max_len: proc::PID_FILE_LIMIT as usize,
        dict: &[b" (", b") ", b" R ", b" Z "],
    };
    let summary = fuzz(target, |input| {
        let stat = proc::parse_stat(input);
        let task_stat = task::parse_task_stat(input);
        stat.is_some() || task_stat.is_some()
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_proc_status() {
    let target = Target {
        name: "proc_status",
        default_iters: 25_000,
        max_len: proc::PID_FILE_LIMIT as usize,
        dict: &[b"TracerPid:", b"Uid:", b"PPid:", b"State:", b"\t"],
    };
    let summary = fuzz(target, |input| {
        let t = text(input);
        let found = [
            proc::parse_tracer_pid(&t).is_some(),
            proc::parse_uid(&t).is_some(),
            proc::parse_ppid(&t).is_some(),
            proc::parse_state(&t).is_some(),
        ];
        let load = proc::parse_loadavg_1m(&t);
        assert!(load.is_none_or(|l| l.is_finite() && l >= 0.0), "{load:?}");
        // cmdline files are NUL-separated bytes of the same kind.
        let cmdline = proc::parse_cmdline(input, proc::CMDLINE_MAX);
        assert!(cmdline.chars().count() <= proc::CMDLINE_MAX);
        found.contains(&true) || load.is_some()
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_cgroup() {
    let target = Target {
        name: "cgroup",
        default_iters: 30_000,
        max_len: proc::PID_FILE_LIMIT as usize,
        dict: &[
            b"0::",
            b"1:name=systemd:",
            b".service",
            b".scope",
            b".slice",
            b"user@1000.service",
            b"docker",
            b"/",
        ],
    };
    let summary = fuzz(target, |input| {
        let t = text(input);
        if let Some(path) = cgroup::systemd_cgroup_path(&t) {
            let _ = cgroup::looks_like_container(path);
        }
        let unit = cgroup::unit_from_cgroup(&t);
        if let Some(u) = &unit {
            assert!(
                u.name.ends_with(".service") && u.name.len() > ".service".len(),
                "{u:?}"
            );
            assert!(!u.name.contains('/'), "{u:?}");
        }
        unit.is_some()
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_task() {
    let target = Target {
        name: "task",
        default_iters: 30_000,
        max_len: proc::PID_FILE_LIMIT as usize,
        dict: &[b"0x", b"running", b"-1 ", b"0x7fffffffffffffff"],
    };
    let summary = fuzz(target, |input| {
        let syscall = task::parse_task_syscall(input);
        if let Some(task::SyscallState::InSyscall { nr, .. }) = syscall {
            let _ = task::syscall_name(nr);
            let _ = task::syscall_fd_arg(nr);
        }
        let stat = task::parse_task_stat(input);
        let _ = task::parse_comm(input);
        let _ = task::parse_wchan(input);
        syscall.is_some() || stat.is_some()
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_fd_link() {
    let target = Target {
        name: "fd",
        default_iters: 60_000,
        max_len: 4096, // PATH_MAX: readlink(2) of /proc/self/fd/N
        dict: &[b"socket:[", b"pipe:[", b"anon_inode:", b"]", b" (deleted)"],
    };
    let summary = fuzz(target, |input| match fd::parse_fd_link(input) {
        fd::FdTarget::Socket { .. } | fd::FdTarget::Pipe { .. } => true,
        fd::FdTarget::Path(s) | fd::FdTarget::AnonInode(s) => {
            assert!(s.chars().count() <= fd::FD_TEXT_MAX);
            true
        }
        fd::FdTarget::Other(s) => {
            assert!(s.chars().count() <= fd::FD_TEXT_MAX);
            false
        }
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_net() {
    let target = Target {
        name: "net",
        default_iters: 15_000,
        max_len: proc::PID_FILE_LIMIT as usize,
        dict: &[
            b"0100007F:",
            b"00000000000000000000000000000000:",
            b" 0A ",
            b" 01 ",
            b"@",
        ],
    };
    let summary = fuzz(target, |input| {
        let t = text(input);
        let mut found = net::parse_proc_net_tcp(&t, false).len();
        found += net::parse_proc_net_tcp(&t, true).len();
        for s in net::parse_proc_net_unix(&t) {
            assert!(s
                .path
                .is_none_or(|p| p.chars().count() <= net::UNIX_PATH_MAX));
            found += 1;
        }
        found > 0
    });
    assert!(summary.accepted > 0);
}

#[test]
fn fuzz_markers() {
    use crate::context::markers::{parse_marker, Identity, MarkerStatus, MARKER_READ_LIMIT};
    let me = Identity {
        pid: 4242,
        start_time: Some(987_654),
    };
    // The `written_at` of the corpus' fresh marker, plus a second.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_219_920);
    let target = Target {
        name: "markers",
        default_iters: 30_000,
        max_len: MARKER_READ_LIMIT as usize,
        dict: &[
            b"\"target_pid\":",
            b"\"target_start_time\":",
            b"\"written_at\":",
            b"4242",
            b"987654",
        ],
    };
    let summary = fuzz(target, |input| {
        let info = parse_marker(
            Path::new("/run/x/.planned-stop.json"),
            input,
            me,
            now,
            Some(Duration::from_secs(600)),
        );
        assert!(info.raw.chars().count() <= 300);
        if info.for_self {
            assert_eq!(info.status, MarkerStatus::Valid);
            assert_eq!(info.target_pid, Some(4242));
            assert!(!info.stale);
        }
        info.status == MarkerStatus::Valid
    });
    assert!(summary.accepted > 0);
}

/// A record is judged clean only when a line of it is a JSON object of kind `complete`, and
/// "no record" only when it holds nothing but blanks.
fn never_clean_without_evidence(verdict: &PreviousShutdown, text: &str) {
    let complete = || {
        text.lines().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some("complete"))
        })
    };
    match verdict {
        PreviousShutdown::Clean { .. } => assert!(complete(), "clean without a complete line"),
        PreviousShutdown::None => assert!(text.trim().is_empty(), "none for a record with text"),
        _ => {}
    }
}

#[test]
fn fuzz_flight_record() {
    use crate::record::tail::{judge, window_text, READ_LIMIT};
    let window = READ_LIMIT as usize;
    let target = Target {
        name: "flight_record",
        default_iters: 4_000,
        // Past the read window, so the reader's cut at a line is fuzzed too.
        max_len: window + 16 * 1024,
        dict: &[
            b"{\"kind\":\"run\",\"pid\":42}\n",
            b"{\"kind\":\"begin\",\"t\":0}\n",
            b"{\"kind\":\"phase_start\",\"t\":1,\"id\":0,\"phase\":\"drain\"}\n",
            b"{\"kind\":\"phase_end\",\"t\":2,\"id\":0}\n",
            b"{\"kind\":\"complete\",\"t\":3,\"total_s\":3}\n",
            b"{\"kind\":\"checkpoint\",\"t\":6,\"begun\":true,\"open\":[{\"id\":0,\"t\":1}]}\n",
            b"{\"kind\":\"panic\",\"message\":\"m\"}\n",
            b"{\"kind\":\"note\",\"note\":\"escalated\",\"value\":{\"count\":2,\"exit_code\":130}}\n",
            b"{\"kind\":\"note\",\"note\":\"exit\",\"value\":{\"panicking\":true}}\n",
            b"{\"kind\":\"note\",\"note\":\"exit\",\"t\":2,\"value\":{\"shutdown\":true,\"panicking\":false}}\n",
            b"{\"kind\":\"note\",\"note\":\"exit\",\"value\":{\"panicking\":true,\"panic_seq\":null,\"panic_hook\":true}}\n",
            b"{\"kind\":\"note\",\"note\":\"exit\",\"value\":{\"panicking\":true,\"panic_seq\":1}}\n",
            b"{\"kind\":\"panic\",\"seq\":1,\"message\":\"m\"}\n",
            b"{\"kind\":\"note\",\"note\":\"panic_outlived\",\"value\":{\"through\":1}}\n",
            b"{\"kind\":\"phase_end\",\"t\":2,\"id\":0,\"unwinding\":true}\n",
            b"{\"kind\":\"heartbeat\",\"t\":1}\n",
            b"{\"kind\":\"stuck\",\"summary\":\"s\",\"phase\":\"drain\"}\n",
            b"{\"kind\":\"stuck\",\"phase\":\"drain\",\"first\":{\"text\":\"t\",\"span\":\"s{a=1}\",\"peer\":\"10.0.0.7:5432\",\"path\":[\"p\"],\"tid\":7,\"no_data_s\":1.5}}\n",
            b"\"first\":", b"\"span\":", b"\"peer\":",
            b"{\"kind\":\"run\",\"pid\":43,\"previous\":\"p\",\"carried\":[\"a\",\"b\"]}\n",
            b"{\"kind\":\"note\",\"note\":\"verdict_logged\"}\n",
            b"\"kind\":", b"\"t\":", b"\"id\":", b"\"pid\":", b"\"total_s\":",
        ],
    };
    let summary = fuzz(target, |input| {
        // As the reader sees the file: its last READ_LIMIT bytes.
        let start = input.len().saturating_sub(window);
        let (text, oversized) = window_text(&input[start..], start > 0);
        let verdict = judge(&text, oversized);
        let _ = verdict.message();
        never_clean_without_evidence(&verdict, &text);
        // The stuck finding's parts are read from the record, never trusted for their size.
        if let PreviousShutdown::Killed {
            stuck,
            stuck_finding,
            ..
        } = &verdict
        {
            assert!(stuck.as_ref().is_none_or(|s| s.chars().count() <= 400));
            if let Some(f) = stuck_finding {
                for part in [
                    Some(&f.text),
                    f.span.as_ref(),
                    f.peer.as_ref(),
                    f.thread.as_ref(),
                ] {
                    assert!(part.is_none_or(|p| p.chars().count() <= 400));
                }
                assert!(f.path.len() <= 8);
            }
        }
        // The public, pure entry point: the same rule.
        never_clean_without_evidence(&crate::FlightRecord::parse(&text), &text);
        // Verdicts carried from a start killed before logging them: bounded, and safe to log.
        use crate::verdict::unconfirmed::{shown, unconfirmed, MAX_CARRIED, MESSAGE_MAX};
        let carried = unconfirmed(&text);
        assert!(carried.len() <= MAX_CARRIED);
        for m in &carried {
            assert!(m.chars().count() <= MESSAGE_MAX);
            assert!(!shown(m).chars().any(char::is_control), "{m:?}");
        }
        // The history line the next start writes from it (issue 22): the verdict's kind,
        // every text and list capped, numbers finite; and the report `last` rebuilds.
        if let Some(stop) = crate::verdict::summary::from_record(&text, &verdict) {
            assert_eq!(stop.verdict, verdict.kind());
            assert_stop_bounded(&stop);
        }
        let _ = crate::timeline::recovered::rebuild(&text).map(|(r, _)| r.to_string());
        !matches!(verdict, PreviousShutdown::None)
    });
    assert!(summary.accepted > 0);
}

/// A history line as its readers take it: capped texts and lists, finite numbers.
fn assert_stop_bounded(stop: &crate::verdict::StopSummary) {
    use crate::verdict::summary::MAX_PHASES;
    assert!(stop.phases.len() <= MAX_PHASES);
    let texts = [
        &stop.signal,
        &stop.sender_name,
        &stop.supervisor,
        &stop.unit,
        &stop.reason,
        &stop.phase,
        &stop.stuck,
    ];
    for t in texts.into_iter().flatten() {
        assert!(t.chars().count() <= 300, "{t:?}");
    }
    for p in &stop.phases {
        assert!(p.name.chars().count() <= 300 && p.duration_s.is_finite() && p.duration_s >= 0.0);
    }
    assert!(stop.total_s.is_none_or(f64::is_finite));
}

/// The history file (`history.jsonl`, issue 22), as `verdict::history` and the advice at
/// start read it: any bytes give bounded summaries, and the advice on them never panics.
#[test]
fn fuzz_history() {
    let target = Target {
        name: "history",
        default_iters: 4_000,
        max_len: 64 * 1024,
        dict: &[
            b"{\"verdict\":\"killed\",\"recorded_by\":\"next_start\",\"pid\":7}\n",
            b"\"phases\":[{\"name\":\"drain\",\"duration_s\":3.0}]",
            b"\"total_s\":",
            b"\"complete\":true",
            b"\"started_unix_s\":",
            b"1e308",
            b"-1",
        ],
    };
    let summary = fuzz(target, |input| {
        let stops = crate::verdict::summary::parse_history(&text(input));
        for stop in &stops {
            assert_stop_bounded(stop);
        }
        let _ = crate::verdict::stop_timeout_needed(&stops);
        let _ = crate::verdict::advice::regression(&stops, "dir");
        let systemd = crate::verdict::advice::TimeoutSource::Systemd("u".into());
        let _ = crate::verdict::advice::timeout_advice(&stops, Duration::from_secs(1), &systemd);
        !stops.is_empty()
    });
    assert!(summary.accepted > 0);
}

/// A report's `Display` (the waterfall) on any report a layer could hold: labels of any
/// length and bytes (untrusted: adapter names, span fields), odd numbers, parents that loop.
/// It never panics (a 100 000-character label once did: a format width past `u16::MAX`), and
/// no row grows with a label.
#[test]
fn fuzz_report_display() {
    use crate::timeline::report::ShutdownReport;
    let target = Target {
        name: "report_display",
        default_iters: 3_000,
        max_len: 160 * 1024,
        dict: &[
            b"\"name\":",
            b"\"parent\":",
            b"\"start_s\":",
            b"\"duration_s\":",
            b"\"budget_s\":",
            b"\"outcome\":\"open\"",
            b"\"outcome\":\"over_budget\"",
            b"\\u001b",
            b"\\u200b",
            b"\\n",
        ],
    };
    let summary = fuzz(target, |input| {
        let Ok(report) = serde_json::from_slice::<ShutdownReport>(input) else {
            return false;
        };
        for out in [report.to_string(), format!("{report:#}")] {
            assert_eq!(out.lines().count(), 1 + report.phases.len());
            for row in out.lines().skip(1).filter(|r| !r.contains("stuck at")) {
                assert!(
                    row.chars().count() < 200,
                    "a row of {} chars",
                    row.chars().count()
                );
            }
        }
        let _ = report.to_chrome_trace();
        true
    });
    assert!(summary.accepted > 0);
}

#[cfg(feature = "systemd")]
#[test]
fn fuzz_notify_socket() {
    let target = Target {
        name: "notify_socket",
        default_iters: 60_000,
        max_len: 4096,
        dict: &[b"/", b"@", b"vsock:", b"/run/systemd/notify"],
    };
    let summary = fuzz(target, |input| {
        let notifier = crate::systemd::Notifier::new(OsStr::from_bytes(input));
        let expected = matches!(input, [b'/', ..] | [b'@', _, ..]);
        assert_eq!(notifier.is_some(), expected);
        // The address is built (or refused) without a panic; nothing is sent.
        notifier.is_some_and(|n| n.socket_address().is_ok())
    });
    assert!(summary.accepted > 0);
}
