//! The flight record: one JSON line per shutdown step, each written with a single `write(2)`
//! on an `O_APPEND` file, so a SIGKILL at any instant leaves whole lines behind.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{json, Value};

use crate::error::Error;
use crate::record::history;
use crate::record::line_caps::page_padding;
use crate::record::replace::{self, Aside};
use crate::record::start_lock::StartLock;
use crate::record::tail::{boot_id, ends_mid_line, own_start_time, read_tail};
use crate::record::tail::{judge, READ_LIMIT};
use crate::record::takeover::{judge_takeovers, takeover_path};
use crate::sys::clock::unix_secs;
use crate::sys::logfmt::Logfmt;
use crate::verdict::summary::StopSummary;
use crate::verdict::unconfirmed::{pieces, shown, unconfirmed};
use crate::verdict::{parse_records, PreviousShutdown};

/// Past this size, one run stops appending notes (phase lines are bounded by the phase
/// limit): the record is a black box, not a log, and must not fill the disk.
const RUN_LIMIT: u64 = 4 * 1024 * 1024;
/// A checkpoint (who we are, what is open) is written at least this often, so the last
/// [`READ_LIMIT`] bytes always hold the state even when notes crowd out the run's start.
const CHECKPOINT_EVERY: u64 = READ_LIMIT / 2;

/// An open flight record for this run, plus the verdict on the previous one.
///
/// [`FlightRecord::open`] reads the previous run's records (bounded: the last 64 KiB), keeps
/// them as `<path>.prev`, and starts a fresh file for this run, so the record never holds more
/// than two runs. Hand it to
/// [`ShutdownLayerBuilder::with_flight_record`](crate::ShutdownLayerBuilder::with_flight_record).
///
/// ```
/// use shutdown_forensics::FlightRecord;
/// use shutdown_forensics::verdict::PreviousShutdown;
///
/// let dir = tempfile::tempdir()?;
/// let record = FlightRecord::open(dir.path().join("flight.jsonl"))?;
/// assert_eq!(record.previous_shutdown(), &PreviousShutdown::None); // first run
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FlightRecord {
    /// `None` when the record is disabled (see [`FlightRecord::error`]).
    file: Option<File>,
    disabled: Option<Error>,
    path: PathBuf,
    written: AtomicU64,
    next_checkpoint: AtomicU64,
    /// A write failed or was cut short (a full disk): the file may end inside a line, so the
    /// next line starts with a newline of its own rather than being glued to the fragment.
    torn: AtomicBool,
    /// Where the file ends, as this process last wrote it (`None`: ask the file): a line that
    /// would cross a page starts on the next one (see [`page_padding`]). Held across the
    /// write, so the lines of this process land in the order the offsets were computed.
    end: Mutex<Option<u64>>,
    previous: PreviousShutdown,
    /// The previous run's record (its tail), kept only when it did not end well, until the
    /// signal helper rebuilds that stop's report from it (`timeline/recovered.rs`).
    previous_text: Mutex<Option<String>>,
    /// Verdicts earlier starts read and never confirmed as logged (oldest first).
    unconfirmed: Vec<String>,
    takeovers: Vec<PreviousShutdown>,
    /// When this run's `run` line was written (Unix seconds): with the pid, it names the run
    /// in the history.
    run_wall_unix_s: Option<f64>,
    /// The previous run's stop as the history keeps it, and whether this start wrote it (its
    /// process could not: killed, crashed), and so records its metrics.
    previous_stop: Option<(StopSummary, bool)>,
    /// The stops of predecessors taken over while they ran, judged now and written by this
    /// start.
    takeover_stops: Vec<StopSummary>,
    /// The metrics of the stops this start wrote were recorded (once).
    metrics_recorded: AtomicBool,
    /// This run's context (who stopped it), kept for its line in the history at `finish`.
    stop_context: Mutex<Option<Value>>,
    /// The history as this start found it, once it had written what it had to (or why it
    /// could not be read): what the advice at install is drawn from.
    history: Option<Result<Vec<StopSummary>, Error>>,
}

impl FlightRecord {
    /// Like [`FlightRecord::open_strict`], but a record that cannot be opened (a full or
    /// read-only disk, a refused symlink) never stops the service from starting: the record
    /// is returned *disabled* ([`FlightRecord::error`] says why; nothing is written), with
    /// the previous run's verdict when it could still be read.
    /// [`ForensicsBuilder::install`](crate::ForensicsBuilder::install) logs one WARN line
    /// for it: `flight record disabled: …; running without one`.
    ///
    /// # Errors
    /// None today: every failure disables the record instead. The `Result` keeps the
    /// documented `FlightRecord::open(path)?` pattern; use [`FlightRecord::open_strict`] to
    /// refuse to start without a record.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        // The lock is in the record's directory; a failure here is `open_locked`'s to report.
        let _ = crate::sys::private_file::create_parent_dirs(path);
        let _start = StartLock::acquire(path);
        // Read first: a failed open may have moved the old record aside already.
        let (previous, unconfirmed, previous_text) = match read_tail(path) {
            Ok(Some((_, text, oversized))) => {
                let previous = judge(&text, oversized);
                // A live predecessor's own verdicts are its to log (as in `open_strict`).
                let carried = match previous {
                    PreviousShutdown::StillRunning { .. } => Vec::new(),
                    _ => unconfirmed(&text).iter().map(|m| shown(m)).collect(),
                };
                let kept = previous.message().is_some().then_some(text);
                (previous, carried, kept)
            }
            _ => (PreviousShutdown::None, Vec::new(), None),
        };
        Self::open_locked(path).or_else(|e| {
            Ok(Self {
                file: None,
                disabled: Some(e),
                path: path.to_path_buf(),
                written: AtomicU64::new(0),
                next_checkpoint: AtomicU64::new(CHECKPOINT_EVERY),
                torn: AtomicBool::new(false),
                end: Mutex::new(None),
                previous,
                previous_text: Mutex::new(previous_text),
                unconfirmed,
                takeovers: Vec::new(),
                run_wall_unix_s: None,
                previous_stop: None,
                takeover_stops: Vec::new(),
                metrics_recorded: AtomicBool::new(false),
                stop_context: Mutex::new(None),
                history: None,
            })
        })
    }

    /// Reads the verdict on the previous run, rotates its record to `<path>.prev` (narrowed
    /// to mode 0600: it holds the context JSON), and starts a fresh record (mode 0600,
    /// `O_APPEND`) with a `run` line. The fresh record is written as `<path>.<pid>.new` and
    /// renamed into place after the old one has its second name, so a kill at any point
    /// leaves a whole record at `path`. Missing parent directories are created (mode 0700).
    /// A symlink, FIFO or other non-regular file at `path` is refused at once.
    ///
    /// Starts on one path take turns: each holds an `flock(2)` on `<path>.lock` (a 0600 file
    /// created next to the record and left there) from reading the old record to putting the
    /// new one in place, so racing starts each judge a different run, exactly once.
    ///
    /// # Errors
    /// When the previous record cannot be read (other than "not found"), is not a regular
    /// file, or the new one (or a directory above it) cannot be created or written; the
    /// message names the path and the reason.
    pub fn open_strict(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        crate::sys::private_file::create_parent_dirs(path)
            .map_err(|e| Error::io(format!("open flight record {}", path.display()), e))?;
        let _start = StartLock::acquire(path);
        Self::open_locked(path)
    }

    /// [`Self::open_strict`] once the caller holds the record's [`StartLock`]: recovering an
    /// interrupted start, reading, putting aside, renaming and judging takeovers are one
    /// critical section, so racing starts each judge a different run.
    fn open_locked(path: &Path) -> Result<Self, Error> {
        let path = path.to_path_buf();
        let open_error = |e| Error::io(format!("open flight record {}", path.display()), e);
        crate::sys::private_file::create_parent_dirs(&path).map_err(open_error)?;
        // A start killed before it put its record in place: finish or clear that first.
        replace::recover(&path, |p| {
            matches!(Self::previous(p), Ok(PreviousShutdown::StillRunning { .. }))
        });
        let ctx = || format!("read flight record {}", path.display());
        let mut carried = Vec::new();
        let mut old = None;
        let mut previous_text = None;
        let mut previous_stop = None;
        let previous = match read_tail(&path).map_err(|e| Error::io(ctx(), e))? {
            Some((file, text, oversized)) => {
                let previous = judge(&text, oversized);
                if !matches!(previous, PreviousShutdown::StillRunning { .. }) {
                    carried = unconfirmed(&text);
                }
                old = Some(file);
                // Under the start lock: racing starts each write a different run's stop.
                previous_stop = history::after_judging(&path, &text, &previous);
                previous_text = previous.message().is_some().then_some(text);
                previous
            }
            None => PreviousShutdown::None,
        };
        let wall = unix_secs(std::time::SystemTime::now());
        // What this start read, until it confirms having logged it: a start killed before
        // that hands it on to the next one (see `verdict/unconfirmed.rs`).
        let read_now = previous.message().map(|m| pieces(&m));
        let header = json!({
            "kind": "run",
            "pid": std::process::id(),
            "start_time": own_start_time(),
            "boot_id": boot_id(),
            "wall_unix_s": wall,
            "version": 1,
            "previous": read_now,
            "carried": carried.iter().map(|m| pieces(m)).collect::<Vec<_>>(),
        });
        let write_error =
            |e, path: &Path| Error::io(format!("write flight record {}", path.display()), e);

        // 1. This run's record, `run` line first, under a name of its own (see
        //    `record/replace.rs`: a kill at any step loses no verdict).
        let fresh = replace::fresh_path(&path, std::process::id());
        let _ = fs::remove_file(&fresh);
        let mut record = Self {
            takeovers: Vec::new(),
            file: None,
            disabled: None,
            path: path.clone(),
            written: AtomicU64::new(0),
            next_checkpoint: AtomicU64::new(CHECKPOINT_EVERY),
            torn: AtomicBool::new(false),
            end: Mutex::new(None),
            previous,
            previous_text: Mutex::new(previous_text),
            unconfirmed: carried.iter().map(|m| shown(m)).collect(),
            run_wall_unix_s: Some(wall),
            previous_stop,
            takeover_stops: Vec::new(),
            metrics_recorded: AtomicBool::new(false),
            stop_context: Mutex::new(None),
            history: None,
        };
        let mut placed = false;
        // Ours only when it is new: nothing planted under the name in the meantime (a hard
        // link to another file would have more than one name, or content).
        let made = crate::sys::private_file::open_append(&fresh)
            .ok()
            .filter(|f| {
                use std::os::unix::fs::MetadataExt;
                f.metadata().is_ok_and(|m| m.len() == 0 && m.nlink() == 1)
            });
        if let Some(file) = made {
            record.file = Some(file);
            if record.append(&header).is_ok() {
                // 2. The old record aside (a second name: it stays in place until 3), unless
                //    it holds nothing worth keeping.
                let aside = match (&old, &record.previous) {
                    (None, _) | (_, PreviousShutdown::None) => None,
                    (Some(old), previous) => {
                        // Narrowed through the descriptor (the inode keeps it under both names).
                        let _ = narrow(old);
                        let aside = match previous {
                            // A live predecessor keeps writing into its record: aside, judged
                            // later.
                            PreviousShutdown::StillRunning { pid } => takeover_path(&path, *pid),
                            _ => {
                                let mut prev = path.clone().into_os_string();
                                prev.push(".prev");
                                PathBuf::from(prev)
                            }
                        };
                        Some(replace::put_aside(&path, &aside))
                    }
                };
                let replaceable = match aside {
                    None | Some(Aside::Linked | Aside::Moved) => true,
                    Some(Aside::Failed) => record.previous.is_clean(),
                };
                // 3. This run's record in its place, in one rename.
                if replaceable {
                    placed = fs::rename(&fresh, &path).is_ok()
                        // The old record was moved away and this one cannot take its place:
                        // it stays under its own name, and the next start puts it there.
                        || aside == Some(Aside::Moved);
                }
            }
        }
        if !placed {
            // No new file can be made or put next to the record (a directory the service
            // cannot write, a single-file bind mount): this run's `run` line goes into the
            // record in place. A clean or empty record is started over; one that is evidence
            // keeps its lines, and the reader judges the last run only.
            let _ = fs::remove_file(&fresh);
            let file = crate::sys::private_file::open_append(&path).map_err(open_error)?;
            if record.previous.is_clean() || record.previous == PreviousShutdown::None {
                file.set_len(0).map_err(|e| {
                    Error::io(format!("truncate flight record {}", path.display()), e)
                })?;
            }
            // An earlier run's last write may have been cut short: our `run` line must not be
            // glued to its fragment.
            let reread = crate::sys::private_file::open_read(&path).ok().flatten();
            record.torn = AtomicBool::new(reread.is_some_and(|f| ends_mid_line(&f)));
            record.file = Some(file);
            record.written = AtomicU64::new(0);
            record.append(&header).map_err(|e| write_error(e, &path))?;
        }
        let mut takeover_stops = Vec::new();
        record.takeovers = judge_takeovers(&path, |p: &Path| {
            let tail = read_tail(p)?;
            let Some((_, text, oversized)) = tail else {
                return Ok::<_, io::Error>(PreviousShutdown::None);
            };
            let verdict = judge(&text, oversized);
            // The history is beside `path` (the takeover file is its sibling).
            if let Some((stop, true)) = history::after_judging(&path, &text, &verdict) {
                takeover_stops.push(stop);
            }
            Ok(verdict)
        });
        record.takeover_stops = takeover_stops;
        record.history = Some(crate::verdict::history::read_beside(&path));
        Ok(record)
    }

    /// The verdict on the run recorded at `path`, without changing anything.
    /// A missing file is [`PreviousShutdown::None`]; a truncated or corrupt line is skipped.
    ///
    /// # Errors
    /// When the file exists but cannot be read, or is a symlink, FIFO or other non-regular
    /// file (refused at once, without blocking).
    pub fn previous(path: impl AsRef<Path>) -> Result<PreviousShutdown, Error> {
        let path = path.as_ref();
        match read_tail(path) {
            Ok(Some((_, text, oversized))) => Ok(judge(&text, oversized)),
            Ok(None) => Ok(PreviousShutdown::None),
            Err(e) => Err(Error::io(
                format!("read flight record {}", path.display()),
                e,
            )),
        }
    }

    /// The verdict on a record's text (JSON lines). Pure: the parser behind
    /// [`FlightRecord::previous`].
    #[must_use]
    pub fn parse(text: &str) -> PreviousShutdown {
        parse_records(text)
    }

    /// The verdict on the previous run, read when this record was opened.
    #[must_use]
    pub fn previous_shutdown(&self) -> &PreviousShutdown {
        &self.previous
    }

    /// The previous run's record tail, once, when it did not end well (see the field).
    pub(crate) fn take_previous_text(&self) -> Option<String> {
        (self.previous_text.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Verdicts that earlier starts read from this record and never confirmed as logged
    /// (each was killed before it could log them), oldest first, at most three, escaped.
    /// [`FlightRecord::log_previous`] logs them after the previous run's own verdict.
    #[must_use]
    pub fn unconfirmed_verdicts(&self) -> &[String] {
        &self.unconfirmed
    }

    /// Logs the previous run's verdict ([`PreviousShutdown::log`]) and every
    /// [unconfirmed](FlightRecord::unconfirmed_verdicts) earlier one (WARN, target
    /// `shutdown`), then records that they were logged, so that the next start does not
    /// report them again. [`ForensicsBuilder::install`](crate::ForensicsBuilder::install)
    /// calls it once a subscriber is there; call it yourself when you use the layer alone.
    ///
    /// A predecessor that still runs ([`PreviousShutdown::StillRunning`]: two instances on one
    /// state directory, or an old process not yet gone) is named too, once: its record was
    /// taken over.
    pub fn log_previous(&self) {
        let earlier = "Earlier verdict, never confirmed as logged by the start that read it";
        let taken_over = self.taken_over();
        if tracing::enabled!(target: crate::sys::target::PHASE_TARGET, tracing::Level::WARN) {
            if let (Some(line), PreviousShutdown::StillRunning { pid }) =
                (&taken_over, &self.previous)
            {
                tracing::warn!(target: crate::sys::target::PHASE_TARGET, predecessor_pid = pid, "{line}");
            }
            self.previous.log();
            for message in &self.unconfirmed {
                tracing::warn!(target: crate::sys::target::PHASE_TARGET, "{earlier}: {message}");
            }
        } else {
            // The subscriber filters these lines out: they go to stderr rather than nowhere.
            if let Some(line) = &taken_over {
                eprintln!("shutdown-forensics: {line}");
            }
            if let Some(m) = self.previous.message() {
                eprintln!("shutdown-forensics: {m}");
            }
            for m in &self.unconfirmed {
                eprintln!("shutdown-forensics: {earlier}: {m}");
            }
        }
        self.confirm_logged();
        self.record_metrics_of_unfinished();
    }

    /// Records the metrics (feature `metrics`) of the stops this start wrote to the history
    /// for processes that could not (killed, crashed, exited early), once.
    fn record_metrics_of_unfinished(&self) {
        let first = !self.metrics_recorded.swap(true, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        if first {
            for stop in self.stops_written_at_start() {
                crate::verdict::metrics::record(stop);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = first;
    }

    /// The stops this start wrote to the history: the previous run's, and those of
    /// predecessors it had taken over (oldest first).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // only metrics count them
    pub(crate) fn stops_written_at_start(&self) -> impl Iterator<Item = &StopSummary> {
        let previous = match &self.previous_stop {
            Some((stop, true)) => Some(stop),
            _ => None,
        };
        self.takeover_stops.iter().chain(previous)
    }

    /// The previous run's stop as the history keeps it (whoever wrote it), when it had one.
    pub(crate) fn previous_stop(&self) -> Option<&StopSummary> {
        self.previous_stop.as_ref().map(|(stop, _)| stop)
    }

    /// The history of the last stops as this start found it (after writing the previous
    /// run's stop when that was its to write); `None` for a disabled record.
    pub(crate) fn history_at_start(&self) -> Option<&Result<Vec<StopSummary>, Error>> {
        self.history.as_ref()
    }

    /// Keeps this run's context (the first one recorded) for its line in the history.
    pub(crate) fn keep_stop_context(&self, context: &Value) {
        let mut kept = (self.stop_context.lock()).unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some(context.clone());
        }
    }

    /// This run's context, when the signal helper recorded one.
    pub(crate) fn stop_context(&self) -> Option<Value> {
        (self.stop_context.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When this run's record was opened (Unix seconds), for the history; `None` when the
    /// record is disabled.
    pub(crate) fn run_wall_unix_s(&self) -> Option<f64> {
        self.run_wall_unix_s
    }

    /// `flight record <path> was taken over from pid N, which still runs: ...` when this start
    /// found its predecessor alive (its record moved aside, judged once it ends).
    fn taken_over(&self) -> Option<String> {
        let PreviousShutdown::StillRunning { pid } = self.previous else {
            return None;
        };
        let path = self.path.display().to_string();
        let aside = takeover_path(&self.path, pid).display().to_string();
        Some(format!(
            "flight record {} was taken over from pid {pid}, which still runs: two instances \
             share this state directory, or the previous one has not exited yet; its record is \
             kept as {} and judged once it ends; if both are meant to run, give each instance \
             its own state directory",
            Logfmt(&path),
            Logfmt(&aside)
        ))
    }

    /// Records that this start's verdicts reached the logs (or stderr).
    pub(crate) fn confirm_logged(&self) {
        if self.previous.message().is_some() || !self.unconfirmed.is_empty() {
            let note = json!({"kind": "note", "note": crate::verdict::unconfirmed::LOGGED_NOTE});
            let _ = self.append_line(&note, true);
        }
    }

    /// The verdicts on predecessors this record's path was taken over from while they still
    /// ran ([`PreviousShutdown::StillRunning`] at an earlier start) and that have ended since,
    /// read when this record was opened. Their records wait as `<path>.<pid>.takeover` until
    /// then; each is removed once judged.
    /// [`ForensicsBuilder::install`](crate::ForensicsBuilder::install) logs each one's message.
    #[must_use]
    pub fn previous_takeovers(&self) -> &[PreviousShutdown] {
        &self.takeovers
    }

    /// Why this record is disabled (nothing is written), or `None` when it works. Only
    /// [`FlightRecord::open`] returns a disabled record.
    #[must_use]
    pub fn error(&self) -> Option<&Error> {
        self.disabled.as_ref()
    }

    /// Where this record is written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `value` as one line with one `write(2)`. Notes (`essential == false`) are
    /// dropped past the per-run size limit. Returns true when a checkpoint is due (once per
    /// [`CHECKPOINT_EVERY`] bytes; the caller writes it).
    pub(crate) fn append_line(&self, value: &Value, essential: bool) -> io::Result<bool> {
        if !essential && self.written.load(Ordering::Relaxed) > RUN_LIMIT {
            return Ok(false);
        }
        self.append(value)?;
        let written = self.written.load(Ordering::Relaxed);
        let due = self.next_checkpoint.load(Ordering::Relaxed);
        Ok(written >= due
            && self
                .next_checkpoint
                .compare_exchange(
                    due,
                    written + CHECKPOINT_EVERY,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok())
    }

    fn append(&self, value: &Value) -> io::Result<()> {
        let Some(mut file) = self.file.as_ref() else {
            return Ok(());
        };
        let body = crate::record::line_caps::line(value);
        let mut end = self.end.lock().unwrap_or_else(PoisonError::into_inner);
        if end.is_none() {
            *end = file.metadata().ok().map(|m| m.len());
        }
        // After a failed or short write (a full disk, for a moment) the file may end in a
        // fragment: this line starts on a line of its own, so the reader skips only the
        // fragment (a blank line, when the failed write wrote nothing, is skipped too).
        let torn = self.torn.load(Ordering::Relaxed);
        let lead = usize::from(torn)
            + end.map_or(0, |e| page_padding(e + u64::from(torn), body.len() + 1));
        let mut line = Vec::with_capacity(lead + body.len() + 1);
        line.resize(lead, b'\n');
        line.extend_from_slice(&body);
        line.push(b'\n');
        // One write_all on an O_APPEND fd of a regular file: the kernel appends the whole
        // buffer in one write(2), so a concurrent line never lands inside this one.
        if let Err(e) = file.write_all(&line) {
            self.torn.store(true, Ordering::Relaxed);
            *end = None;
            return Err(e);
        }
        *end = end.map(|e| e + line.len() as u64);
        if torn {
            self.torn.store(false, Ordering::Relaxed);
        }
        self.written.fetch_add(line.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Forces written lines to stable storage (`fdatasync`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.as_ref().map_or(Ok(()), File::sync_data)
    }
}

/// Narrows an open file to 0600 when it has group or other bits (`fchmod`, no path race).
fn narrow(file: &File) -> io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_would_cross_a_page_starts_on_the_next_one() {
        assert_eq!(page_padding(0, 100), 0);
        assert_eq!(page_padding(4000, 96), 0, "ends exactly at the page's end");
        assert_eq!(page_padding(4000, 97), 96);
        assert_eq!(page_padding(4096 * 3 + 10, 4086), 0);
        assert_eq!(page_padding(4096 * 3 + 10, 4087), 4086);
        assert_eq!(
            page_padding(10, 4096),
            4086,
            "a line of a whole page fits one"
        );
        assert_eq!(
            page_padding(10, 4097),
            0,
            "larger than a page: it crosses one anyway"
        );
    }

    #[test]
    fn every_line_on_disk_lies_within_one_page_and_the_verdict_reads_through_the_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        let record = FlightRecord::open(&path).unwrap();
        // From another writer's point of view the file may end anywhere: start unaligned.
        for i in 0..400u64 {
            let pad = "x".repeat((i * 37 % 500) as usize);
            record
                .append_line(
                    &json!({"kind": "note", "note": "tick", "value": {"pad": pad}}),
                    true,
                )
                .unwrap();
        }
        let bytes = fs::read(&path).unwrap();
        let lines = crate::record::line_caps::assert_no_line_crosses_a_page(&bytes);
        assert_eq!(lines, 401, "the run line and every note");
        let padding = bytes.iter().filter(|b| **b == b'\n').count() - lines;
        assert!(padding > 0, "400 lines of up to 600 bytes cross pages");
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            matches!(
                FlightRecord::parse(&text),
                PreviousShutdown::NoShutdown { .. }
            ),
            "{:?}",
            FlightRecord::parse(&text)
        );
    }

    const TEAR_CHILD: &str = "SF_TEAR_CHILD";

    /// The child of the test below: appends lines of 1-3 KiB to a record nonstop.
    #[test]
    #[ignore = "run by the test below as a child process"]
    fn tear_child() {
        let Some(path) = std::env::var_os(TEAR_CHILD) else {
            return;
        };
        let record = FlightRecord::open(&path).expect("open");
        println!("writing");
        for i in 0u64.. {
            let pad = "x".repeat(1000 + (i * 997 % 2000) as usize);
            let _ =
                record.append_line(&json!({"kind": "note", "note": "tick", "value": pad}), true);
        }
    }

    #[test]
    fn a_sigkill_during_a_write_never_leaves_a_torn_line() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        // Without the padding the kernel cuts such lines in about 1 of 9 kills on this
        // machine (SECURITY.md); with it, never.
        let dir = tempfile::tempdir().unwrap();
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64)
            | 1;
        for run in 0..40 {
            let path = dir.path().join(format!("flight{run}.jsonl"));
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "record::flight_record::tests::tear_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env(TEAR_CHILD, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let started = BufReader::new(out)
                .lines()
                .any(|l| l.is_ok_and(|l| l.contains("writing")));
            assert!(started, "run {run}: the child never wrote");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(std::time::Duration::from_micros(seed % 20_000));
            child.kill().unwrap();
            let _ = child.wait();
            let bytes = fs::read(&path).unwrap();
            assert!(
                bytes.ends_with(b"\n"),
                "run {run}: a torn line after a SIGKILL ({} bytes)",
                bytes.len()
            );
            let verdict = FlightRecord::parse(&String::from_utf8_lossy(&bytes));
            assert!(
                matches!(verdict, PreviousShutdown::NoShutdown { .. }),
                "run {run}: {verdict:?}"
            );
        }
    }
}
