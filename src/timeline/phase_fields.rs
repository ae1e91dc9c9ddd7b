//! A phase span's recorded fields, in the order they were first recorded.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tracing_core::field::{Field, Visit};

use crate::sys::logfmt::{push_pair, push_str_pair};

/// Field names the layer interprets instead of repeating them in the `done` line.
const CONFIG_FIELDS: [&str; 2] = ["adapter", "budget_s"];

/// Span fields as name → JSON value, keeping first-recorded order (serialized as a JSON object).
///
/// ```
/// use shutdown_forensics::report::PhaseFields;
///
/// let fields: PhaseFields = serde_json::from_str(r#"{"b":1,"a":"x"}"#).unwrap();
/// assert_eq!(fields.get("a"), Some(&serde_json::json!("x")));
/// assert_eq!(serde_json::to_string(&fields).unwrap(), r#"{"b":1,"a":"x"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseFields(Vec<(String, Value)>);

impl PhaseFields {
    /// The value recorded for `name`, if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Iterates over `(name, value)` pairs in recorded order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// True when no field was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name`, replacing an earlier value in place.
    pub(crate) fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// The pairs the `done` line shows: all but `adapter` and `budget_s` (they are in the
    /// label and the budget).
    pub(crate) fn for_line(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.iter().filter(|(k, _)| !CONFIG_FIELDS.contains(k))
    }

    /// ` key=value` pairs for the `done` line, logfmt-escaped so a hostile value cannot forge
    /// a log line; `adapter` and `budget_s` are left out (they are in the label and budget).
    pub(crate) fn to_logfmt(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.for_line() {
            match v {
                Value::String(s) => push_str_pair(&mut out, k, s),
                Value::Null => push_pair(&mut out, k, "null"),
                other => push_pair(&mut out, k, other),
            }
        }
        out
    }
}

impl Visit for PhaseFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.set(field.name(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), format!("{value:?}").into());
    }
}

impl Serialize for PhaseFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PhaseFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = PhaseFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of field names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<PhaseFields, A::Error> {
                let mut fields = PhaseFields::default();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    fields.set(&k, v);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_escapes_hostile_values_and_skips_config_fields() {
        let mut f = PhaseFields::default();
        f.set("adapter", "slack".into());
        f.set("active", 5.into());
        f.set("who", "x\nERROR forged".into());
        f.set("ok", true.into());
        f.set("active", 0.into());
        assert_eq!(f.to_logfmt(), "active=0 who=\"x\\nERROR forged\" ok=true");
    }
}
