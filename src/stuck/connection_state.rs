//! One HTTP connection as the stuck snapshot reports it: the public, serializable record
//! (filled by `connections.rs`).

use serde::{Deserialize, Serialize};

use crate::connections::HttpState;

/// One HTTP connection of the app (served through `shutdown_forensics::http`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectionState {
    /// The client's address.
    pub peer: String,
    /// Our address.
    pub local: String,
    /// The socket's descriptor.
    pub fd: Option<i32>,
    /// What it is doing.
    pub state: HttpState,
    /// The request's method, while one is in flight (or the one that upgraded it), escaped.
    pub method: Option<String>,
    /// The request's path (at most 200 bytes), escaped.
    pub path: Option<String>,
    /// The protocol it was upgraded to (`websocket`), escaped.
    pub upgrade: Option<String>,
    /// Seconds since it was accepted.
    pub age_s: f64,
    /// Seconds in its current state.
    pub state_s: f64,
    /// Requests it has carried.
    pub requests: u64,
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes written to the socket.
    pub bytes_out: u64,
    /// Bytes of the current response written so far, while streaming.
    pub response_bytes: Option<u64>,
    /// Seconds since the client last sent data (`None`: never).
    pub last_read_s: Option<f64>,
    /// Seconds since we last wrote data (`None`: never).
    pub last_write_s: Option<f64>,
    /// Seconds since a write found the send buffer full and none went through since: the
    /// client does not read.
    pub write_blocked_s: Option<f64>,
    /// Bytes sent and not yet acknowledged by the client (the kernel's send queue), when the
    /// socket was found (`None`: closed since, or unreadable).
    pub send_q: Option<u64>,
    /// Bytes received and not yet read by the server.
    pub recv_q: Option<u64>,
    /// The sentence a finding says about it.
    pub summary: String,
}
