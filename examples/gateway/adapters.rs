//! Chat adapters: each one a real long-lived TCP connection to a local peer the example starts.
//!
//! The protocol is line-based: the adapter sends `PING` every 200 ms and the peer answers
//! `PONG`; at shutdown the adapter sends `NOTICE` (phase `notify`), then `BYE` and waits for
//! `BYE-ACK` (phase `disconnect<name>`).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A local peer: accepts one adapter connection and answers its lines.
pub async fn start_peer(name: String) -> io::Result<(std::net::SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match line.as_str() {
                "PING" => "PONG\n",
                "NOTICE" => "NOTICE-ACK\n",
                "BYE" => {
                    // A peer that takes a moment to flush its side, as real services do.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = w.write_all(b"BYE-ACK\n").await;
                    break;
                }
                _ => continue,
            };
            if w.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        tracing::debug!(peer = %name, "peer closed");
    });
    Ok((addr, task))
}

/// The two halves of an adapter's connection.
struct Conn {
    writer: OwnedWriteHalf,
    reader: BufReader<OwnedReadHalf>,
}

/// A connected adapter. Its heartbeat task owns the connection until shutdown.
pub struct Adapter {
    pub name: String,
    stop_heartbeat: watch::Sender<bool>,
    heartbeat: Option<JoinHandle<Conn>>,
    conn: Option<Conn>,
}

impl Adapter {
    pub async fn connect(name: String, addr: std::net::SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let (tx, mut rx) = watch::channel(false);
        let heartbeat = tokio::spawn(async move {
            let mut conn = Conn {
                writer: w,
                reader: BufReader::new(r),
            };
            let mut line = String::new();
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if conn.writer.write_all(b"PING\n").await.is_err() { break; }
                        line.clear();
                        if conn.reader.read_line(&mut line).await.unwrap_or(0) == 0 { break; }
                    }
                }
            }
            conn
        });
        Ok(Self {
            name,
            stop_heartbeat: tx,
            heartbeat: Some(heartbeat),
            conn: None,
        })
    }

    /// Stops the heartbeat and takes the connection back.
    async fn conn(&mut self) -> io::Result<&mut Conn> {
        if let Some(hb) = self.heartbeat.take() {
            let _ = self.stop_heartbeat.send(true);
            self.conn = Some(hb.await.map_err(io::Error::other)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection lost"))
    }

    /// Phase `notify`: tells the peer we are going down.
    pub async fn notify(&mut self) -> io::Result<()> {
        request(self.conn().await?, "NOTICE", "NOTICE-ACK").await
    }

    /// Phase `disconnect<name>`: says goodbye and waits for the peer's acknowledgement.
    pub async fn disconnect(mut self) -> io::Result<()> {
        let conn = self.conn().await?;
        request(conn, "BYE", "BYE-ACK").await?;
        conn.writer.shutdown().await
    }
}

async fn request(conn: &mut Conn, send: &str, expect: &str) -> io::Result<()> {
    conn.writer
        .write_all(format!("{send}\n").as_bytes())
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.reader.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
        }
        // A PONG from the last heartbeat may still be in flight.
        if line.trim_end() == expect {
            return Ok(());
        }
    }
}
