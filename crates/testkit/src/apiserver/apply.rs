//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every write records who set which fields: an apply replaces its manager's `Apply`
//! entry with the fields of the applied configuration; any other write (create, update,
//! merge or JSON patch) gives the fields it changed to its manager's `Update` entry and
//! takes them from everyone else. Entries are per (manager, operation, subresource).
//!
//! The apply rules implemented, from the Kubernetes docs ("Server-Side Apply"):
//! - "A conflict is a special status error that occurs when an Apply operation tries to
//!   change a field that another manager also claims to manage." Same value: shared
//!   ownership, no conflict.
//! - "Overwrite value, become sole manager": with `force=true` the conflicting fields
//!   move to the applier.
//! - "If a field is removed from the applied configuration and no other manager owns
//!   it, the field is removed from the live object."
//! - Maps merge field by field; `x-kubernetes-list-type: map` lists merge element by
//!   element (by their keys), `set` lists by value; other lists are atomic.

use serde_json::{Map, Value, json};

use super::fieldset::{self, FieldPath, FieldSet, Part};
use super::schema::{Cursor, ListType};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManagedEntry {
    pub(crate) manager: String,
    /// `Apply` or `Update`.
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: String,
    /// "" for the main resource, "status" for /status.
    pub(crate) subresource: String,
    pub(crate) fields: FieldSet,
}

pub(crate) fn read_entries(obj: &Value) -> Vec<ManagedEntry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            fields: fieldset::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub(crate) fn write_entries(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fieldset::to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::from(e.subresource.clone());
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".to_string(), Value::Array(list));
        }
    }
}

/// Who writes, and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) manager: &'a str,
    pub(crate) api_version: &'a str,
    pub(crate) subresource: &'a str,
    pub(crate) now: &'a str,
}

fn entry_mut<'e>(
    entries: &'e mut Vec<ManagedEntry>,
    w: &Writer<'_>,
    operation: &str,
) -> &'e mut ManagedEntry {
    let pos = entries.iter().position(|e| {
        e.manager == w.manager && e.operation == operation && e.subresource == w.subresource
    });
    let i = match pos {
        Some(i) => i,
        None => {
            entries.push(ManagedEntry {
                manager: w.manager.to_string(),
                operation: operation.to_string(),
                api_version: w.api_version.to_string(),
                time: w.now.to_string(),
                subresource: w.subresource.to_string(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.time = w.now.to_string();
    e.api_version = w.api_version.to_string();
    e
}

/// Records a non-apply write: the writer's `Update` entry gains the fields that changed
/// from `old` to `new`, other entries lose them, and removed fields leave every entry.
pub(crate) fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    cursor: Cursor<'_>,
    w: &Writer<'_>,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let old_view = old.map(|o| fieldset::ownable(o, Part::Whole));
    let new_view = fieldset::ownable(new, Part::Whole);
    let old_leaves = old_view
        .as_ref()
        .map(|v| fieldset::leaves(v, cursor))
        .unwrap_or_default();
    let new_leaves = fieldset::leaves(&new_view, cursor);
    let changed: FieldSet = new_leaves
        .iter()
        .filter(|p| fieldset::differs_at(old_view.as_ref(), Some(&new_view), p))
        .cloned()
        .collect();
    let removed: FieldSet = old_leaves.difference(&new_leaves).cloned().collect();
    if !changed.is_empty() || !removed.is_empty() {
        for e in entries.iter_mut() {
            e.fields
                .retain(|p| !changed.contains(p) && !removed.contains(p));
        }
        let mine = entry_mut(&mut entries, w, "Update");
        mine.fields.extend(changed);
    }
    write_entries(new, &entries);
}

/// Merges an applied configuration into `dst` (see the module doc for the rules).
fn merge(dst: &mut Value, src: &Value, cursor: Cursor<'_>) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, sv) in s {
                match d.get_mut(k) {
                    Some(dv) => merge(dv, sv, cursor.field(k)),
                    None => {
                        d.insert(k.clone(), sv.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => match cursor.list_type() {
            ListType::Map(keys) => {
                for se in s {
                    let same = |de: &&mut Value| keys.iter().all(|k| de.get(k) == se.get(k));
                    match d.iter_mut().find(same) {
                        Some(de) => merge(de, se, cursor.items()),
                        None => d.push(se.clone()),
                    }
                }
            }
            ListType::Set => {
                for se in s {
                    if !d.contains(se) {
                        d.push(se.clone());
                    }
                }
            }
            ListType::Atomic => *d = s.clone(),
        },
        (dst, src) => *dst = src.clone(),
    }
}

/// A field another manager owns with another value: (manager, shown path).
pub(crate) type Conflict = (String, String);

/// Server-side apply of `config` by `w.manager` onto `current` (`None`: the object does
/// not exist yet and apply creates it). `part` says which fields this endpoint may set.
/// Returns the new object with its managedFields, or the conflicts when not forced.
pub(crate) fn apply(
    current: Option<&Value>,
    config: &Value,
    part: Part,
    cursor: Cursor<'_>,
    force: bool,
    w: &Writer<'_>,
) -> Result<Value, Vec<Conflict>> {
    let applied = fieldset::ownable(config, part);
    let applied_set = fieldset::leaves(&applied, cursor);
    let mut merged = match current {
        Some(c) => c.clone(),
        None => {
            let mut skeleton = Map::new();
            for k in ["apiVersion", "kind"] {
                if let Some(v) = config.get(k) {
                    skeleton.insert(k.to_string(), v.clone());
                }
            }
            let mut meta = Map::new();
            for k in ["name", "namespace"] {
                if let Some(v) = config["metadata"].get(k) {
                    meta.insert(k.to_string(), v.clone());
                }
            }
            skeleton.insert("metadata".to_string(), Value::Object(meta));
            Value::Object(skeleton)
        }
    };
    merge(&mut merged, &applied, cursor);

    let mut entries = current.map(read_entries).unwrap_or_default();
    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.manager == w.manager {
            continue;
        }
        for p in e.fields.intersection(&applied_set) {
            if fieldset::differs_at(current, Some(&merged), p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let mut shown: Vec<Conflict> = conflicts
            .iter()
            .map(|(i, p)| (entries[*i].manager.clone(), fieldset::display(p)))
            .collect();
        shown.sort();
        shown.dedup();
        return Err(shown);
    }
    for (i, p) in &conflicts {
        entries[*i].fields.remove(p);
    }

    // Fields this manager applied before and no longer does: removed from the object
    // unless someone else still owns them.
    let subresource = w.subresource;
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.manager == w.manager && e.operation == "Apply" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == w.manager && e.operation == "Apply" && e.subresource == subresource)
                && e.fields.contains(p)
        });
        if !owned_elsewhere {
            fieldset::remove_at(&mut merged, p);
        }
    }
    let mine = entry_mut(&mut entries, w, "Apply");
    mine.fields = applied_set;
    write_entries(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            now: "2024-01-01T00:00:00Z",
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let c = Cursor::root(None, "ConfigMap");
        let a = apply(
            None,
            &cm(json!({"x": "1", "y": "1"})),
            Part::Whole,
            c,
            false,
            &writer("a"),
        )
        .unwrap();
        // Same value: shared, no conflict.
        let b = apply(
            Some(&a),
            &cm(json!({"x": "1"})),
            Part::Whole,
            c,
            false,
            &writer("b"),
        )
        .unwrap();
        // Other value: conflict unless forced.
        let err = apply(
            Some(&b),
            &cm(json!({"y": "2"})),
            Part::Whole,
            c,
            false,
            &writer("b"),
        )
        .unwrap_err();
        assert_eq!(err, vec![("a".to_string(), ".data.y".to_string())]);
        let forced = apply(
            Some(&b),
            &cm(json!({"y": "2"})),
            Part::Whole,
            c,
            true,
            &writer("b"),
        )
        .unwrap();
        assert_eq!(forced["data"], json!({"x": "1", "y": "2"}));
        // a drops x: b no longer applies x either, so x goes; a keeps nothing.
        let entries = read_entries(&forced);
        let b_fields = &entries.iter().find(|e| e.manager == "b").unwrap().fields;
        assert_eq!(b_fields.len(), 1, "b applied only y last time");
        let dropped = apply(
            Some(&forced),
            &cm(json!({})),
            Part::Whole,
            c,
            false,
            &writer("a"),
        )
        .unwrap();
        assert_eq!(dropped["data"], json!({"y": "2"}));
    }

    #[test]
    fn update_takes_fields_from_appliers() {
        let c = Cursor::root(None, "ConfigMap");
        let a = apply(
            None,
            &cm(json!({"x": "1"})),
            Part::Whole,
            c,
            false,
            &writer("a"),
        )
        .unwrap();
        let mut edited = a.clone();
        edited["data"]["x"] = json!("2");
        track_update(Some(&a), &mut edited, c, &writer("kubectl-edit"));
        let entries = read_entries(&edited);
        assert!(
            entries.iter().all(|e| e.manager == "kubectl-edit"),
            "{entries:?}"
        );
        let err = apply(
            Some(&edited),
            &cm(json!({"x": "1"})),
            Part::Whole,
            c,
            false,
            &writer("a"),
        )
        .unwrap_err();
        assert_eq!(err[0].0, "kubectl-edit");
    }
}
