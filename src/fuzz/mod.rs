//! Fuzzing of every parser and reader of untrusted bytes (test builds only): one deterministic
//! mutation engine (`engine.rs`) over the committed seed corpus in `fuzz/corpus/<target>/`, and
//! one `#[test]` per target (`targets.rs`) asserting no panic and a bounded time per call.
//!
//! `cargo test` runs a short pass (the default counts, seconds in all); the big run sets the
//! count: `SHUTDOWN_FORENSICS_FUZZ_ITERS=1000000 cargo test --release --lib fuzz -- --nocapture`.
//! `fuzz/README.md` has the figures and how to add a regression seed.

mod engine;
mod targets;

pub(crate) use engine::mutants;
