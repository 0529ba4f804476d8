//! Field sets: which fields of an object a field manager owns, as server-side apply
//! tracks them in `metadata.managedFields` (`fieldsType: FieldsV1`).
//!
//! ```text
//! path  = [Field("spec"), Field("listeners"), Key({"name":"http"}), Field("port")]
//! FieldsV1 {"f:spec":{"f:listeners":{"k:{\"name\":\"http\"}":{".":{},"f:port":{}}}}}
//! shown  .spec.listeners[name="http"].port
//! ```
//!
//! A set holds leaves: scalars, atomic lists, empty maps, members of `set` lists, and
//! each element of a `map` list (its `.` entry) together with that element's fields.
//! Maps are never owned themselves, only their fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::{Cursor, ListType};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElem {
    /// A field of a map.
    Field(String),
    /// An element of a `map` list, by its keys, as canonical JSON (keys sorted).
    Key(String),
    /// A member of a `set` list, as JSON.
    Value(String),
}

pub(crate) type FieldPath = Vec<PathElem>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Metadata the server owns: never part of anyone's field set.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of an object a write may own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Part {
    /// Everything (kinds without a status subresource, and non-apply updates).
    Whole,
    /// The main resource of a kind with a status subresource: all but `.status`.
    Main,
    /// The `/status` subresource: only `.status`.
    Status,
}

/// The object reduced to the fields a manager can own.
pub(crate) fn ownable(obj: &Value, part: Part) -> Value {
    let mut v = obj.clone();
    if let Value::Object(map) = &mut v {
        map.remove("apiVersion");
        map.remove("kind");
        match part {
            Part::Whole => {}
            Part::Main => {
                map.remove("status");
            }
            Part::Status => map.retain(|k, _| k == "status"),
        }
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for k in SYSTEM_META {
                meta.remove(*k);
            }
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    v
}

/// The canonical key of a `map`-list element: `{"name":"http"}`, keys sorted.
fn element_key(item: &Value, keys: &[String]) -> String {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let mut m = Map::new();
    for k in sorted {
        m.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(m).to_string()
}

/// The leaves of `value` (see the module doc), each as a path from the root.
pub(crate) fn leaves(value: &Value, cursor: Cursor<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    let mut prefix = Vec::new();
    collect(value, cursor, &mut prefix, &mut out);
    out
}

fn collect(value: &Value, cursor: Cursor<'_>, prefix: &mut FieldPath, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(PathElem::Field(k.clone()));
                collect(v, cursor.field(k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if !prefix.is_empty() => match cursor.list_type() {
            ListType::Atomic => {
                out.insert(prefix.clone());
            }
            ListType::Set => {
                for item in items {
                    prefix.push(PathElem::Value(item.to_string()));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    prefix.push(PathElem::Key(element_key(item, &keys)));
                    out.insert(prefix.clone());
                    collect(item, cursor.items(), prefix, out);
                    prefix.pop();
                }
            }
        },
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn matches_key(item: &Value, key: &str) -> bool {
    match serde_json::from_str::<Map<String, Value>>(key) {
        Ok(k) => k
            .iter()
            .all(|(name, want)| item.get(name).unwrap_or(&Value::Null) == want),
        Err(_) => false,
    }
}

/// The value at a path, if present.
pub(crate) fn get_at<'a>(value: &'a Value, path: &[PathElem]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = match first {
        PathElem::Field(f) => value.get(f)?,
        PathElem::Key(k) => value.as_array()?.iter().find(|i| matches_key(i, k))?,
        PathElem::Value(v) => value
            .as_array()?
            .iter()
            .find(|i| serde_json::from_str::<Value>(v).is_ok_and(|want| **i == want))?,
    };
    get_at(next, rest)
}

/// Whether the field at `path` differs between two objects. A `map`-list element
/// compares by presence only: its fields are leaves of their own.
pub(crate) fn differs_at(a: Option<&Value>, b: Option<&Value>, path: &[PathElem]) -> bool {
    let va = a.and_then(|a| get_at(a, path));
    let vb = b.and_then(|b| get_at(b, path));
    match path.last() {
        Some(PathElem::Key(_)) => va.is_some() != vb.is_some(),
        _ => va != vb,
    }
}

/// Removes the field at `path` (a map key, or a list element); no-op if absent.
pub(crate) fn remove_at(value: &mut Value, path: &[PathElem]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match (first, value) {
            (PathElem::Field(f), Value::Object(m)) => {
                m.remove(f);
            }
            (PathElem::Key(k), Value::Array(items)) => items.retain(|i| !matches_key(i, k)),
            (PathElem::Value(v), Value::Array(items)) => {
                if let Ok(want) = serde_json::from_str::<Value>(v) {
                    items.retain(|i| *i != want);
                }
            }
            _ => {}
        }
        return;
    }
    let next = match (first, value) {
        (PathElem::Field(f), Value::Object(m)) => m.get_mut(f),
        (PathElem::Key(k), Value::Array(items)) => items.iter_mut().find(|i| matches_key(i, k)),
        _ => None,
    };
    if let Some(next) = next {
        remove_at(next, rest);
    }
}

/// `.spec.listeners[name="http"].port`, as conflict messages show a path.
pub(crate) fn display(path: &[PathElem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            PathElem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PathElem::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElem::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

#[derive(Default)]
struct Node {
    owned: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.owned && !self.children.is_empty() {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_json());
        }
        Value::Object(m)
    }
}

fn encode(e: &PathElem) -> String {
    match e {
        PathElem::Field(f) => format!("f:{f}"),
        PathElem::Key(k) => format!("k:{k}"),
        PathElem::Value(v) => format!("v:{v}"),
    }
}

/// A field set as `FieldsV1` JSON.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = node.children.entry(encode(e)).or_default();
        }
        node.owned = true;
    }
    root.to_json()
}

/// `FieldsV1` JSON back into a field set (unknown prefixes are skipped).
pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let mut prefix = Vec::new();
    parse(v, &mut prefix, &mut out);
    out
}

fn parse(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(map) = v.as_object() else {
        return;
    };
    for (k, child) in map {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        let elem = if let Some(f) = k.strip_prefix("f:") {
            PathElem::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            PathElem::Key(key.to_string())
        } else if let Some(val) = k.strip_prefix("v:") {
            PathElem::Value(val.to_string())
        } else {
            continue;
        };
        prefix.push(elem);
        if child.as_object().is_none_or(Map::is_empty) {
            out.insert(prefix.clone());
        } else {
            parse(child, prefix, out);
        }
        prefix.pop();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"properties": {"spec": {"properties": {
            "listeners": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        }}}})
    }

    #[test]
    fn leaves_round_trip_through_fields_v1() {
        let s = schema();
        let obj = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"class": "c", "listeners": [{"name": "http", "port": 80}], "addresses": [{"value": "1.2.3.4"}]}});
        let set = leaves(&obj, Cursor::root(Some(&s), "Gateway"));
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:a": {}}},
                   "f:spec": {"f:addresses": {}, "f:class": {},
                              "f:listeners": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn get_remove_and_display_keyed_paths() {
        let mut obj =
            json!({"spec": {"listeners": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}});
        let path = vec![
            PathElem::Field("spec".into()),
            PathElem::Field("listeners".into()),
            PathElem::Key("{\"name\":\"b\"}".into()),
            PathElem::Field("port".into()),
        ];
        assert_eq!(get_at(&obj, &path), Some(&json!(2)));
        assert_eq!(display(&path), ".spec.listeners[name=\"b\"].port");
        remove_at(&mut obj, &path[..3]);
        assert_eq!(
            obj,
            json!({"spec": {"listeners": [{"name": "a", "port": 1}]}})
        );
    }

    #[test]
    fn ownable_drops_system_fields_and_splits_status() {
        let obj = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "uid": "u"},
            "spec": {"a": 1}, "status": {"b": 2}});
        assert_eq!(ownable(&obj, Part::Main), json!({"spec": {"a": 1}}));
        assert_eq!(ownable(&obj, Part::Status), json!({"status": {"b": 2}}));
    }
}
