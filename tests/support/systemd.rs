//! A real systemd for tests: PID 1 of its own pid + mount namespace, with only the test's units.
//!
//! ```ignore
//! let ns = SystemdNs::builder()
//!     .unit("gw.service", &unit_text)
//!     .boot_or_skip()?; // None (after one `SKIPPED: <why>` line) where systemd cannot boot
//! ns.systemctl(&["start", "gw.service"]).ok()?;
//! assert_eq!(ns.show("gw.service", "ActiveState"), "active");
//! let journal = ns.journalctl(&["-u", "gw.service"]);
//! // Dropping `ns` kills the namespace, waits for it, and removes its cgroups.
//! ```
//!
//! How it boots (as root; [`Builder::boot`] checks each need and says which one is missing):
//!
//! * `unshare --pid --fork --mount --mount-proc sh -c BOOT_SCRIPT sh <args>`: the script is a
//!   constant and every value reaches it as a positional argument, never as shell text.
//! * Inside the new mount namespace the script mounts a private tmpfs over `/sys/fs/cgroup` and
//!   mounts systemd's `name=systemd` hierarchy (and the unified cgroup2 one when the host has
//!   it) into it. systemd remounts `/sys/fs/cgroup` read-only at boot, and a remount changes the
//!   superblock: on the host's own tmpfs that would make the host's `/sys/fs/cgroup` read-only
//!   (and leave its symlinks there). Then it moves itself into the cgroup `<name>` that
//!   [`Builder::boot`] created, so systemd roots every unit under `/<name>/…`, never at the
//!   host's top level.
//! * Private tmpfs mounts over `/run` (systemd's sockets, the volatile journal) and over
//!   [`Builder::private_dir`]s (default `/var/log` and `/var/lib`: `StateDirectory=`,
//!   `LogsDirectory=`, and no `/var/log/journal`, so journald keeps its journal in `/run`).
//! * `exec env -i container=other SYSTEMD_UNIT_PATH=<units>: /usr/bin/systemd --system
//!   --unit=<target>`. The trailing `:` keeps the default unit paths (journald's units); the
//!   target only `Wants=` journald, so nothing else of the distribution starts. Units need
//!   `DefaultDependencies=no` (there is no `sysinit.target` here, and none should be pulled in).
//!
//! `systemctl`/`journalctl` run through `nsenter -t <pid> -m -p`, each bounded in time. Files
//! inside the namespace are read through `/proc/<pid>/root` ([`SystemdNs::path`]).
//!
//! Teardown ([`SystemdNs::teardown`], or `Drop`): SIGKILL to the namespace's PID 1 (the kernel
//! kills every other process in the namespace), wait for `unshare` (bounded), check that no
//! process is left in the cgroup or the mount namespace, remove the cgroup `<name>` from every
//! hierarchy. Nothing is left on the machine: the mounts died with the namespace.
//!
//! Where systemd cannot boot (not root, no `unshare`/`nsenter`, no `name=systemd` hierarchy,
//! a boot that fails), [`Builder::boot_or_skip`] prints one line `SKIPPED: <why>` and returns
//! `None`; with `SHUTDOWN_FORENSICS_REQUIRE_SYSTEMD=1` (CI) it panics instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set to `1` to make a systemd that cannot boot a failure instead of a skip.
pub const REQUIRE_ENV: &str = "SHUTDOWN_FORENSICS_REQUIRE_SYSTEMD";

/// The boot target's name.
pub const TARGET: &str = "sf-test.target";

const SYSTEMD: &str = "/usr/bin/systemd";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Runs inside the new namespaces as their PID 1, then becomes systemd. Constant: values come
/// in as `$1..`: name, units dir, target, unified (1/0), then the private directories.
const BOOT_SCRIPT: &str = r#"set -eu
name=$1 units=$2 target=$3 unified=$4
shift 4
mount -n -t tmpfs -o mode=755,size=4m sf-cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd
mount -n -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
echo $$ > "/sys/fs/cgroup/systemd/$name/cgroup.procs"
if [ "$unified" = 1 ]; then
  mkdir /sys/fs/cgroup/unified
  mount -n -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  echo $$ > "/sys/fs/cgroup/unified/$name/cgroup.procs"
fi
mount -n -t tmpfs -o mode=755 sf-run /run
for dir in "$@"; do
  if [ -d "$dir" ]; then mount -n -t tmpfs -o mode=755 sf-private "$dir"; fi
done
exec env -i container=other "SYSTEMD_UNIT_PATH=$units:" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /usr/bin/systemd --system "--unit=$target"
"#;

/// What to boot. See the module docs.
#[derive(Debug, Clone)]
pub struct Builder {
    units: Vec<(String, String)>,
    journald: bool,
    private_dirs: Vec<PathBuf>,
    boot_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            units: Vec::new(),
            journald: true,
            private_dirs: vec!["/var/log".into(), "/var/lib".into()],
            boot_timeout: Duration::from_secs(60),
        }
    }
}

impl Builder {
    /// Adds a unit file (`name` like `gw.service`, `text` its content).
    pub fn unit(mut self, name: &str, text: &str) -> Self {
        self.units.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Whether the target pulls in journald (default: yes), so `journalctl` sees the units.
    pub fn journald(mut self, on: bool) -> Self {
        self.journald = on;
        self
    }

    /// Another existing directory to hide behind a private tmpfs inside the namespace.
    pub fn private_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.private_dirs.push(dir.into());
        self
    }

    /// Boots, or says why it cannot. `Err` only says what is missing or what failed, with the
    /// boot log.
    pub fn boot(self) -> Result<SystemdNs, String> {
        SystemdNs::boot(self)
    }

    /// [`Self::boot`], or one `SKIPPED: <why>` line and `None`; panics instead of skipping when
    /// [`REQUIRE_ENV`] is `1`.
    pub fn boot_or_skip(self) -> Option<SystemdNs> {
        match self.boot() {
            Ok(ns) => Some(ns),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }
}

/// `true` when [`SystemdNs::unavailable`] finds nothing missing; else [`skip`]s and returns
/// `false`. For tests with costly set-up (a build) before [`Builder::boot_or_skip`].
pub fn available_or_skip() -> bool {
    match SystemdNs::unavailable() {
        None => true,
        Some(why) => {
            skip(&why);
            false
        }
    }
}

/// One `SKIPPED: <why>` line; a panic instead when [`REQUIRE_ENV`] is `1`.
pub fn skip(why: &str) {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_ENV}=1 but systemd cannot boot here: {why}");
    }
    eprintln!(
        "SKIPPED: {}",
        why.lines().next().unwrap_or("systemd cannot boot")
    );
}

/// The output of one bounded command.
#[derive(Debug, Clone)]
pub struct Run {
    /// `None` when it was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Its stdout when it succeeded, else `Err` with everything it said.
    pub fn ok(self) -> Result<String, String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(format!(
                "status {:?}\nstdout: {}\nstderr: {}",
                self.status, self.stdout, self.stderr
            ))
        }
    }
}

/// Runs `cmd` (no stdin), killing it at `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Run {
                status: None,
                stdout: String::new(),
                stderr: format!("cannot run {cmd:?}: {e}"),
            }
        }
    };
    // Read on threads: a grandchild that keeps a pipe open must not hold us past `limit`.
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut r) = r {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.by_ref().take(16 << 20).read_to_end(&mut buf);
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            });
        }
        rx
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let collect =
        |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let mut run = Run {
        status,
        stdout: collect(out),
        stderr: collect(err),
    };
    if run.status.is_none() {
        run.stderr
            .push_str(&format!("\n(killed after {limit:?}: {cmd:?})"));
    }
    run
}

/// A booted systemd. See the module docs.
#[derive(Debug)]
pub struct SystemdNs {
    name: String,
    dir: tempfile::TempDir,
    unshare: Child,
    pid: u32,
    /// `/proc/<pid>/ns/mnt` of the namespace (`mnt:[inode]`), to prove it is gone.
    mnt_ns: String,
    cgroups: Vec<PathBuf>,
    torn_down: bool,
}

/// Bound on every `systemctl`/`journalctl` call.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

impl SystemdNs {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Why systemd cannot boot here, if it cannot (checked before anything is created).
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root: booting systemd in a namespace needs root".to_owned());
        }
        if !Path::new(SYSTEMD).is_file() {
            return Some(format!("no {SYSTEMD}"));
        }
        for tool in ["unshare", "nsenter", "sh", "env", "mount"] {
            if !on_path(tool) {
                return Some(format!("no `{tool}` on PATH (util-linux)"));
            }
        }
        if mount_type(&format!("{CGROUP_ROOT}/systemd")).as_deref() != Some("cgroup") {
            return Some(format!(
                "no name=systemd cgroup hierarchy mounted at {CGROUP_ROOT}/systemd"
            ));
        }
        None
    }

    fn boot(b: Builder) -> Result<Self, String> {
        if let Some(why) = Self::unavailable() {
            return Err(why);
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sf-systemd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix("sf-systemd-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let units = dir.path().join("units");
        std::fs::create_dir(&units).map_err(|e| format!("units dir: {e}"))?;
        let wants = if b.journald {
            "Wants=systemd-journald.socket systemd-journald.service\n\
             After=systemd-journald.socket systemd-journald.service\n"
        } else {
            ""
        };
        let target = format!(
            "[Unit]\nDescription=shutdown-forensics test target\nDefaultDependencies=no\n{wants}"
        );
        for (file, text) in std::iter::once((TARGET.to_owned(), target)).chain(b.units) {
            if file.contains('/') || file.starts_with('.') {
                return Err(format!("bad unit name {file:?}"));
            }
            std::fs::write(units.join(&file), text).map_err(|e| format!("{file}: {e}"))?;
        }
        let unified = mount_type(&format!("{CGROUP_ROOT}/unified")).as_deref() == Some("cgroup2");
        let mut cgroups = vec![Path::new(CGROUP_ROOT).join("systemd").join(&name)];
        if unified {
            cgroups.push(Path::new(CGROUP_ROOT).join("unified").join(&name));
        }
        for cg in &cgroups {
            if let Err(e) = std::fs::create_dir(cg) {
                let _ = remove_cgroups(&name);
                return Err(format!("cannot create cgroup {}: {e}", cg.display()));
            }
        }
        let log = std::fs::File::create(dir.path().join("boot.log"))
            .map_err(|e| format!("boot log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("boot log: {e}"))?;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", BOOT_SCRIPT, "sh"])
        .arg(&name)
        .arg(&units)
        .arg(TARGET)
        .arg(if unified { "1" } else { "0" })
        .args(&b.private_dirs)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
        let unshare = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = remove_cgroups(&name);
                return Err(format!("cannot run unshare: {e}"));
            }
        };
        let mut ns = Self {
            name,
            dir,
            pid: 0,
            unshare,
            mnt_ns: String::new(),
            cgroups,
            torn_down: false,
        };
        let started = Instant::now();
        match ns.wait_booted(b.boot_timeout) {
            Ok(()) => {
                ns.log_boot_time(started.elapsed());
                Ok(ns)
            }
            Err(why) => {
                let log = ns.boot_log();
                let _ = ns.teardown();
                Err(format!("systemd did not boot: {why}\nboot log:\n{log}"))
            }
        }
    }

    fn log_boot_time(&self, took: Duration) {
        eprintln!(
            "systemd booted in {:.2}s (pid {}, cgroup /{})",
            took.as_secs_f64(),
            self.pid,
            self.name
        );
    }

    /// Finds systemd (the child of `unshare`) and waits until it is running.
    fn wait_booted(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let parent = self.unshare.id();
        while self.pid == 0 {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Err(format!("unshare exited: {status}"));
            }
            self.pid = child_of(parent).unwrap_or(0);
            if Instant::now() > deadline {
                return Err("no child of unshare".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The child execs sh, then systemd.
        while std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .map_or(true, |exe| !exe.ends_with("systemd"))
        {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Err(format!("unshare exited: {status}"));
            }
            if Instant::now() > deadline {
                return Err("the boot script did not exec systemd".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.mnt_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Err(format!("systemd exited: {status}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let run = run_bounded(self.nsenter("systemctl", &["is-system-running"]), left);
            last = format!("{} {}", run.stdout.trim(), run.stderr.trim());
            match run.stdout.trim() {
                "running" => return Ok(()),
                // A unit of the distribution failed (none of ours has started yet): usable.
                "degraded" => {
                    eprintln!(
                        "systemd is degraded:\n{}",
                        self.systemctl(&["--failed", "--no-pager"]).stdout
                    );
                    return Ok(());
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Err(format!(
            "not running after {limit:?}; last `systemctl is-system-running`: {last}"
        ))
    }

    fn nsenter(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-p", "--", program])
            .args(args)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_LOG_COLOR", "0")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("INVOCATION_ID");
        cmd
    }

    /// systemd's pid, as seen from here (PID 1 inside).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The cgroup all units live under (`/<name>/system.slice/<unit>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A path inside the namespace, readable from here (`/proc/<pid>/root/<path>`).
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        Path::new("/proc")
            .join(self.pid.to_string())
            .join("root")
            .join(inside.strip_prefix("/").unwrap_or(inside))
    }

    /// Writes (or replaces) a unit file and runs `systemctl daemon-reload`.
    pub fn write_unit(&self, name: &str, text: &str) -> Result<(), String> {
        if name.contains('/') || name.starts_with('.') {
            return Err(format!("bad unit name {name:?}"));
        }
        std::fs::write(self.dir.path().join("units").join(name), text)
            .map_err(|e| format!("{name}: {e}"))?;
        self.systemctl(&["daemon-reload"]).ok().map(drop)
    }

    /// `systemctl <args>` inside, bounded by [`COMMAND_LIMIT`].
    pub fn systemctl(&self, args: &[&str]) -> Run {
        run_bounded(self.nsenter("systemctl", args), COMMAND_LIMIT)
    }

    /// `journalctl --no-pager <args>` inside (stdout, or what went wrong).
    pub fn journalctl(&self, args: &[&str]) -> String {
        let mut all = vec!["--no-pager"];
        all.extend_from_slice(args);
        let run = run_bounded(self.nsenter("journalctl", &all), COMMAND_LIMIT);
        if run.success() {
            run.stdout
        } else {
            format!(
                "(journalctl {args:?} failed: {:?} {})",
                run.status, run.stderr
            )
        }
    }

    /// One property of a unit (`systemctl show -p <prop> --value <unit>`).
    pub fn show(&self, unit: &str, prop: &str) -> String {
        let run = self.systemctl(&["show", "-p", prop, "--value", "--", unit]);
        run.stdout.trim_end().to_owned()
    }

    /// `systemctl status` and the unit's journal: for failure messages.
    pub fn status(&self, unit: &str) -> String {
        let status = self.systemctl(&["status", "--no-pager", "--full", "--lines=0", "--", unit]);
        let journal = self.journalctl(&["-u", unit, "-o", "short-monotonic"]);
        format!(
            "--- systemctl status {unit}:\n{}{}\n--- journalctl -u {unit}:\n{journal}",
            status.stdout, status.stderr
        )
    }

    /// What systemd printed itself (before journald ran, and whatever it could not log).
    pub fn boot_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("boot.log")).unwrap_or_default()
    }

    /// Polls `f` every 50 ms until it holds; `false` at `limit`.
    pub fn wait_until(&self, limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if f() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `unit` reaches `state` (`ActiveState`), panicking with its status at `limit`.
    pub fn wait_state(&self, unit: &str, state: &str, limit: Duration) {
        if !self.wait_until(limit, || self.show(unit, "ActiveState") == state) {
            panic!("{unit} not {state} after {limit:?}\n{}", self.status(unit));
        }
    }

    /// Kills the namespace and removes its cgroups; `Err` says what was left behind.
    pub fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if self.pid != 0 {
            // SAFETY: plain kill(2) on a pid we found as our own child's child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        } else {
            let _ = self.unshare.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.unshare.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = self.unshare.kill();
                    let _ = self.unshare.wait();
                    problems.push("unshare did not exit within 30 s of the SIGKILL".to_owned());
                    break;
                }
            }
        }
        // All of the namespace's processes are gone once its init is reaped; check anyway.
        let left = |cg: &Path| std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        let ok = wait(Duration::from_secs(10), || {
            procs_in(&self.name).is_empty()
                && self.cgroups.iter().all(|c| left(c).trim().is_empty())
        });
        if !ok {
            problems.push(format!(
                "processes left in cgroup /{}: {:?}",
                self.name,
                procs_in(&self.name)
            ));
        }
        if !self.mnt_ns.is_empty() {
            let users = users_of_mnt_ns(&self.mnt_ns);
            if !users.is_empty() {
                problems.push(format!(
                    "mount namespace {} still used by {users:?}",
                    self.mnt_ns
                ));
            }
        }
        if let Err(e) = remove_cgroups(&self.name) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for SystemdNs {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("systemd namespace teardown: {e}");
        }
    }
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The filesystem type mounted exactly at `path`, from our mountinfo.
fn mount_type(path: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut f = pre.split(' ');
        (f.nth(4)? == path).then(|| post.split(' ').next().unwrap_or("").to_owned())
    })
}

/// The first process whose parent is `parent`.
fn child_of(parent: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Processes whose cgroup path runs through `/<name>/` or ends at `/<name>`.
fn procs_in(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let inner = format!("/{name}/");
    let end = format!("/{name}");
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|t| t.lines().any(|l| l.contains(&inner) || l.ends_with(&end)))
        })
        .collect()
}

fn users_of_mnt_ns(ns: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect()
}

/// Removes `<hierarchy>/<name>` and everything under it from every cgroup hierarchy (systemd
/// may have created it in controller hierarchies too), deepest first, retrying while the
/// kernel still holds a just-emptied group.
fn remove_cgroups(name: &str) -> Result<(), String> {
    let mut left = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir(CGROUP_ROOT) else {
        return Ok(());
    };
    for h in hierarchies.flatten() {
        if h.file_type().map_or(true, |t| t.is_symlink()) {
            continue;
        }
        let top = h.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        for d in dirs.iter().rev() {
            let removed = wait(Duration::from_secs(5), || {
                std::fs::remove_dir(d).is_ok() || !d.exists()
            });
            if !removed {
                left.push(d.display().to_string());
            }
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("cgroups left: {left:?}"))
    }
}

/// `dir` and its subdirectories, parents before children.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_owned());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}
