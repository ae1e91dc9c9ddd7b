//! The session store: an append-only log of session events (`sessions.jsonl`, one JSON line
//! each, mode 0600) owned by one thread and fed through a channel, so that no blocking write
//! runs on the async runtime. Closing it flushes and `fsync`s what was written: the
//! `db_close` phase a real database's close would be.
//!
//! (It was SQLite until the example's first build had to compile the bundled SQLite, ~30 s of
//! the ~3.5 min a new user waited; the shutdown it demonstrates is the same.)

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

enum Op {
    Event { session: u64, what: &'static str },
    Close,
}

/// A handle to the store's thread.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Op>,
}

/// Owns the thread; `close` flushes, syncs and closes the log.
pub struct DbThread {
    tx: mpsc::Sender<Op>,
    thread: JoinHandle<io::Result<u64>>,
}

pub fn open(path: &Path) -> io::Result<(Db, DbThread)> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("gateway-db".into())
        .spawn(move || run(file, rx))?;
    Ok((Db { tx: tx.clone() }, DbThread { tx, thread }))
}

fn run(file: File, rx: mpsc::Receiver<Op>) -> io::Result<u64> {
    let mut out = BufWriter::new(file);
    let mut written = 0;
    while let Ok(op) = rx.recv() {
        match op {
            Op::Event { session, what } => {
                let at = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                writeln!(
                    out,
                    r#"{{"session":{session},"what":"{what}","at":{at:.6}}}"#
                )?;
                written += 1;
            }
            Op::Close => break,
        }
    }
    // What the next start reads must be on disk before we say the store is closed.
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(written)
}

impl Db {
    pub fn event(&self, session: u64, what: &'static str) {
        let _ = self.tx.send(Op::Event { session, what });
    }
}

impl DbThread {
    /// Phase `db_close`: blocking; call it from `spawn_blocking`.
    pub fn close(self) -> io::Result<u64> {
        let _ = self.tx.send(Op::Close);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the store's thread panicked")))
    }
}
