//! The session database: SQLite (WAL) owned by one thread, fed through a bounded channel so
//! that no blocking database call runs on the async runtime, and so that a client uploading
//! faster than the disk writes is slowed down (backpressure reaches its TCP window) instead of
//! the queue growing in memory (issue 20: a 1.5 GiB upload took an unbounded queue to 1.36 GB).

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;

/// Operations queued at most: a few chunks of an upload (a chunk is at most ~400 KiB, as hyper
/// reads them).
const QUEUE: usize = 16;

enum Op {
    Event { session: u64, what: &'static str },
    Chunk { upload: u64, data: Vec<u8> },
    Close,
}

/// A handle to the database thread.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Op>,
}

/// Owns the thread; `close` checkpoints the WAL and closes the connection.
pub struct DbThread {
    tx: mpsc::Sender<Op>,
    thread: JoinHandle<rusqlite::Result<u64>>,
}

/// Opens the database; `write_delay` is added to every chunk written (`--db-write-delay`, a
/// slow disk for demos and tests).
pub fn open(path: &Path, write_delay: Duration) -> rusqlite::Result<(Db, DbThread)> {
    // Not through a symlink planted at the path.
    let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS session_events (
             id INTEGER PRIMARY KEY, session INTEGER NOT NULL, what TEXT NOT NULL,
             at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')));
         CREATE TABLE IF NOT EXISTS upload_chunks (
             id INTEGER PRIMARY KEY, upload INTEGER NOT NULL, data BLOB NOT NULL);",
    )?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("gateway-db".into())
        .spawn(move || run(conn, rx, write_delay))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok((Db { tx: tx.clone() }, DbThread { tx, thread }))
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Op>, delay: Duration) -> rusqlite::Result<u64> {
    let mut written = 0;
    while let Some(op) = rx.blocking_recv() {
        match op {
            Op::Event { session, what } => {
                conn.execute(
                    "INSERT INTO session_events (session, what) VALUES (?1, ?2)",
                    (session as i64, what),
                )?;
                written += 1;
            }
            Op::Chunk { upload, data } => {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                conn.execute(
                    "INSERT INTO upload_chunks (upload, data) VALUES (?1, ?2)",
                    (upload as i64, data),
                )?;
                written += 1;
            }
            Op::Close => break,
        }
    }
    // Fold the WAL back into the main file so the next start has nothing to replay.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(written)
}

impl Db {
    pub async fn event(&self, session: u64, what: &'static str) {
        let _ = self.tx.send(Op::Event { session, what }).await;
    }

    /// Stores one chunk of an upload's body; waits while the queue is full (backpressure).
    pub async fn chunk(&self, upload: u64, data: Vec<u8>) {
        let _ = self.tx.send(Op::Chunk { upload, data }).await;
    }
}

impl DbThread {
    /// Phase `db_close`: blocking; call it from `spawn_blocking`.
    pub fn close(self) -> rusqlite::Result<u64> {
        let _ = self.tx.blocking_send(Op::Close);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(rusqlite::Error::InvalidQuery))
    }
}
