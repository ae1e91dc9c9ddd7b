//! Events whose field names are known only at run time (a phase span's own fields), so that a
//! structured subscriber (JSON, journald) receives them as fields, not only inside the message.
//!
//! tracing's macros need field names at compile time. Here each distinct set of names gets
//! one callsite, leaked (callsites live as long as the process, as a macro's do) and registered
//! like a macro's, so filters and interest caching work as usual. Their number is bounded:
//! past [`MAX_CALLSITES`] sets, or [`MAX_FIELDS`] fields, [`emit`] returns false and the caller
//! says it in text instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_core::callsite::{Callsite, DefaultCallsite};
use tracing_core::field::{Field, Value};
use tracing_core::{dispatcher, Event, Interest, Kind, Level, Metadata};

/// Distinct sets of field names (per target and level) that get a callsite of their own.
pub(crate) const MAX_CALLSITES: usize = 256;
/// Fields of one event, the message included.
pub(crate) const MAX_FIELDS: usize = 32;

const NEVER: u8 = 0;
const SOMETIMES: u8 = 1;

struct DynCallsite {
    meta: OnceLock<Metadata<'static>>,
    interest: AtomicU8,
}

/// What `metadata()` returns in the instant between a callsite's creation and the setting of
/// its metadata (it is registered only after, so tracing never sees this one).
static UNSET_CALLSITE: DefaultCallsite = DefaultCallsite::new(&UNSET);
static UNSET: Metadata<'static> = tracing_core::metadata! {
    name: "unset",
    target: "shutdown",
    level: Level::TRACE,
    fields: &[],
    callsite: &UNSET_CALLSITE,
    kind: Kind::EVENT,
};

impl Callsite for DynCallsite {
    fn set_interest(&self, interest: Interest) {
        let v = if interest.is_never() {
            NEVER
        } else {
            SOMETIMES
        };
        self.interest.store(v, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.meta.get().unwrap_or(&UNSET)
    }
}

type Key = (&'static str, Level, Vec<String>);

/// The callsite for these names, made (and registered) on first use.
fn callsite(target: &'static str, level: Level, names: &[&str]) -> Option<&'static DynCallsite> {
    static SITES: OnceLock<Mutex<HashMap<Key, &'static DynCallsite>>> = OnceLock::new();
    let key: Key = (
        target,
        level,
        names.iter().map(|n| (*n).to_owned()).collect(),
    );
    let mut sites = SITES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(site) = sites.get(&key) {
        return Some(site);
    }
    if sites.len() >= MAX_CALLSITES || names.len() > MAX_FIELDS {
        return None;
    }
    let leaked: Vec<&'static str> = names
        .iter()
        .map(|n| &*Box::leak((*n).to_owned().into_boxed_str()))
        .collect();
    let names: &'static [&'static str] = Box::leak(leaked.into_boxed_slice());
    let site: &'static DynCallsite = Box::leak(Box::new(DynCallsite {
        meta: OnceLock::new(),
        interest: AtomicU8::new(SOMETIMES),
    }));
    let _ = site.meta.set(Metadata::new(
        "event (phase fields)",
        target,
        level,
        Some(file!()),
        None,
        Some(module_path!()),
        tracing_core::field::FieldSet::new(names, tracing_core::identify_callsite!(site)),
        Kind::EVENT,
    ));
    sites.insert(key, site);
    drop(sites);
    // Outside our lock: registration asks every subscriber for its interest.
    tracing_core::callsite::register(site);
    Some(site)
}

/// Emits one event with no parent span: `message`, then `fields` in their order (a text
/// formatter prints them in that order after the message). Returns false, having emitted
/// nothing, when these names cannot get a callsite (see the module docs).
pub(crate) fn emit(
    target: &'static str,
    level: Level,
    message: &str,
    fields: &[(&str, &dyn Value)],
) -> bool {
    let mut names = Vec::with_capacity(fields.len() + 1);
    names.push("message");
    names.extend(fields.iter().map(|(name, _)| *name));
    let Some(site) = callsite(target, level, &names) else {
        return false;
    };
    if site.interest.load(Ordering::Relaxed) == NEVER {
        return true;
    }
    let meta = site.metadata();
    if !dispatcher::get_default(|d| d.enabled(meta)) {
        return true;
    }
    let set = meta.fields();
    let keys: Vec<Field> = set.iter().collect();
    let Some(first) = keys.first() else {
        return false;
    };
    // A fixed-size array (what `value_set` takes); unused slots hold no value and are skipped.
    let mut values: [(&Field, Option<&dyn Value>); MAX_FIELDS] = [(first, None); MAX_FIELDS];
    values[0].1 = Some(&message);
    for ((slot, key), (_, value)) in values[1..].iter_mut().zip(&keys[1..]).zip(fields) {
        *slot = (key, Some(*value));
    }
    Event::child_of(None, meta, &set.value_set(&values));
    true
}
