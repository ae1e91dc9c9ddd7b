//! The panic hook: a panic is written to the flight record (message, location, thread) before
//! the app's own hook runs, so the next start judges the run as a panic, not as an exit.
//!
//! One hook per process, installed once and chained to the hook that was set before it; the
//! record it writes to is the one of the latest [`ForensicsBuilder::install`](crate::ForensicsBuilder::install).

use std::panic::PanicHookInfo;
use std::sync::{Arc, Mutex, Once, Weak};

use serde_json::json;

use crate::sys::clock::unix_secs;
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::state::Timeline;

static TARGET: Mutex<Option<Weak<Timeline>>> = Mutex::new(None);
static INSTALLED: Once = Once::new();

/// Points the hook at `handle`'s flight record, installing the hook the first time. Does
/// nothing when the handle has no record.
pub(crate) fn install(handle: &ShutdownHandle) {
    if handle.shared.record.is_none() {
        return;
    }
    *TARGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::downgrade(&handle.shared));
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            record(info);
            previous(info);
        }));
    });
}

/// Writes the `panic` line: one `write(2)`, no lock of the layer taken (the panic may have
/// happened while one was held), never a panic of its own.
fn record(info: &PanicHookInfo<'_>) {
    // try_lock: the hook must never wait; the mutex is only held to swap a pointer.
    let Some(shared) = TARGET
        .try_lock()
        .ok()
        .and_then(|t| t.as_ref().and_then(Weak::upgrade))
    else {
        return;
    };
    let Some(record) = &shared.record else {
        return;
    };
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let line = json!({
        "kind": "panic",
        "wall_unix_s": unix_secs(std::time::SystemTime::now()),
        "message": crate::record::line_caps::cap_str(message),
        "location": location,
        "thread": thread.name(),
    });
    let _ = record.append_line(&line, true);
}
