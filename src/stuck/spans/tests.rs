use super::table::{MAX_TRACKED, SLOTS, UNIT_SHIFT};
use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

fn meta() -> &'static Metadata<'static> {
    struct Cs;
    impl tracing_core::Callsite for Cs {
        fn set_interest(&self, _: tracing_core::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &META
        }
    }
    static CS: Cs = Cs;
    static META: Metadata<'static> = tracing_core::metadata! {
        name: "request",
        target: "app",
        level: tracing_core::Level::INFO,
        fields: &[],
        callsite: &CS,
        kind: tracing_core::metadata::Kind::SPAN,
    };
    &META
}

#[test]
fn spans_are_tracked_from_open_to_close_with_their_activity() {
    let t = SpanTracker::new(None);
    t.open(7, meta());
    t.open(8, meta());
    assert_eq!(t.len(), 2);
    t.activity(7, true);
    let s = t.get(7).unwrap();
    assert_eq!(s.entered, 1);
    assert_eq!(s.thread, current_tid());
    assert_ne!(s.thread, 0);
    t.activity(7, false);
    assert_eq!(t.get(7).unwrap().entered, 0);
    t.close(7);
    assert!(t.get(7).is_none());
    assert_eq!(t.len(), 1);
    assert_eq!(t.collect(10).len(), 1);
    assert_eq!(t.collect(0).len(), 0);
    t.close(7); // twice: nothing happens
    assert_eq!(t.len(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "opens 100 000 spans: too slow under Miri")]
fn a_filter_chooses_and_the_cap_counts_what_is_left_out() {
    let t = SpanTracker::new(Some(Arc::new(|m: &Metadata<'_>| m.name() != "request")));
    t.open(1, meta());
    assert_eq!(t.len(), 0);
    // The table holds at most SLOTS spans, the overflow MAX_TRACKED: more are counted.
    let t = SpanTracker::new(None);
    let n = (MAX_TRACKED + SLOTS) as u64 + 5;
    for id in 0..n {
        t.open(id + 1, meta());
    }
    let held = t.len();
    assert!(
        (MAX_TRACKED..=MAX_TRACKED + SLOTS).contains(&held),
        "{held}"
    );
    assert_eq!(t.untracked(), n - held as u64);
    assert!(t.collect(usize::MAX).iter().all(|s| s.id <= n));
}

#[test]
fn spans_opened_on_one_thread_live_on_and_close_on_another() {
    let t = Arc::new(SpanTracker::new(None));
    // More spans than the table holds: some go to the overflow.
    let ids: Vec<u64> = (1..=(SLOTS as u64 + 1000)).collect();
    for &id in &ids {
        t.open(id, meta());
    }
    assert_eq!(t.len(), ids.len());
    let opener = current_tid();
    let (t2, ids2) = (Arc::clone(&t), ids.clone());
    let (tid, seen) = std::thread::spawn(move || {
        for &id in &ids2 {
            t2.activity(id, true);
            t2.activity(id, false);
        }
        // Entered here, now: the snapshot names this thread.
        t2.activity(500, true);
        let seen = t2.get(500).unwrap();
        t2.activity(500, false);
        for &id in &ids2[..600] {
            t2.close(id);
        }
        (current_tid(), seen)
    })
    .join()
    .unwrap();
    assert_ne!(tid, opener);
    assert_eq!((seen.entered, seen.thread), (1, tid));
    let left = t.collect(usize::MAX);
    assert_eq!(
        left.iter().map(|s| s.id).collect::<Vec<_>>(),
        ids[600..].to_vec()
    );
    assert_eq!(t.untracked(), 0);
    // Every span's last exit was on the other thread, and none is entered now.
    assert!(left
        .iter()
        .all(|s| s.slot.thread == tid && s.slot.entered == 0));
    for &id in &ids[600..] {
        t.close(id);
    }
    assert_eq!(t.len(), 0);
}

#[test]
fn spans_of_a_thread_that_exited_are_still_tracked_and_its_stack_goes() {
    let t = Arc::new(SpanTracker::new(None));
    let t2 = Arc::clone(&t);
    std::thread::spawn(move || {
        for id in 1..=50 {
            t2.open(id, meta());
        }
        t2.close(10);
        // Entered when the thread ends: its stack goes with it.
        t2.activity(11, true);
        assert_eq!(t2.get(11).unwrap().entered, 1);
    })
    .join()
    .unwrap();
    assert_eq!(t.len(), 49);
    assert!(t.get(10).is_none() && t.get(11).is_some());
    assert_eq!(t.get(11).unwrap().entered, 0);
    assert_eq!(t.stacks.len(), 0);
    for id in 1..=50 {
        t.close(id);
    }
    assert_eq!(t.len(), 0);
}

#[test]
fn spans_opened_and_closed_across_threads_leave_nothing_behind() {
    use std::sync::mpsc;
    const THREADS: u64 = 4;
    // Under Miri (`cargo +nightly miri test --lib stuck::spans`) a smaller run: it checks
    // every access of the slot protocol for data races and undefined behaviour.
    const PER: u64 = if cfg!(miri) { 30 } else { 20_000 };
    const ROUNDS: u64 = if cfg!(miri) { 2 } else { 3 };
    let t = Arc::new(SpanTracker::new(None));
    // Per worker: how many of its spans it has opened, and below which index every span it
    // closed itself is closed (published after the fact, read before a snapshot).
    let opened: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let closed: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let id_of = |round: u64, w: u64, i: u64| (round * THREADS + w + 1) * 1_000_000 + i;
    // A snapshot reader all along: a kept span opened before a snapshot began is in it, and a
    // span closed before it began is not.
    let reader = {
        let (t, stop, opened, closed) = (
            Arc::clone(&t),
            Arc::clone(&stop),
            Arc::clone(&opened),
            Arc::clone(&closed),
        );
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut round = 0;
            while !stop.load(SeqCst) {
                let before_open: Vec<u64> = opened.iter().map(|a| a.load(SeqCst)).collect();
                let before_closed: Vec<u64> = closed.iter().map(|a| a.load(SeqCst)).collect();
                // Rounds move on while reading: only judge within the round read here.
                let r = round;
                let seen: std::collections::HashSet<u64> =
                    t.collect(usize::MAX).iter().map(|s| s.id).collect();
                for w in 0..THREADS {
                    let (o, c) = (before_open[w as usize], before_closed[w as usize]);
                    if o >> 32 != r || c >> 32 != r {
                        continue;
                    }
                    let (o, c) = (o & 0xFFFF_FFFF, c & 0xFFFF_FFFF);
                    for i in (0..o).filter(|i| i % 4 == 3) {
                        assert!(seen.contains(&id_of(r, w, i)), "kept span {i} of {w} lost");
                    }
                    for i in (0..c).filter(|i| i % 4 < 2) {
                        assert!(
                            !seen.contains(&id_of(r, w, i)),
                            "closed span {i} of {w} seen"
                        );
                    }
                }
                reads += 1;
                round = opened[0].load(SeqCst) >> 32;
            }
            reads
        })
    };
    let mut kept = Vec::new();
    for round in 0..ROUNDS {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<u64>()).unzip();
        // Fresh threads each round: the last round's tables are handed back meanwhile.
        let workers: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(w, rx)| {
                let (t, opened, closed) =
                    (Arc::clone(&t), Arc::clone(&opened), Arc::clone(&closed));
                let next = txs[(w + 1) % THREADS as usize].clone();
                std::thread::spawn(move || {
                    let w64 = w as u64;
                    let mut kept = Vec::new();
                    for i in 0..PER {
                        let id = id_of(round, w64, i);
                        t.open(id, meta());
                        opened[w].store(round << 32 | (i + 1), SeqCst);
                        t.activity(id, true);
                        t.activity(id, false);
                        match i % 4 {
                            // Closed here at once.
                            0 | 1 => {
                                t.close(id);
                                closed[w].store(round << 32 | (i + 1), SeqCst);
                            }
                            // Handed to the next thread, which enters and closes it.
                            2 => next.send(id).unwrap(),
                            // Left open (a long-lived request).
                            _ => kept.push(id),
                        }
                        while let Ok(other) = rx.try_recv() {
                            t.activity(other, true);
                            t.activity(other, false);
                            t.close(other);
                        }
                    }
                    drop(next);
                    (kept, rx)
                })
            })
            .collect();
        drop(txs);
        let done: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for (k, rx) in done {
            kept.extend(k);
            // What is still queued for a thread that finished: closed from here.
            for id in rx.try_iter() {
                t.close(id);
            }
        }
    }
    stop.store(true, SeqCst);
    assert!(reader.join().unwrap() > 0);
    kept.sort_unstable();
    let left: Vec<u64> = t.collect(usize::MAX).iter().map(|s| s.id).collect();
    assert_eq!(left.len(), kept.len());
    assert_eq!(left, kept);
    assert_eq!(t.untracked(), 0);
    for id in kept {
        t.close(id);
    }
    assert_eq!(t.len(), 0);
}

#[test]
fn a_snapshot_over_its_limit_keeps_the_oldest_spans() {
    let t = SpanTracker::new(None);
    t.open(1, meta());
    std::thread::sleep(Duration::from_millis(30));
    for id in 2..3000 {
        t.open(id, meta());
    }
    for _ in 0..20 {
        let got = t.collect(2000);
        assert_eq!(got.len(), 2000);
        assert!(got.iter().any(|s| s.id == 1), "the oldest span was cut");
    }
    assert!(t.collect(0).is_empty());
}

#[test]
fn ids_equal_to_the_slot_markers_never_touch_a_slot() {
    let t = Arc::new(SpanTracker::new(None));
    // Id 0 (EMPTY): kept in the overflow, closed from there.
    t.open(5, meta());
    t.open(0, meta());
    t.activity(0, true);
    t.activity(0, false);
    assert!(t.get(0).is_some());
    t.close(0);
    assert!(t.get(0).is_none(), "ghost of span 0");
    t.close(5);
    // Id u64::MAX (BUSY), closed from a thread while others open (their slots pass through
    // BUSY): the close reaches the overflow, no slot is emptied by it.
    let (rounds, ids) = if cfg!(miri) { (3, 200) } else { (50, 2000) };
    for _ in 0..rounds {
        t.open(u64::MAX, meta());
        let t2 = Arc::clone(&t);
        let opener = std::thread::spawn(move || {
            for id in 1..ids {
                t2.open(id, meta());
            }
            for id in 1..ids {
                t2.close(id);
            }
        });
        t.activity(u64::MAX, true);
        t.activity(u64::MAX, false);
        t.close(u64::MAX);
        opener.join().unwrap();
        assert_eq!(t.len(), 0, "ghost left");
    }
}

#[test]
fn with_a_filter_spans_left_out_cost_no_entry() {
    let t = Arc::new(SpanTracker::new(Some(Arc::new(|m: &Metadata<'_>| {
        m.name() != "request"
    }))));
    for id in 1..=1000 {
        assert!(!t.open(id, meta()));
        t.activity(id, true);
    }
    assert_eq!(t.len(), 0);
    for id in (1..=1000).rev() {
        t.activity(id, false);
        t.close(id);
    }
    assert!(t.collect(usize::MAX).is_empty());
    assert!(t.caveats().is_empty());
}

#[test]
fn deep_nesting_and_odd_ids_are_stated_not_guessed() {
    let t = SpanTracker::new(None);
    for id in 1..=40 {
        t.open(id, meta());
        t.activity(id, true);
    }
    let caveats = t.caveats();
    assert_eq!(caveats.len(), 1, "{caveats:?}");
    assert!(
        caveats[0].contains("40 spans entered, deeper than the 32"),
        "{caveats:?}"
    );
    let entered = t
        .collect(usize::MAX)
        .iter()
        .filter(|s| s.slot.entered > 0)
        .count();
    assert_eq!(entered, 32);
    for id in (1..=40).rev() {
        t.activity(id, false);
    }
    assert!(t.caveats().is_empty());
    assert!(t.collect(usize::MAX).iter().all(|s| s.slot.entered == 0));
    // Exits out of order, and an exit never entered: the stack stays true.
    t.activity(1, true);
    t.activity(2, true);
    t.activity(1, false);
    t.activity(99, false);
    let entered: Vec<u64> = t
        .collect(usize::MAX)
        .iter()
        .filter(|s| s.slot.entered > 0)
        .map(|s| s.id)
        .collect();
    assert_eq!(entered, [2]);
    // An id equal to the slot markers goes to the overflow.
    t.open(u64::MAX, meta());
    assert!(t.get(u64::MAX).is_some());
    t.close(u64::MAX);
    assert!(t.get(u64::MAX).is_none());
}

#[test]
fn the_activity_word_keeps_the_time_to_a_millisecond_and_the_thread() {
    let w = pack(5_123_456_789, 4_194_303);
    let (ns, tid) = unpack(w);
    assert_eq!(tid, 4_194_303);
    assert!(
        ns <= 5_123_456_789 && 5_123_456_789 - ns < 1 << UNIT_SHIFT,
        "{ns}"
    );
    // A tid that does not fit is unknown (0), not another thread.
    assert_eq!(unpack(pack(1_000_000, 1 << 22)).1, 0);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri schedules the ticker thread too rarely for a bound in time"
)]
fn the_clock_moves_forward_and_lags_by_at_most_a_tick() {
    clock::ensure_ticking();
    let a = coarse_now();
    std::thread::sleep(Duration::from_millis(60));
    let b = coarse_now();
    assert!(coarse_since(a, b) >= Duration::from_millis(20), "{a} {b}");
    assert_eq!(coarse_since(b, a), Duration::ZERO);
    // Against the system's coarse clock: behind it by at most a tick (and scheduling).
    let real = clock::coarse_now();
    let cached = coarse_now();
    assert!(cached <= real + 5_000_000, "{cached} {real}");
    assert!(
        coarse_since(cached, real) < clock::TICK + Duration::from_millis(200),
        "{cached} {real}"
    );
}

#[test]
fn spans_move_between_threads_while_a_snapshot_reads() {
    // Spans opened on one thread, entered, exited and closed on others (as a task's span
    // moves between a runtime's workers), while a reader copies the table: every span that
    // was closed is gone, and each entered one names the thread it runs on.
    let t = Arc::new(SpanTracker::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                for s in t.collect(usize::MAX) {
                    assert_eq!(s.slot.meta.name(), "request");
                    assert!(s.slot.active >= s.slot.opened);
                }
                n += 1;
            }
            n
        })
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u64>>(4);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (t, rx) = (Arc::clone(&t), Arc::clone(&rx));
            std::thread::spawn(move || loop {
                let batch = match rx.lock().unwrap().recv() {
                    Ok(b) => b,
                    Err(_) => return,
                };
                for id in batch {
                    t.activity(id, true);
                    let s = t.get(id).unwrap();
                    assert_eq!((s.entered, s.thread), (1, current_tid()));
                    t.activity(id, false);
                    t.close(id);
                }
            })
        })
        .collect();
    let (batches, per) = if cfg!(miri) { (6, 4) } else { (100, 20) };
    for b in 0..batches {
        let batch: Vec<u64> = (0..per).map(|i| b * 1000 + i + 1).collect();
        for &id in &batch {
            t.open(id, meta());
        }
        tx.send(batch).unwrap();
    }
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(t.len(), 0);
    assert_eq!(t.untracked(), 0);
}
