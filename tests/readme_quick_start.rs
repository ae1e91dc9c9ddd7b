//! The README's quick start, as a new user runs it: its `toml` and `rust` blocks become a new
//! binary crate, which must build without a warning and, run in an empty directory, explain a
//! SIGTERM sent by another process.
//!
//! The crate is built `--offline` against this checkout (the README's path dependency is
//! pointed here) with this workspace's `Cargo.lock`, in our target directory, so that it
//! reuses the dependencies the test suite already built. When the dependencies cannot be resolved offline (a machine that never fetched
//! them), the test prints one `SKIPPED:` line and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOOSE: Duration = Duration::from_secs(20);

/// The fenced blocks of `lang` inside the README's `## Quick start` section (` ```rust ` and
/// ` ```rust,no_run ` are both `rust`: the README's Rust blocks are doc-tests too).
fn quick_start_blocks(readme: &str, lang: &str) -> Vec<String> {
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let rest = &readme[start + 1..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let tag = line
            .trim_end()
            .strip_prefix("```")
            .map(|t| t.split(',').next());
        if tag == Some(Some(lang)) {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.trim_end() != "```")
                .collect();
            blocks.push(body.join("\n") + "\n");
        }
    }
    blocks
}

fn target_dir() -> PathBuf {
    // <target>/debug/deps/readme_quick_start-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The crate from the README, written to `dir`.
fn write_crate(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let toml = quick_start_blocks(&readme, "toml");
    let rust = quick_start_blocks(&readme, "rust");
    assert_eq!(
        (toml.len(), rust.len()),
        (1, 1),
        "one toml and one rust block"
    );
    let deps = &toml[0];
    assert!(deps.starts_with("[dependencies]\n"), "{deps}");
    // The one change: the README's path to a checkout becomes this checkout.
    let mut pointed = 0;
    let deps: String = deps
        .lines()
        .map(|l| {
            if l.starts_with("shutdown-forensics = { path = ") {
                pointed += 1;
                format!(
                    "shutdown-forensics = {{ path = {:?} }}",
                    root.display().to_string()
                )
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        pointed, 1,
        "the README depends on a checkout by path: {deps}"
    );
    let manifest = format!(
        "[package]\nname = \"quick-start\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         publish = false\n\n{deps}\n\n[workspace]\n"
    );
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), &rust[0]).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

/// Whether `pid` catches `sig` yet (`SigCgt` in its status): then a signal cannot kill it.
fn catches(pid: u32, sig: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

#[test]
fn the_crate_docs_show_the_same_quick_start() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let code = &quick_start_blocks(&readme, "rust")[0];
    let doc: String = code
        .lines()
        .map(|l| format!("//! {l}").trim_end().to_owned() + "\n")
        .collect();
    assert!(
        lib.contains(&doc),
        "src/lib.rs's quick start differs from the README's"
    );
}

#[test]
fn the_readme_quick_start_builds_without_warnings_and_explains_a_sigterm() {
    let scratch = tempfile::tempdir().unwrap();
    let krate = scratch.path().join("quick-start");
    write_crate(&krate);

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&build.stderr);
    if !build.status.success() {
        let offline = [
            "offline",
            "failed to select a version",
            "failed to load source",
        ];
        if offline.iter().any(|needle| stderr.contains(needle)) {
            println!("SKIPPED: the quick start's dependencies cannot be resolved offline here");
            return;
        }
        panic!("the quick start does not build:\n{stderr}");
    }
    assert!(
        !stderr.contains("warning"),
        "it builds with warnings:\n{stderr}"
    );
    let binary = target_dir().join("debug/quick-start");

    // Run it in an empty directory, as a new user would.
    let run_dir = scratch.path().join("empty");
    std::fs::create_dir(&run_dir).unwrap();
    let mut service = Command::new(&binary)
        .current_dir(&run_dir)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = service.id();
    let start = Instant::now();
    while !catches(pid, libc::SIGTERM as u32) {
        assert!(
            start.elapsed() < LOOSE,
            "the service never listened for SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // From another process; reaped only after the service exited, so its name stays readable.
    let mut kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .spawn()
        .unwrap();
    let kill_pid = kill.id();
    let deadline = Instant::now() + LOOSE;
    let status = loop {
        if let Some(status) = service.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = service.kill();
            panic!("the service did not stop within {LOOSE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    kill.wait().unwrap();
    let out = service.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "{status:?}\n{log}");
    let expect = [
        "serving; stop me with kill -TERM or Ctrl-C".to_owned(),
        format!("Shutdown context signal=SIGTERM sender_pid={kill_pid} sender_name=kill"),
        "stopping signal=SIGTERM".to_owned(),
        "drain started".to_owned(),
        "drain done (".to_owned(),
        "active_at_start=3".to_owned(),
        "db_close done (".to_owned(),
        "shutdown complete (total teardown ".to_owned(),
    ];
    for needle in &expect {
        assert!(log.contains(needle.as_str()), "no {needle:?} in:\n{log}");
    }
    assert!(!log.contains("ERROR"), "{log}");
    // The directories it needed were created; the next start reads a clean record.
    assert!(run_dir.join("state/flight.jsonl").is_file());
    assert!(run_dir.join("logs").is_dir());
    let record = std::fs::read_to_string(run_dir.join("state/flight.jsonl")).unwrap();
    assert!(record.contains(r#""kind":"complete""#), "{record}");
}
