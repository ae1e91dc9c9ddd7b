//! systemd progress while shutting down: `STATUS=shutting down: <phase>` as phases change and,
//! when asked for, `EXTEND_TIMEOUT_USEC` heartbeats while phases make progress.
//!
//! A heartbeat goes out on a phase change, or on a progress tick when a phase changed within
//! the last step: a wedged phase stops earning extensions after one step, and none is ever sent
//! past the policy's ceiling. The decision is a pure function ([`Progress::on`]); the hook only
//! sends what it says.

use std::sync::Mutex;
use std::time::Duration;

use crate::systemd::{ExtendPolicy, Notifier};
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::hook::{PhaseChange, PhaseEvent};

/// What to send for one phase change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Send {
    pub(crate) status: Option<String>,
    pub(crate) extend: Option<Duration>,
}

/// The hook's memory between calls.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    policy: Option<ExtendPolicy>,
    last_status: String,
    last_extend: Option<Duration>,
    last_change: Duration,
    last_seen: Duration,
    complete: bool,
}

impl Progress {
    pub(crate) fn new(policy: Option<ExtendPolicy>) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    pub(crate) fn on(&mut self, change: &PhaseChange) -> Send {
        // After completion, a phase left open (or a late progress tick) must not tell systemd
        // the service is still shutting down, nor extend its deadline.
        if self.complete {
            return Send::default();
        }
        if matches!(change.event, PhaseEvent::Complete) {
            self.complete = true;
        } else if change.elapsed < self.last_seen {
            // Hooks run after the layer's locks are released: two phases closing on two threads
            // can deliver their changes out of order. The older one would name a phase that
            // has already ended.
            return Send::default();
        }
        self.last_seen = self.last_seen.max(change.elapsed);
        let status = match &change.event {
            PhaseEvent::Complete => "shutdown complete".to_owned(),
            _ if change.open.is_empty() => "shutting down".to_owned(),
            _ => {
                let open: Vec<&str> = change
                    .open
                    .iter()
                    .map(|(label, _)| label.as_str())
                    .collect();
                format!("shutting down: {}", open.join(", "))
            }
        };
        let mut out = Send::default();
        if status != self.last_status {
            self.last_status.clone_from(&status);
            out.status = Some(status);
        }
        let changed = matches!(
            change.event,
            PhaseEvent::Started(_) | PhaseEvent::Ended { .. }
        );
        if changed {
            self.last_change = change.elapsed;
        }
        if let Some(policy) = self.policy {
            let progressing =
                changed || change.elapsed.saturating_sub(self.last_change) < policy.step();
            let due = self
                .last_extend
                .is_none_or(|t| change.elapsed.saturating_sub(t) >= policy.interval());
            if progressing && due && !matches!(change.event, PhaseEvent::Complete) {
                if let Some(by) = policy.next_extension(change.elapsed) {
                    self.last_extend = Some(change.elapsed);
                    out.extend = Some(by);
                }
            }
        }
        out
    }
}

/// Attaches the notify hook to the layer behind `handle`.
pub(crate) fn attach(handle: &ShutdownHandle, notifier: Notifier, policy: Option<ExtendPolicy>) {
    let progress = Mutex::new(Progress::new(policy));
    // Weak: the hook lives inside the layer's state; a strong handle would keep it alive.
    let layer = handle.downgrade();
    handle.attach_hook(Box::new(move |change: &PhaseChange| {
        let send = match progress.lock() {
            Ok(mut p) => p.on(change),
            Err(_) => return,
        };
        // Errors are ignored: a manager that stopped listening must not disturb the shutdown.
        if let Some(status) = send.status {
            let _ = notifier.status(&status);
        }
        if let Some(by) = send.extend {
            if notifier.extend_timeout(by).is_ok() {
                // systemd now kills no earlier than `by` from now: the snapshot before the
                // kill moves with it (and comes 1 s before it once the extensions stop).
                if let Some(h) = layer.upgrade() {
                    h.extend_kill_deadline(change.elapsed.saturating_add(by), by);
                }
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn change(event: PhaseEvent, at: u64, open: &[&str]) -> PhaseChange {
        let open = open
            .iter()
            .map(|l| ((*l).to_owned(), Duration::ZERO))
            .collect();
        PhaseChange::new(event, s(at), open, None)
    }

    #[test]
    fn status_follows_open_phases_and_is_not_repeated() {
        let mut p = Progress::new(None);
        let a = p.on(&change(PhaseEvent::Started("drain".into()), 0, &["drain"]));
        assert_eq!(a.status.as_deref(), Some("shutting down: drain"));
        assert_eq!(
            p.on(&change(PhaseEvent::Progress, 1, &["drain"])).status,
            None
        );
        let b = p.on(&change(
            PhaseEvent::Started("disconnect<slack>".into()),
            2,
            &["disconnect<slack>", "disconnect<irc>"],
        ));
        assert_eq!(
            b.status.as_deref(),
            Some("shutting down: disconnect<slack>, disconnect<irc>")
        );
        let c = p.on(&change(PhaseEvent::Complete, 3, &[]));
        assert_eq!(c.status.as_deref(), Some("shutdown complete"));
        assert_eq!(c.extend, None);
        // A phase still open after finish() keeps ticking: nothing more is sent.
        assert_eq!(
            p.on(&change(PhaseEvent::Progress, 4, &["drain"])),
            Send::default()
        );
    }

    #[test]
    fn a_change_delivered_late_does_not_overwrite_a_newer_status() {
        let mut p = Progress::new(None);
        let newer = p.on(&change(
            PhaseEvent::Ended {
                phase: "disconnect<a>".into(),
                duration: s(1),
            },
            5,
            &[],
        ));
        assert_eq!(newer.status.as_deref(), Some("shutting down"));
        let older = change(
            PhaseEvent::Ended {
                phase: "disconnect<b>".into(),
                duration: s(1),
            },
            4,
            &["disconnect<a>"],
        );
        assert_eq!(p.on(&older), Send::default());
    }

    #[test]
    fn heartbeats_stop_when_a_phase_wedges_and_at_the_ceiling() {
        let mut p = Progress::new(Some(ExtendPolicy::new(s(10), s(25))));
        assert_eq!(
            p.on(&change(PhaseEvent::Started("drain".into()), 0, &["drain"]))
                .extend,
            Some(s(10))
        );
        // Ticks within the step after a change keep extending, once per interval (5 s).
        assert_eq!(
            p.on(&change(PhaseEvent::Progress, 3, &["drain"])).extend,
            None
        );
        assert_eq!(
            p.on(&change(PhaseEvent::Progress, 6, &["drain"])).extend,
            Some(s(10))
        );
        // No phase change for a whole step: wedged, no more extensions.
        assert_eq!(
            p.on(&change(PhaseEvent::Progress, 12, &["drain"])).extend,
            None
        );
        // Progress again: extensions resume, but never past the 25 s ceiling.
        assert_eq!(
            p.on(&change(
                PhaseEvent::Ended {
                    phase: "drain".into(),
                    duration: s(20)
                },
                20,
                &[]
            ))
            .extend,
            Some(s(5))
        );
        assert_eq!(
            p.on(&change(
                PhaseEvent::Started("db_close".into()),
                26,
                &["db_close"]
            ))
            .extend,
            None
        );
    }
}
