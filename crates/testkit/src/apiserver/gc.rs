//! The garbage collector and namespace finalizer: in a real cluster these run in the
//! controller manager, so here they run in a background task after writes, not inside
//! the request that deleted the owner. One pass, repeated until nothing changes:
//!
//! 1. Dependents whose owners are all gone are deleted ("background" cascading
//!    deletion: "the Kubernetes API server deletes the owner object immediately and the
//!    garbage collector controller cleans up the dependent objects in the background").
//! 2. Dependents of an owner marked with the `foregroundDeletion` finalizer are deleted;
//!    once it has none left, the finalizer is removed and the owner goes.
//! 3. A namespace being deleted has its content deleted; once empty, it goes.

use std::collections::HashSet;

use serde_json::Value;

use super::delete::{self, DeleteOpts};
use super::read::Scope;
use super::store::{EventType, ResKey, Store, obj_key};

/// A bound on passes: each pass makes progress or stops, so this only guards against a
/// bug looping forever.
const MAX_PASSES: usize = 100;

/// Runs collection passes until nothing is left to do; returns the number of writes.
pub(crate) fn collect(store: &mut Store) -> usize {
    let mut total = 0;
    for _ in 0..MAX_PASSES {
        let n = pass(store);
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

fn scope_for(store: &Store, res: &ResKey, obj: &Value) -> Option<(Scope, String)> {
    let rt = store.registry.get(&res.0, &res.1)?;
    let (ns, name) = obj_key(obj);
    let version = rt.storage_version().to_string();
    Some((
        Scope {
            rt,
            version,
            namespace: (!ns.is_empty()).then_some(ns),
        },
        name,
    ))
}

fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

fn pass(store: &mut Store) -> usize {
    let live: HashSet<String> = store.all().map(|(_, o)| uid(o).to_string()).collect();
    let foreground: HashSet<String> = store
        .all()
        .filter(|(_, o)| {
            deleting(o)
                && o["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
        })
        .map(|(_, o)| uid(o).to_string())
        .collect();
    let terminating: HashSet<String> = store
        .all()
        .filter(|(res, o)| res.0.is_empty() && res.1 == "namespaces" && deleting(o))
        .map(|(_, o)| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();

    let mut doomed: Vec<(ResKey, Value)> = Vec::new();
    for (res, o) in store.all() {
        if deleting(o) {
            continue;
        }
        let owners: Vec<&str> = o["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uid"].as_str())
            .collect();
        let orphaned = !owners.is_empty() && owners.iter().all(|u| !live.contains(*u));
        let owner_in_foreground = owners.iter().any(|u| foreground.contains(*u));
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let in_terminating_ns = !ns.is_empty() && terminating.contains(ns);
        if orphaned || owner_in_foreground || in_terminating_ns {
            doomed.push((res.clone(), o.clone()));
        }
    }
    let mut writes = 0;
    for (res, o) in doomed {
        if let Some((scope, name)) = scope_for(store, &res, &o) {
            let d = DeleteOpts::default();
            if delete::delete(store, &scope, &name, &d).is_ok() {
                writes += 1;
            }
        }
    }

    // Owners waiting for their dependents (foreground), namespaces waiting for content.
    let mut done: Vec<(ResKey, Value)> = Vec::new();
    for (res, o) in store.all() {
        if !deleting(o) {
            continue;
        }
        let id = uid(o);
        if foreground.contains(id) && !store.all().any(|(_, d)| delete::references(d, id)) {
            done.push((res.clone(), o.clone()));
        }
        if res.0.is_empty() && res.1 == "namespaces" {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let empty = !store
                .all()
                .any(|(_, d)| d["metadata"]["namespace"].as_str() == Some(name));
            if empty {
                done.push((res.clone(), o.clone()));
            }
        }
    }
    for (res, mut o) in done {
        if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != "foregroundDeletion");
        }
        let key = obj_key(&o);
        if o["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            store.put(&res, o, EventType::Modified);
            store.remove(&res, &key);
        } else {
            store.put(&res, o, EventType::Modified);
        }
        writes += 1;
    }
    writes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apiserver::write::{self, WriteOpts};
    use serde_json::json;

    fn scope(store: &Store, plural: &str, ns: Option<&str>) -> Scope {
        Scope {
            rt: store.registry.get("", plural).unwrap(),
            version: "v1".into(),
            namespace: ns.map(str::to_string),
        }
    }

    #[test]
    fn owned_objects_and_namespace_content_go() {
        let mut store = Store::new(100);
        let o = WriteOpts {
            manager: "t".into(),
            ..Default::default()
        };
        let ns = scope(&store, "namespaces", None);
        write::create(&mut store, &ns, json!({"metadata": {"name": "d"}}), &o).unwrap();
        let cms = scope(&store, "configmaps", Some("d"));
        let owner =
            write::create(&mut store, &cms, json!({"metadata": {"name": "owner"}}), &o).unwrap();
        let uid = owner["metadata"]["uid"].as_str().unwrap();
        let owned = json!({"metadata": {"name": "owned", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
        write::create(&mut store, &cms, owned, &o).unwrap();
        delete::delete(&mut store, &cms, "owner", &DeleteOpts::default()).unwrap();
        assert_eq!(
            store
                .list(&("".into(), "configmaps".into()), Some("d"))
                .count(),
            1
        );
        assert_eq!(collect(&mut store), 1);
        assert_eq!(
            store
                .list(&("".into(), "configmaps".into()), Some("d"))
                .count(),
            0
        );

        write::create(&mut store, &cms, json!({"metadata": {"name": "left"}}), &o).unwrap();
        delete::delete(&mut store, &ns, "d", &DeleteOpts::default()).unwrap();
        assert!(
            write::create(&mut store, &cms, json!({"metadata": {"name": "late"}}), &o).is_err()
        );
        collect(&mut store);
        assert_eq!(store.all().count(), 0);
    }
}
