//! The signal path's three `/proc` files, kept open and read again at each capture, with the
//! content checks that catch a descriptor the app closed and reused.

use std::fs::File;
use std::io;
use std::sync::Arc;

use crate::sys::proc::{self as procfs, ProcRoot};

/// The signal path's `/proc` files, opened once and read again from offset 0 at each capture
/// (`/proc` regenerates them then): a thread that wakes cold pays about half as much for a
/// `pread(2)` as for `open` + `read` + `close` (see BENCHMARKS.md). Any failure, or content
/// that is not what the file should hold, falls back to reading by path.
#[derive(Debug, Clone, Default)]
pub(super) struct OpenFiles {
    /// The process that opened them: a forked child must not read its parent's status.
    pub(super) owner: u32,
    pub(super) status: Option<Arc<File>>,
    /// The parent's `stat` with its pid: used only while that is still the parent.
    pub(super) parent_stat: Option<(u32, Arc<File>)>,
    pub(super) loadavg: Option<Arc<File>>,
}

impl OpenFiles {
    pub(super) fn open(proc: &ProcRoot, ppid: Option<u32>) -> Self {
        let parent_stat = ppid.and_then(|ppid| {
            let file = proc.open(Some(ppid), "stat").ok()?;
            // Still our parent after the open: then the file is that process's (a pid is not
            // reused while it is someone's parent) and stays so (reads fail once it is gone).
            (std::os::unix::process::parent_id() == ppid).then(|| (ppid, Arc::new(file)))
        });
        Self {
            owner: std::process::id(),
            status: proc.open(None, "status").ok().map(Arc::new),
            parent_stat,
            loadavg: proc.open_root("loadavg").ok().map(Arc::new),
        }
    }

    /// Reads `file` when this process (`pid`) opened it and what it reads `looks_right`;
    /// else calls `by_path`. The check guards against a descriptor that the app closed behind
    /// our back and that now holds another file. `ESRCH` (the process behind the file is gone)
    /// is final: a path could find another process that took over the pid.
    pub(super) fn read(
        &self,
        pid: u32,
        file: Option<&File>,
        buf: &mut Vec<u8>,
        looks_right: impl FnOnce(&[u8]) -> bool,
        by_path: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Some(f) = file.filter(|_| self.owner == pid) {
            match procfs::read_file_bounded(f, buf, procfs::PID_FILE_LIMIT) {
                Ok(()) if looks_right(buf) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(e),
                _ => {}
            }
        }
        by_path(buf)
    }
}

/// `/proc/<pid>/stat` of `pid`: it starts with `<pid> (`.
pub(super) fn is_stat_of(text: &[u8], pid: u32) -> bool {
    text.strip_prefix(pid.to_string().as_bytes())
        .is_some_and(|rest| rest.starts_with(b" ("))
}

/// `/proc/<pid>/status` of `pid`: it has the line `Tgid:\t<pid>`.
pub(super) fn is_status_of(text: &[u8], pid: u32) -> bool {
    let line = format!("\nTgid:\t{pid}\n");
    text.windows(line.len()).any(|w| w == line.as_bytes())
}

/// `/proc/loadavg`: five fields, the fourth `running/total`.
pub(super) fn is_loadavg(text: &[u8]) -> bool {
    let fields: Vec<&[u8]> = text
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
        .collect();
    fields.len() == 5 && fields[3].contains(&b'/')
}
