//! [`ShutdownSignal`]: what the app awaits (or blocks on) until the shutdown is triggered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::capture::ShutdownContext;
use crate::signal_helper::listener::ListenerState;

/// An awaitable (and blocking) shutdown trigger; clone it into every task that must stop.
///
/// Every waiter woken by the first signal gets the same `Arc<ShutdownContext>`, the one
/// captured then. Under systemd, when the service manager sent the signal, the listener then
/// asks it whether a stop job runs ([`ShutdownContext::manager_job`]); from its answer on,
/// [`Self::context`] and later waiters get the context with it filled in.
///
/// ```
/// use std::time::Duration;
/// use shutdown_forensics::Forensics;
///
/// # fn main() -> Result<(), shutdown_forensics::Error> {
/// let forensics = Forensics::builder().with_stop_budget(None, Duration::ZERO).install()?;
/// let signal = forensics.signal();
/// assert!(signal.wait_timeout(Duration::from_millis(1)).is_none()); // nothing yet
///
/// let task = signal.clone();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let waiter = rt.spawn(async move { task.recv().await });
///
/// signal.trigger(); // as an admin endpoint would; a SIGTERM does the same
/// let ctx = signal.wait();
/// assert_eq!(ctx.signal, "UNKNOWN"); // no signal: the app triggered it
/// assert!(std::sync::Arc::ptr_eq(&ctx, &rt.block_on(waiter).unwrap()));
/// assert_eq!(signal.signal_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    pub(crate) shared: Arc<ListenerState>,
}

impl ShutdownSignal {
    /// Waits (async) until the shutdown is triggered; returns its context. Works on any async
    /// runtime; never blocks a runtime thread.
    pub async fn recv(&self) -> Arc<ShutdownContext> {
        let mut rx = self.shared.tx.subscribe();
        loop {
            if let Some(ctx) = rx.borrow_and_update().clone() {
                return ctx;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `ListenerState`, which we hold: this cannot close. Stay pending.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Blocks the calling thread until the shutdown is triggered; returns its context.
    pub fn wait(&self) -> Arc<ShutdownContext> {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(ctx) = slot.as_ref() {
                return Arc::clone(ctx);
            }
            slot = self.shared.cv.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Like [`Self::wait`], giving up after `limit`.
    pub fn wait_timeout(&self, limit: Duration) -> Option<Arc<ShutdownContext>> {
        let slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (slot, _) = self
            .shared
            .cv
            .wait_timeout_while(slot, limit, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        slot.clone()
    }

    /// The context, if the shutdown was triggered.
    #[must_use]
    pub fn context(&self) -> Option<Arc<ShutdownContext>> {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many shutdown signals arrived so far (the first included).
    #[must_use]
    pub fn signal_count(&self) -> u32 {
        self.shared.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A [`CancellationToken`](tokio_util::sync::CancellationToken) cancelled when the
    /// shutdown begins (the first signal or [`Self::trigger`]), right after the context is
    /// captured and the waiters are woken; already cancelled when it has begun. For apps built
    /// around tokio-util: `token.cancelled().await`, `TaskTracker`, `select!` arms.
    ///
    /// Each call returns a child token: cancelling it (or a clone) stops only its holders and
    /// never starts the shutdown. Feature `tokio-util`.
    ///
    /// ```
    /// # fn main() -> Result<(), shutdown_forensics::Error> {
    /// let forensics = shutdown_forensics::Forensics::builder()
    ///     .with_signals(&[libc::SIGUSR1])
    ///     .with_stop_budget(None, std::time::Duration::ZERO)
    ///     .install()?;
    /// let token = forensics.signal().cancellation_token();
    /// assert!(!token.is_cancelled());
    /// forensics.signal().trigger();
    /// assert!(token.is_cancelled());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    #[must_use]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        self.shared.token.child_token()
    }

    /// Triggers the shutdown from the app itself (an admin endpoint, a fatal error): the same
    /// capture, log line and diagnostic as a signal, with signal `UNKNOWN` and no sender. It
    /// runs on the calling thread (a `/proc` read and, when configured, a process spawn: a
    /// few milliseconds); after the first call it only counts and logs a repeat.
    pub fn trigger(&self) {
        self.shared.on_signal(None, None, Instant::now());
    }
}
