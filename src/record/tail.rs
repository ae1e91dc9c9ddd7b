//! Reading the previous run's record at a start: its last [`READ_LIMIT`] bytes (from their
//! first whole line), whether its process still runs (a takeover), and whether it ends inside
//! a line (a write cut short). Pure where it can be; the I/O never follows a symlink nor
//! blocks on a FIFO.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use crate::verdict::{parse_tail, PreviousShutdown};

/// How much of the previous run's record is read at startup.
pub(crate) const READ_LIMIT: u64 = 64 * 1024;

/// The verdict on a record's tail: a live predecessor first, then the lines.
pub(crate) fn judge(text: &str, oversized: bool) -> PreviousShutdown {
    still_running(text).unwrap_or_else(|| parse_tail(text, oversized))
}

/// The last [`READ_LIMIT`] bytes of the regular file at `path` (from its first whole line),
/// with the open file, and whether the window held no whole line at all (its last line is
/// larger than the window). Never follows a symlink nor blocks on a FIFO; `Ok(None)` when
/// absent.
pub(crate) fn read_tail(path: &Path) -> io::Result<Option<(File, String, bool)>> {
    let Some(mut file) = crate::sys::private_file::open_read(path)? else {
        return Ok(None);
    };
    let meta = file.metadata()?;
    let start = meta.len().saturating_sub(READ_LIMIT);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    (&mut file).take(READ_LIMIT).read_to_end(&mut buf)?;
    let (text, oversized) = window_text(&buf, start > 0);
    Ok(Some((file, text, oversized)))
}

/// The records in a window of a record's bytes, and whether it held no whole line. When the
/// window starts `mid_line` (not at the file's start), its first partial line is not a record.
pub(crate) fn window_text(window: &[u8], mid_line: bool) -> (String, bool) {
    let mut text = String::from_utf8_lossy(window).into_owned();
    if mid_line {
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    let oversized = mid_line && text.trim().is_empty();
    (text, oversized)
}

/// Our start time in clock ticks after boot: with the pid, it names this process uniquely.
pub(crate) fn own_start_time() -> Option<u64> {
    crate::sys::proc::ProcRoot::default()
        .stat(None, &mut Vec::new())
        .map(|s| s.start_time)
}

/// [`PreviousShutdown::StillRunning`] when the recorded process is alive: same pid, same
/// start time, and not us.
///
/// After a reboot, pids and start times (ticks since boot) repeat: a record that names another
/// boot (its `boot_id` differs from ours) is never "still running".
fn still_running(text: &str) -> Option<PreviousShutdown> {
    let (pid, start) = crate::verdict::run_identity(text)?;
    if pid == std::process::id() {
        return None;
    }
    let recorded_boot = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r.get("kind").and_then(Value::as_str) == Some("run"))
        .and_then(|r| r.get("boot_id")?.as_str().map(str::to_owned));
    if let (Some(recorded), Some(now)) = (recorded_boot, boot_id()) {
        if recorded != now {
            return None;
        }
    }
    let alive = crate::sys::proc::ProcRoot::default().stat(Some(pid), &mut Vec::new())?;
    (alive.start_time == start && alive.state != 'Z')
        .then_some(PreviousShutdown::StillRunning { pid })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), when the kernel offers one.
pub(crate) fn boot_id() -> Option<String> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    let bytes = crate::sys::private_file::read_bounded(path, 64).ok()??;
    let id = String::from_utf8(bytes).ok()?.trim().to_owned();
    (!id.is_empty()).then_some(id)
}

/// Whether the file's last byte is not a newline (an earlier write was cut short); false for
/// an empty file or when it cannot be read.
pub(crate) fn ends_mid_line(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let Some(last) = file.metadata().ok().and_then(|m| m.len().checked_sub(1)) else {
        return false;
    };
    let mut byte = [0u8];
    matches!(file.read_at(&mut byte, last), Ok(1) if byte[0] != b'\n')
}
