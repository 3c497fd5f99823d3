//! Reading Kubernetes objects as JSON: strings at a pointer, conditions, finalizers, a compact
//! description for failure messages, and timestamps.

use serde_json::{Value, json};

/// The string at JSON pointer `ptr`, or "" (numbers and booleans are formatted).
pub fn str_at(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `(status, reason)` of condition `type_` in `obj.status.conditions`.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| (str_at(c, "/status"), str_at(c, "/reason")))
}

/// Whether condition `type_` has this status and reason.
pub fn condition_is(obj: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(obj, type_).is_some_and(|(s, r)| s == status && r == reason)
}

/// A compact description of an object's state for failure messages: generation, finalizers,
/// deletion, status.
pub fn describe(obj: &Value) -> String {
    json!({
        "name": obj["metadata"]["name"],
        "generation": obj["metadata"]["generation"],
        "finalizers": obj["metadata"]["finalizers"],
        "deletionTimestamp": obj["metadata"]["deletionTimestamp"],
        "labels": obj["metadata"]["labels"],
        "status": obj["status"],
    })
    .to_string()
}

/// Whether `obj` carries finalizer `f`.
pub fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-25T23:13:01.495034Z`), fractions cut.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_second())
}

/// A Secret of `type_` in `namespace` holding `data` (base64-encoded here).
pub fn secret(namespace: &str, name: &str, type_: &str, data: &[(&str, &[u8])]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(crate::support::base64_encode(v)),
            )
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": type_,
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}
