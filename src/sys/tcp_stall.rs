//! Which side of an established TCP connection is stuck, from its two queues
//! (`/proc/self/net/tcp`) and `TCP_INFO` (see [`super::net`]).
//!
//! "No data for 6.4s" alone misleads: a client that stopped reading a large response is
//! silent too, yet the stuck side is its reading, and our writer waits on it with megabytes
//! queued. The send queue, the time since we last sent data and the retransmission counter
//! tell the cases apart. Pure: a decision over numbers, tested on each case.

use std::fmt;
use std::time::Duration;

use super::net::TcpTimes;

/// A side that has done nothing for at least this long is stuck (a transfer that moves sends
/// every round trip, well under a second on any network a shutdown waits on).
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(1);

/// What an established connection is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Sent data is not acknowledged and is being retransmitted: the peer (or the path to it)
    /// is gone.
    PeerNotAcknowledging { unacked_segments: u32 },
    /// We have `queued` bytes for the peer and sent none for `since`: its receive window is
    /// full, it does not read.
    PeerNotReading { queued: u64, since: Duration },
    /// `bytes` arrived and this process has not read them.
    Unread { bytes: u64 },
    /// Data queued for the peer is still moving (sent `since` ago).
    Sending { queued: u64, since: Duration },
    /// Nothing is queued either way and the peer has sent nothing for `since`.
    PeerSilent { since: Duration },
}

impl Stall {
    /// Reads the connection: `send_q` and `recv_q` from `/proc/self/net/tcp`, `times` from
    /// `TCP_INFO` (`None` when it could not be read: then only the queues speak).
    pub(crate) fn of(send_q: u64, recv_q: u64, times: Option<&TcpTimes>) -> Option<Self> {
        if let Some(t) = times {
            if t.unacked > 0 && t.retransmits > 0 {
                return Some(Self::PeerNotAcknowledging {
                    unacked_segments: t.unacked,
                });
            }
        }
        if send_q > 0 {
            // Without TCP_INFO the time of the last send is unknown: not called stuck.
            let since = times?.last_data_sent;
            return Some(if since >= STUCK_AFTER {
                Self::PeerNotReading {
                    queued: send_q,
                    since,
                }
            } else {
                Self::Sending {
                    queued: send_q,
                    since,
                }
            });
        }
        if recv_q > 0 {
            return Some(Self::Unread { bytes: recv_q });
        }
        times.map(|t| Self::PeerSilent {
            since: t.last_data_recv,
        })
    }

    /// The peer is the stuck side, and has been for at least [`STUCK_AFTER`] when that is
    /// measured.
    pub(crate) fn peer_stuck(self) -> bool {
        match self {
            Self::PeerNotAcknowledging { .. } | Self::PeerNotReading { .. } => true,
            Self::PeerSilent { since } => since >= STUCK_AFTER,
            Self::Unread { .. } | Self::Sending { .. } => false,
        }
    }

    /// The text names the peer's side (silent, not reading, not acknowledging), for however
    /// long: what a stuck line counts as an idle peer.
    pub(crate) fn on_peer_side(self) -> bool {
        !matches!(self, Self::Unread { .. } | Self::Sending { .. })
    }

    /// Worth a finding on its own: a stuck peer, or bytes we leave unread.
    pub(crate) fn notable(self) -> bool {
        self.peer_stuck() || matches!(self, Self::Unread { .. })
    }

    /// How long the stuck side has done nothing, when measured (for ordering).
    pub(crate) fn idle(self) -> Duration {
        match self {
            Self::PeerNotReading { since, .. } | Self::PeerSilent { since } => since,
            // Retransmitting or unread: as telling as any silence.
            Self::PeerNotAcknowledging { .. } | Self::Unread { .. } => Duration::MAX,
            Self::Sending { .. } => Duration::ZERO,
        }
    }
}

/// ` no data for 29.8s`, ` peer not reading: 3866624 bytes queued, none sent for 6.4s`, ...:
/// the text a finding appends to a connection (with its leading space).
impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PeerNotAcknowledging { unacked_segments } => write!(
                f,
                " peer not acknowledging: {unacked_segments} segments unacknowledged, \
                 retransmitting"
            ),
            Self::PeerNotReading { queued, since } => write!(
                f,
                " peer not reading: {queued} bytes queued, none sent for {:.1}s",
                since.as_secs_f64()
            ),
            Self::Unread { bytes } => write!(f, " not read by us: {bytes} bytes waiting"),
            Self::Sending { queued, since } => write!(
                f,
                " sending: {queued} bytes queued, last sent {:.1}s ago",
                since.as_secs_f64()
            ),
            Self::PeerSilent { since } => write!(f, " no data for {:.1}s", since.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::net::TcpState;

    fn times(recv_ms: u64, sent_ms: u64, unacked: u32, retransmits: u8) -> TcpTimes {
        TcpTimes {
            state: TcpState::Established,
            last_data_recv: Duration::from_millis(recv_ms),
            last_data_sent: Duration::from_millis(sent_ms),
            unacked,
            retransmits,
        }
    }

    #[test]
    fn each_side_is_told_apart() {
        // The gateway's client that stopped reading: 3.7 MB queued, the request long ago.
        let s = Stall::of(3_866_624, 0, Some(&times(6400, 6400, 0, 0))).unwrap();
        assert_eq!(
            s.to_string(),
            " peer not reading: 3866624 bytes queued, none sent for 6.4s"
        );
        assert!(s.peer_stuck());
        // A download in progress is not stuck, however long the peer has been quiet.
        let s = Stall::of(65_536, 0, Some(&times(30_000, 20, 3, 0))).unwrap();
        assert!(matches!(s, Stall::Sending { .. }) && !s.notable(), "{s:?}");
        // A peer that vanished: retransmissions.
        let s = Stall::of(512, 0, Some(&times(9_000, 200, 1, 4))).unwrap();
        assert!(s
            .to_string()
            .starts_with(" peer not acknowledging: 1 segments"));
        assert!(s.peer_stuck());
        // Bytes we do not read.
        let s = Stall::of(0, 4096, Some(&times(100, 5000, 0, 0))).unwrap();
        assert_eq!(s.to_string(), " not read by us: 4096 bytes waiting");
        assert!(s.notable() && !s.peer_stuck());
        // A silent peer, as before.
        let s = Stall::of(0, 0, Some(&times(29_800, 29_800, 0, 0))).unwrap();
        assert_eq!(s.to_string(), " no data for 29.8s");
        assert!(s.peer_stuck());
        assert!(!Stall::of(0, 0, Some(&times(300, 300, 0, 0)))
            .unwrap()
            .peer_stuck());
    }

    #[test]
    fn without_tcp_info_only_the_queues_speak() {
        assert_eq!(Stall::of(0, 10, None), Some(Stall::Unread { bytes: 10 }));
        // A queue alone does not say for how long: not called stuck, nothing made up.
        assert_eq!(Stall::of(10, 0, None), None);
        assert_eq!(Stall::of(0, 0, None), None);
    }
}
