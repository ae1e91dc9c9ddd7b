//! Tests that touch no process-wide state (no signal handlers, no global subscriber, no
//! environment changes), in one binary so that `cargo test` links it once. A test that installs
//! the signal helper, sets a global subscriber or changes the environment gets a binary of its
//! own in `tests/`.

#[path = "../gateway_support/mod.rs"]
mod gateway_support;
#[path = "../support/mod.rs"]
mod support;

mod context;
mod context_stop;
mod diagnostic;
mod diagnostic_processes;
mod docs;
mod flight_record;
mod layer_abandoned;
mod layer_budget;
mod layer_compat;
mod layer_json;
mod layer_lines;
mod markers;
mod module_graph;
mod public_contract;
mod report;
mod systemd_alignment;
mod systemd_duration;
mod systemd_notify;
