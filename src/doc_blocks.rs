//! The Rust blocks of the README and of `docs/` are doc-tests: each compiles (and runs, unless
//! marked `no_run`) against this crate as `cargo test` builds it, so what a user copies from
//! them builds. Blocks in other languages are checked by `tests/in_process/docs.rs`.
//!
//! Only under `cfg(doctest)`: these types are never part of the crate.

#[doc = include_str!("../README.md")]
pub struct Readme;

#[doc = include_str!("../docs/operators.md")]
pub struct Operators;

#[doc = include_str!("../docs/kubernetes.md")]
pub struct Kubernetes;

#[doc = include_str!("../docs/http.md")]
pub struct Http;

#[doc = include_str!("../docs/systemd.md")]
pub struct Systemd;

#[doc = include_str!("../docs/fleet.md")]
pub struct Fleet;
