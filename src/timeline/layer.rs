//! The `tracing_subscriber::Layer` that turns phase spans into a shutdown timeline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::record::flight_record::FlightRecord;
use crate::record::lock::RecordLock;
use crate::stuck::abandoned::{self, Abandoned};
use crate::stuck::fields;
use crate::stuck::spans::{SpanFilter, SpanTracker};
use crate::sys::clock::{Clock, ManualClock};
use crate::sys::target::PHASE_TARGET;
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::hook::PhaseChange;
use crate::timeline::phase_fields::PhaseFields;
use crate::timeline::state::{Config, State, Timeline};

/// Opens a shutdown phase: an INFO span with target [`PHASE_TARGET`].
///
/// `phase!("drain", active_at_start = 3)` is `tracing::info_span!(target: "shutdown", "drain",
/// active_at_start = 3)`. The field `adapter` names the instance (`disconnect<slack>`) and
/// `budget_s` sets the phase's budget in seconds.
///
/// ```
/// use shutdown_forensics::phase;
///
/// let span = phase!("disconnect", adapter = "slack", budget_s = 5.0, done = tracing::field::Empty);
/// let _guard = span.enter();
/// span.record("done", true);
/// ```
#[macro_export]
macro_rules! phase {
    ($name:expr $(,)?) => {
        $crate::__tracing::info_span!(target: $crate::PHASE_TARGET, $name)
    };
    ($name:expr, $($fields:tt)+) => {
        $crate::__tracing::info_span!(target: $crate::PHASE_TARGET, $name, $($fields)+)
    };
}

/// What the layer keeps in a phase span's extensions.
#[derive(Debug, Clone, Copy)]
enum SpanRole {
    /// A phase: its index in the shared state.
    Phase(usize),
    /// A root span named `shutdown`: its open begins the shutdown, its close finishes it.
    Root,
}

/// A layer that turns phase spans (target [`PHASE_TARGET`]) into `+X.XXs` events, a
/// [`ShutdownReport`](crate::report::ShutdownReport) and, optionally, a [`FlightRecord`].
///
/// Other spans and all events pass through untouched; events are not looked at. Other spans
/// are tracked for [stuck snapshots](ShutdownHandle::stuck_snapshot) (so that a request that
/// began before the stop and now waits on its peer can be named): a span's open claims a slot
/// of one table with a compare-and-swap, its exit stores a time and a thread id there (the
/// time is one load of a word that a thread, `shutdown-clock`, sets every 20 ms: one per
/// process, started by the first layer that tracks spans, 50 wake-ups a second), its close
/// empties it, and enter and exit push and pop the thread's own stack of entered spans; a
/// span entered, exited and closed on other threads than its opener's takes the same path.
/// Its fields are captured too: short ones into its slot, longer ones into the span's
/// registry extensions (see BENCHMARKS.md for the costs). [`ShutdownLayerBuilder::with_stuck_spans`] narrows that to the spans that matter;
/// [`ShutdownLayerBuilder::without_span_tracking`] turns it off (and starts no thread),
/// leaving one string comparison per new span and one atomic load per callback while no
/// phase span is alive (a registry lookup while one is).
///
/// The layer's own events are never emitted while it holds its state lock or a span's
/// extensions; they are emitted under its re-entrant record lock, which keeps each phase's
/// log lines in the same order as its flight-record lines. Hooks run outside every lock.
///
/// ```
/// use shutdown_forensics::{ShutdownLayer, phase};
/// use std::time::Duration;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let layer = ShutdownLayer::builder()
///     .with_phase_budget("drain", Duration::from_secs(30))
///     .with_total_budget(Duration::from_secs(90))
///     .build();
/// let handle = layer.handle();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     phase!("drain").in_scope(|| {});
/// });
/// assert_eq!(handle.report().phases.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownLayer {
    shared: Arc<Timeline>,
}

impl ShutdownLayer {
    /// A layer with defaults: no budgets, no flight record, the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to configure budgets, the flight record, the clock and a progress hook.
    pub fn builder() -> ShutdownLayerBuilder {
        ShutdownLayerBuilder::default()
    }

    /// A handle to begin, finish, record and report on this layer's shutdown.
    #[must_use]
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The handle of the `ShutdownLayer` in the current default subscriber, if it has one.
pub(crate) fn in_current_subscriber() -> Option<ShutdownHandle> {
    tracing_core::dispatcher::get_default(|d| {
        d.downcast_ref::<ShutdownLayer>().map(ShutdownLayer::handle)
    })
}

impl Default for ShutdownLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// Configures a [`ShutdownLayer`]; made by [`ShutdownLayer::builder`].
#[must_use]
pub struct ShutdownLayerBuilder {
    config: Config,
    clock: Clock,
    record: Option<FlightRecord>,
    hook: Option<crate::timeline::state::Hook>,
    span_filter: Option<SpanFilter>,
    track_spans: bool,
}

impl Default for ShutdownLayerBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                progress_interval: Duration::from_secs(1),
                stuck_on_budget: true,
                cpu_sample_gap: crate::stuck::collect::CPU_SAMPLE_GAP,
                ..Config::default()
            },
            clock: Clock::System,
            record: None,
            hook: None,
            span_filter: None,
            track_spans: true,
        }
    }
}

impl std::fmt::Debug for ShutdownLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownLayerBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("record", &self.record)
            .field("hook", &self.hook.is_some())
            .field("track_spans", &self.track_spans)
            .field("span_filter", &self.span_filter.is_some())
            .finish()
    }
}

impl ShutdownLayerBuilder {
    /// Sets the budget of phase `phase` (a label like `disconnect<slack>`, or a span name for
    /// all its instances). Default: none; a span's `budget_s` field takes precedence.
    pub fn with_phase_budget(mut self, phase: impl Into<String>, budget: Duration) -> Self {
        let phase = phase.into();
        self.config.budgets.retain(|(k, _)| *k != phase);
        self.config.budgets.push((phase, budget));
        self
    }

    /// Sets the whole shutdown's budget, e.g. the supervisor's stop timeout. The report states
    /// the margin to it; passing it logs `+90.00s shutdown over budget (90.00s)`. Default: none.
    pub fn with_total_budget(mut self, budget: Duration) -> Self {
        self.config.total_budget = Some(budget);
        self
    }

    /// Writes every step to `record` as well. Default: no flight record.
    pub fn with_flight_record(mut self, record: FlightRecord) -> Self {
        self.record = Some(record);
        self
    }

    /// Reads time from `clock` instead of the system clock (for tests). Default: system clock.
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Calls `hook` when a phase starts or ends, when the shutdown completes, and every
    /// progress interval while phases run. It runs outside every lock of this crate and
    /// should be quick. Default: none.
    pub fn on_phase_change(mut self, hook: impl Fn(&PhaseChange) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// How often the hook gets [`PhaseEvent::Progress`](crate::report::PhaseEvent::Progress) while
    /// phases run. Default: 1 s.
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.config.progress_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Tracks only the spans for which `filter` returns true, for stuck snapshots (see
    /// [`ShutdownHandle::stuck_snapshot`]). Default: every span except phases (whose own
    /// bookkeeping is the timeline). Tracking costs one compare-and-swap and a few stores per
    /// span, capturing a span's fields an extension of the registry (see BENCHMARKS.md); a
    /// filter by target or name cuts it to the spans that matter, e.g. requests.
    ///
    /// ```
    /// use shutdown_forensics::ShutdownLayer;
    /// let layer = ShutdownLayer::builder()
    ///     .with_stuck_spans(|meta| meta.target().starts_with("my_app"))
    ///     .build();
    /// ```
    pub fn with_stuck_spans(
        mut self,
        filter: impl Fn(&tracing_core::Metadata<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.span_filter = Some(Arc::new(filter));
        self.track_spans = true;
        self
    }

    /// Tracks no spans: stuck snapshots then list threads and sockets only, and the layer
    /// costs other spans nothing beyond a target comparison. Default: tracking on.
    pub fn without_span_tracking(mut self) -> Self {
        self.track_spans = false;
        self
    }

    /// Whether a phase still open past its budget gets a stuck snapshot (one WARN line with
    /// the findings, a flight-record line, an entry in the report). Default: true.
    pub fn with_stuck_snapshot_on_budget(mut self, enabled: bool) -> Self {
        self.config.stuck_on_budget = enabled;
        self
    }

    /// The gap between a stuck snapshot's two samples of every thread's CPU time, which tell
    /// a spinning thread from a blocked one; the snapshot takes at least this long. Zero takes
    /// one sample: no CPU figures, and a thread sleeping in a call counts as blocked. With a
    /// kill deadline near, the gap is cut to a quarter of the time left, so that the snapshot
    /// is recorded before the kill. Default: 150 ms.
    pub fn with_stuck_cpu_sample_gap(mut self, gap: Duration) -> Self {
        self.config.cpu_sample_gap = gap.min(Duration::from_secs(2));
        self
    }

    /// Builds the layer.
    #[must_use]
    pub fn build(self) -> ShutdownLayer {
        ShutdownLayer {
            shared: Arc::new(Timeline {
                clock: self.clock,
                config: self.config,
                state: Mutex::new(State::default()),
                record_lock: RecordLock::default(),
                log_order: Default::default(),
                log_thread: Default::default(),
                record: self.record,
                dispatch: OnceLock::new(),
                hook: self.hook,
                late_hook: OnceLock::new(),
                open_phases: AtomicUsize::new(0),
                phase_ids: Default::default(),
                watchdog: Mutex::new(None),
                spans: {
                    let spans = SpanTracker::new(self.span_filter);
                    if self.track_spans {
                        spans.start_clock();
                    }
                    spans
                },
                track_spans: self.track_spans,
                diagnostic_path: OnceLock::new(),
                snapshots_in_flight: Mutex::new(0),
                snapshot_done: Condvar::new(),
                startup: Default::default(),
            }),
        }
    }
}

impl ShutdownLayer {
    /// The layer's state, for the crate's own tests.
    #[cfg(test)]
    pub(crate) fn timeline(&self) -> &Arc<Timeline> {
        &self.shared
    }

    /// Whether span `id` may be a phase span: while none is open, one atomic load says no;
    /// while some are, a few (`timeline/phase_ids.rs`). The phase work is out of line, so
    /// that this path stays a few instructions.
    #[inline]
    fn maybe_phase(&self, id: &Id) -> bool {
        self.shared.open_phases.load(Ordering::Relaxed) != 0
            && self.shared.phase_ids.may_contain(id.into_u64())
    }

    /// The phase behind span `id`, if it is one (extensions read lock taken and released).
    fn phase_of<S>(&self, id: &Id, ctx: &Context<'_, S>) -> Option<SpanRole>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span = ctx.span(id)?;
        if span.metadata().target() != PHASE_TARGET {
            return None;
        }
        let ext = span.extensions().get::<SpanRole>().copied();
        ext
    }
}

impl ShutdownLayer {
    /// Spans the closing phase leaves open, when that is news: it ran out of its budget (it
    /// gave up on them), and they were in flight since before the stop and not reported yet
    /// (`stuck/abandoned.rs`). Any other close costs one look at the phase's bookkeeping.
    fn abandoned<S>(&self, phase: &Id, index: usize, ctx: &Context<'_, S>) -> Option<Abandoned>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if !self.shared.track_spans {
            return None;
        }
        let (before, reported) = self.shared.gave_up(index)?;
        let span = ctx.span(phase)?;
        let scope = span.scope().skip(1).map(|s| s.id().into_u64());
        let render = |id: u64, meta: &'static tracing_core::Metadata<'static>| {
            let fields = ctx
                .span(&Id::from_u64(id))
                .and_then(|s| crate::stuck::views::fields_of(&s))
                .or_else(|| crate::stuck::views::slot_fields_of(&self.shared.spans, id));
            crate::stuck::views::render_span(meta.name(), fields.as_ref())
        };
        abandoned::find(&self.shared.spans, before, scope, &reported, render)
    }
}

impl<S> Layer<S> for ShutdownLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        meta: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::Interest {
        // Once per callsite, not per span: a span named like a budgeted phase that is not a
        // phase (its budget never applies; said at finish, `timeline/budget_check.rs`).
        if meta.is_span()
            && meta.target() != PHASE_TARGET
            && self
                .shared
                .config
                .budgets
                .iter()
                .any(|(k, _)| k == meta.name())
        {
            self.shared
                .startup
                .note_misnamed(meta.name(), meta.target());
        }
        // What the default gives a layer that enables everything.
        tracing_core::Interest::always()
    }

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // The first subscriber wins; events from other threads go to it.
        if self.shared.dispatch.set(subscriber.downgrade()).is_ok() {
            self.shared.startup.subscribed(subscriber);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if meta.target() != PHASE_TARGET {
            let spans = &self.shared.spans;
            if self.shared.track_spans && spans.wants(meta) {
                // A snapshot names it the same whatever formats the app's logs: its fields,
                // in its slot when they fit.
                let captured = if meta.fields().is_empty() {
                    fields::SlotFields::NONE
                } else {
                    fields::capture_open(attrs, id, &ctx)
                };
                spans.open_with(id.into_u64(), meta, &captured);
            }
            return;
        }
        self.new_phase_span(attrs, id, &ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.shared.track_spans {
            self.shared.spans.enter(id.into_u64());
        }
        if self.maybe_phase(id) {
            self.entered(id, &ctx);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.shared.track_spans {
            self.shared.spans.exit(id.into_u64());
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.shared.track_spans {
            let spans = &self.shared.spans;
            fields::capture_recorded(id, values, &ctx, |meta| {
                (meta.target() != PHASE_TARGET && spans.wants(meta)).then(|| {
                    (spans.slot_fields(id.into_u64()))
                        .map_or_else(fields::SpanFields::default, |f| f.span_fields())
                })
            });
        }
        if self.maybe_phase(id) {
            self.recorded(id, values, &ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.shared.track_spans {
            self.shared.spans.close(id.into_u64());
        }
        if self.maybe_phase(&id) {
            self.closed(id, &ctx);
        }
    }
}

/// The phase work of the callbacks, out of line.
impl ShutdownLayer {
    #[cold]
    #[inline(never)]
    fn new_phase_span<S>(&self, attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = attrs.metadata();
        self.shared.open_phases.fetch_add(1, Ordering::Relaxed);
        self.shared.phase_ids.add(id.into_u64());
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut root = meta.name() == "shutdown";
        let mut parent = None;
        for ancestor in span.scope().skip(1) {
            match ancestor.extensions().get::<SpanRole>() {
                Some(SpanRole::Phase(i)) => {
                    parent = Some(*i);
                    root = false;
                    break;
                }
                Some(SpanRole::Root) => break,
                None => {}
            }
        }
        let ext = if root {
            let now = self.shared.clock.now();
            self.shared.begin(now, None);
            SpanRole::Root
        } else {
            let mut fields = PhaseFields::default();
            attrs.record(&mut fields);
            match self.shared.open_phase(meta.name(), fields, parent) {
                Some(i) => SpanRole::Phase(i),
                None => return,
            }
        };
        span.extensions_mut().insert(ext);
    }

    #[inline(never)]
    fn entered<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(SpanRole::Phase(i)) = self.phase_of(id, ctx) {
            self.shared.enter_phase(i);
        }
    }

    #[inline(never)]
    fn recorded<S>(&self, id: &Id, values: &Record<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(SpanRole::Phase(i)) = self.phase_of(id, ctx) {
            self.shared.record_phase(i, values);
        }
    }

    #[inline(never)]
    fn closed<S>(&self, id: Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        if span.metadata().target() != PHASE_TARGET {
            return;
        }
        let ext = span.extensions().get::<SpanRole>().copied();
        drop(span);
        self.shared.open_phases.fetch_sub(1, Ordering::Relaxed);
        self.shared.phase_ids.remove(id.into_u64());
        match ext {
            Some(SpanRole::Phase(i)) => {
                let abandoned = self.abandoned(&id, i, ctx);
                self.shared.close_phase(i, abandoned);
            }
            Some(SpanRole::Root) => {
                self.shared.finish();
            }
            None => {
                if let Some(label) = self.shared.startup.take_outside_shutdown() {
                    crate::timeline::events::outside_shutdown(&self.shared, &label);
                }
            }
        }
    }
}
