//! Structural schemas: what the server does with a CRD's `openAPIV3Schema`, and the few
//! list facts it knows about built-in kinds.
//!
//! - [`Cursor`] walks a schema beside a value: server-side apply asks it whether a list
//!   is `atomic`, a `set` or a `map` keyed by `x-kubernetes-list-map-keys`.
//! - [`default_and_prune`] fills `default`s and drops unknown fields and nulls, as the
//!   real server does to custom resources before validation.
//! - [`validate`] checks type, required, enum, string length and pattern, number bounds,
//!   item and property counts. CEL rules (`x-kubernetes-validations`) and `format` are
//!   NOT evaluated: objects they would reject are accepted here.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value, json};

use super::error::FieldError;

/// The schema of `metadata` for every kind: only what server-side apply needs (owner
/// references are keyed by uid, finalizers are a set).
fn meta_schema() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| {
        json!({"type": "object", "properties": {
            "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set"},
        }})
    })
}

/// The list facts of built-in kinds that the server's apply needs (a partial copy of the
/// `+listType`/`+listMapKey` markers of k8s.io/api).
fn builtin_schema(kind: &str) -> &'static Value {
    static SCHEMAS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    static EMPTY: OnceLock<Value> = OnceLock::new();
    let conditions = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]});
    let schemas = SCHEMAS.get_or_init(|| {
        let mut m = HashMap::new();
        m.insert("Service", json!({"properties": {
            "spec": {"properties": {"ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"]}}},
            "status": {"properties": {"conditions": conditions.clone()}},
        }}));
        m.insert("Pod", json!({"properties": {
            "spec": {"properties": {"containers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}}},
            "status": {"properties": {"conditions": conditions.clone()}},
        }}));
        m.insert("Namespace", json!({"properties": {"status": {"properties": {"conditions": conditions.clone()}}}}));
        m.insert("Node", json!({"properties": {"status": {"properties": {"conditions": conditions.clone()}}}}));
        m.insert("Deployment", json!({"properties": {"status": {"properties": {"conditions": conditions}}}}));
        m
    });
    schemas
        .get(kind)
        .unwrap_or_else(|| EMPTY.get_or_init(|| json!({})))
}

/// How a list merges under server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListType {
    /// Replaced as a whole, owned as one field (the default).
    Atomic,
    /// Scalars, each owned on its own.
    Set,
    /// Objects identified by these keys, merged element by element.
    Map(Vec<String>),
}

/// A position in a schema. `None` means "not described": maps descend, lists are atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    node: Option<&'a Value>,
    root: bool,
}

impl<'a> Cursor<'a> {
    /// The root of a kind: the CRD schema of that version, or the built-in list facts.
    pub(crate) fn root(schema: Option<&'a Value>, kind: &str) -> Cursor<'a> {
        Cursor {
            node: Some(schema.unwrap_or_else(|| builtin_schema(kind))),
            root: true,
        }
    }

    #[cfg(test)]
    pub(crate) fn unknown() -> Cursor<'static> {
        Cursor {
            node: None,
            root: false,
        }
    }

    pub(crate) fn field(&self, name: &str) -> Cursor<'a> {
        if self.root && name == "metadata" {
            return Cursor {
                node: Some(meta_schema()),
                root: false,
            };
        }
        let node = self.node.and_then(|n| {
            n.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
        });
        Cursor { node, root: false }
    }

    pub(crate) fn items(&self) -> Cursor<'a> {
        Cursor {
            node: self.node.and_then(|n| n.get("items")),
            root: false,
        }
    }

    pub(crate) fn list_type(&self) -> ListType {
        let Some(n) = self.node else {
            return ListType::Atomic;
        };
        match n.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                n.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => ListType::Atomic,
        }
    }
}

/// Applies `default`s and prunes unknown fields and non-nullable nulls, top-down, the
/// way the real server treats a custom resource on every write. The root keeps
/// `apiVersion`, `kind` and `metadata` untouched.
pub(crate) fn default_and_prune(value: &mut Value, schema: &Value) {
    if let Value::Object(map) = value {
        let meta = map.remove("metadata");
        let api_version = map.remove("apiVersion");
        let kind = map.remove("kind");
        walk_object(map, schema);
        for (k, v) in [
            ("apiVersion", api_version),
            ("kind", kind),
            ("metadata", meta),
        ] {
            if let Some(v) = v {
                map.insert(k.to_string(), v);
            }
        }
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

fn walk(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => walk_object(map, schema),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    walk(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(map: &mut Map<String, Value>, schema: &Value) {
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    // Nulls are dropped unless the field is nullable: "null values for fields that
    // either don't specify nullable or specify nullable: false will be pruned".
    map.retain(|k, v| {
        let field_schema = props.and_then(|p| p.get(k)).or(additional);
        !(v.is_null() && field_schema.is_some_and(|s| s["nullable"].as_bool() != Some(true)))
    });
    if !preserves_unknown(schema)
        && (props.is_some() || additional.is_some() || schema["type"] == "object")
    {
        map.retain(|k, _| {
            props.is_some_and(|p| p.contains_key(k))
                || additional.is_some()
                || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        });
    }
    if let Some(props) = props {
        for (name, prop) in props {
            if !map.contains_key(name)
                && let Some(d) = prop.get("default")
            {
                map.insert(name.clone(), d.clone());
            }
            if let Some(v) = map.get_mut(name) {
                walk(v, prop);
            }
        }
    } else if let Some(additional) = additional {
        for v in map.values_mut() {
            walk(v, additional);
        }
    }
}

/// Validates a custom resource against its schema (root `metadata` excluded).
pub(crate) fn validate(value: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            if matches!(name.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(v) = value.get(name) {
                check(v, prop, name, &mut errors);
            }
        }
    }
    check_required(value, schema, "", &mut errors);
    errors
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn check_required(value: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if let (Some(obj), Some(required)) = (
        value.as_object(),
        schema.get("required").and_then(Value::as_array),
    ) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                errors.push(FieldError::required(join(path, r), ""));
            }
        }
    }
}

fn type_matches(value: &Value, schema: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return value.is_i64() || value.is_u64() || value.is_string();
    }
    match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    }
}

fn cached_regex(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Patterns are ECMA-262; the few RE2 cannot compile are skipped, not enforced.
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok())
        .clone()
}

fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if !type_matches(value, schema) {
        let want = schema["type"].as_str().unwrap_or("int-or-string");
        errors.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body must be of type {want}"),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(FieldError::unsupported(path, value, allowed));
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errors.push(FieldError::too_long(path, max));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = schema["pattern"].as_str()
                && let Some(re) = cached_regex(p)
                && !re.is_match(s)
            {
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{path} in body should match '{p}'"),
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{path} in body should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{path} in body should be less than or equal to {max}"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                errors.push(FieldError::too_long(path, max));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, &format!("{path}[{i}]"), errors);
                }
            }
            check_unique_keys(items, schema, path, errors);
        }
        Value::Object(map) => {
            if let Some(max) = schema["maxProperties"].as_u64()
                && map.len() as u64 > max
            {
                errors.push(FieldError::too_long(path, max));
            }
            check_required(value, schema, path, errors);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    check(v, s, &join(path, k), errors);
                }
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: map|set` lists may not repeat a key.
fn check_unique_keys(items: &[Value], schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let keyed: Vec<Value> = match (Cursor {
        node: Some(schema),
        root: false,
    })
    .list_type()
    {
        ListType::Atomic => return,
        ListType::Set => items.to_vec(),
        ListType::Map(keys) => items
            .iter()
            .map(|i| Value::Array(keys.iter().map(|k| i[k].clone()).collect()))
            .collect(),
    };
    for (i, k) in keyed.iter().enumerate() {
        if keyed[..i].contains(k) {
            errors.push(FieldError {
                field: format!("{path}[{i}]"),
                reason: "FieldValueDuplicate",
                message: format!("Duplicate value: {k}"),
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["port"], "properties": {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "integer", "default": 1}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
        }})
    }

    #[test]
    fn defaults_and_prunes() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "extra": 1},
            "spec": {"port": 80, "unknown": true, "items": [{"name": "a"}], "free": {"anything": 1}},
            "junk": 1});
        default_and_prune(&mut v, &schema());
        assert_eq!(
            v,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "extra": 1},
            "spec": {"port": 80, "mode": "A", "items": [{"name": "a", "weight": 1}], "free": {"anything": 1}}})
        );
    }

    #[test]
    fn validates_bounds_enum_pattern_required_and_keys() {
        let v = json!({"spec": {"port": 0, "mode": "C", "name": "ABCDEFG",
            "items": [{"name": "a"}, {"name": "a"}]}});
        let fields: Vec<(String, &str)> = validate(&v, &schema())
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect();
        assert!(
            fields.contains(&("spec.port".into(), "FieldValueInvalid")),
            "{fields:?}"
        );
        assert!(fields.contains(&("spec.mode".into(), "FieldValueNotSupported")));
        assert!(fields.contains(&("spec.name".into(), "FieldValueTooLong")));
        assert!(fields.contains(&("spec.items[1]".into(), "FieldValueDuplicate")));
        let missing = validate(&json!({"spec": {}}), &schema());
        assert_eq!(missing[0].field, "spec.port");
        assert_eq!(missing[0].reason, "FieldValueRequired");
    }

    #[test]
    fn cursor_knows_list_types() {
        let s = schema();
        let root = Cursor::root(Some(&s), "K");
        assert_eq!(
            root.field("spec").field("items").list_type(),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            root.field("metadata").field("finalizers").list_type(),
            ListType::Set
        );
        let svc = Cursor::root(None, "Service");
        assert_eq!(
            svc.field("spec").field("ports").list_type(),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(Cursor::unknown().field("x").list_type(), ListType::Atomic);
    }
}
