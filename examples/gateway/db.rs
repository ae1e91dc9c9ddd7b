//! The session database: SQLite (WAL) owned by one thread, fed through a channel so that no
//! blocking database call runs on the async runtime.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

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

pub fn open(path: &Path) -> rusqlite::Result<(Db, DbThread)> {
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
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("gateway-db".into())
        .spawn(move || run(conn, rx))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok((Db { tx: tx.clone() }, DbThread { tx, thread }))
}

fn run(conn: Connection, rx: mpsc::Receiver<Op>) -> rusqlite::Result<u64> {
    let mut written = 0;
    while let Ok(op) = rx.recv() {
        match op {
            Op::Event { session, what } => {
                conn.execute(
                    "INSERT INTO session_events (session, what) VALUES (?1, ?2)",
                    (session as i64, what),
                )?;
                written += 1;
            }
            Op::Chunk { upload, data } => {
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
    pub fn event(&self, session: u64, what: &'static str) {
        let _ = self.tx.send(Op::Event { session, what });
    }

    /// Stores one chunk of an upload's body as it arrives.
    pub fn chunk(&self, upload: u64, data: Vec<u8>) {
        let _ = self.tx.send(Op::Chunk { upload, data });
    }
}

impl DbThread {
    /// Phase `db_close`: blocking; call it from `spawn_blocking`.
    pub fn close(self) -> rusqlite::Result<u64> {
        let _ = self.tx.send(Op::Close);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(rusqlite::Error::InvalidQuery))
    }
}
