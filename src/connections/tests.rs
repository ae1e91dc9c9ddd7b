//! The table and an entry's states.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entry::{cap, PATH_MAX};
use super::*;

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

#[test]
fn a_connection_walks_through_its_states_and_leaves_the_table() {
    let before = table().open.load(Ordering::Acquire);
    let reg = table().register(addr(1), addr(2), None);
    let e = &reg.entry;
    assert_eq!(e.sample(now_ns()).state, HttpState::Idle);
    e.read(10);
    assert_eq!(e.sample(now_ns()).state, HttpState::ReadingHead);
    e.request_started("POST", "/upload", true);
    let s = e.sample(now_ns());
    assert_eq!(s.state, HttpState::Receiving);
    assert_eq!(s.request.unwrap().path, "/upload");
    e.body_received();
    assert_eq!(e.sample(now_ns()).state, HttpState::InFlight);
    e.response_started(None);
    e.wrote(100);
    let s = e.sample(now_ns());
    assert_eq!(s.state, HttpState::Streaming);
    assert_eq!(s.response_bytes, Some(100));
    e.request_ended();
    assert_eq!(e.sample(now_ns()).state, HttpState::Idle);
    e.request_started("GET", "/ws", false);
    e.response_started(Some("websocket"));
    e.request_ended();
    let s = e.sample(now_ns());
    assert_eq!(s.state, HttpState::Upgraded);
    let r = s.request.unwrap();
    assert_eq!(
        (r.path.as_str(), r.upgrade.as_deref()),
        ("/ws", Some("websocket"))
    );
    assert!(table()
        .entries(usize::MAX)
        .0
        .iter()
        .any(|x| Arc::ptr_eq(x, e)));
    let kept = Arc::clone(e);
    drop(reg);
    assert!(!table()
        .entries(usize::MAX)
        .0
        .iter()
        .any(|x| Arc::ptr_eq(x, &kept)));
    assert!(table().open.load(Ordering::Acquire) <= before + 1);
    assert!(counts().is_some());
}

#[test]
fn a_long_path_is_cut_at_a_character_boundary() {
    let long = "é".repeat(300);
    let c = cap(&long, PATH_MAX);
    assert!(c.len() <= PATH_MAX && c.chars().all(|ch| ch == 'é'));
}
