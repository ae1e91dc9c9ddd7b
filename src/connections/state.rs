//! What a tracked HTTP connection is doing, as the snapshot names it, and the target of the
//! spans `http/` makes.

use serde::{Deserialize, Serialize};

/// What an HTTP connection is doing, as a stuck snapshot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HttpState {
    /// Open, no request in flight, nothing of a next request received: a keep-alive connection
    /// (or one that never sent a request).
    Idle,
    /// Bytes of a request head arrived but the head is not complete.
    ReadingHead,
    /// A request is in flight: its handler runs and the request body has been read.
    InFlight,
    /// A request is in flight and its body is still being received.
    Receiving,
    /// The response head was sent and its body is still being sent.
    Streaming,
    /// The connection was upgraded (`101 Switching Protocols`, e.g. a WebSocket).
    Upgraded,
}

impl HttpState {
    /// `idle`, `reading_head`, `in_flight`, `receiving`, `streaming` or `upgraded`, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::ReadingHead => "reading_head",
            Self::InFlight => "in_flight",
            Self::Receiving => "receiving",
            Self::Streaming => "streaming",
            Self::Upgraded => "upgraded",
        }
    }
}

/// The target of the `connection` and `request` spans of `http/`.
pub(crate) const HTTP_TARGET: &str = "shutdown_forensics::http";
