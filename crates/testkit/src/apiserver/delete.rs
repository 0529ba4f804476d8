//! Deletes: of one object (with preconditions, finalizers, `propagationPolicy`
//! Background, Foreground or Orphan) and of a collection. CRDs take their objects and
//! their resource with them.
//!
//! "When you delete an object, you can control whether Kubernetes deletes the object's
//! dependents automatically": Background deletes the owner now and leaves dependents
//! to the garbage collector ([`super::gc`]); Foreground marks the owner with the
//! `foregroundDeletion` finalizer until its dependents are gone; Orphan removes the
//! owner's ownerReferences from its dependents first.

use serde_json::{Value, json};

use super::error::ApiError;
use super::read::{ListQuery, Scope, present};
use super::store::{EventType, Store, obj_key, res_key};
use super::write::{is_crd, meta_str, now};

/// DeleteOptions that matter here.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOpts {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub(crate) propagation: Option<String>,
    pub(crate) precondition_uid: Option<String>,
    pub(crate) precondition_rv: Option<String>,
    pub(crate) dry_run: bool,
}

impl DeleteOpts {
    /// From a DeleteOptions body (may be empty) and the query's `propagationPolicy`.
    pub(crate) fn from_body(
        body: &[u8],
        query_policy: Option<String>,
        dry_run: bool,
    ) -> Result<Self, ApiError> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("decoding DeleteOptions: {e}")))?
        };
        let text = |x: &Value| x.as_str().map(str::to_string);
        let dry = v["dryRun"].as_array().is_some_and(|a| !a.is_empty());
        Ok(DeleteOpts {
            propagation: text(&v["propagationPolicy"]).or(query_policy),
            precondition_uid: text(&v["preconditions"]["uid"]),
            precondition_rv: text(&v["preconditions"]["resourceVersion"]),
            dry_run: dry_run || dry,
        })
    }
}

/// DELETE on an object. Returns the object as it was deleted, or as marked for deletion.
pub(crate) fn delete(
    store: &mut Store,
    s: &Scope,
    name: &str,
    d: &DeleteOpts,
) -> Result<Value, ApiError> {
    let res = res_key(&s.rt);
    let key = s.key(name);
    let Some(obj) = store.get(&res, &key).cloned() else {
        return Err(ApiError::not_found(s.subject(name)));
    };
    if let Some(uid) = &d.precondition_uid
        && uid != meta_str(&obj, "uid")
    {
        return Err(ApiError {
            reason: "Conflict",
            ..ApiError::stale(s.subject(name))
        });
    }
    if let Some(rv) = &d.precondition_rv
        && rv != meta_str(&obj, "resourceVersion")
    {
        return Err(ApiError::stale(s.subject(name)));
    }
    if d.dry_run {
        return Ok(present(&s.rt, &s.version, &obj));
    }
    let uid = meta_str(&obj, "uid").to_string();
    let policy = d.propagation.as_deref().unwrap_or("Background");
    if policy == "Orphan" {
        orphan_dependents(store, &uid);
    }
    let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if policy == "Foreground" && !finalizers.contains(&json!("foregroundDeletion")) {
        finalizers.push(json!("foregroundDeletion"));
    }
    let is_namespace = s.rt.group.is_empty() && s.rt.plural == "namespaces";
    if !finalizers.is_empty() || is_namespace {
        if !obj["metadata"]["deletionTimestamp"].is_null() {
            return Ok(present(&s.rt, &s.version, &obj));
        }
        // Marked, not removed: the owner of each finalizer (or, for namespaces and
        // foreground deletion, the garbage collector) finishes the job.
        let mut marked = obj;
        marked["metadata"]["deletionTimestamp"] = Value::from(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = Value::from(0);
        if !finalizers.is_empty() {
            marked["metadata"]["finalizers"] = Value::Array(finalizers);
        }
        if is_namespace {
            marked["status"]["phase"] = Value::from("Terminating");
        }
        let stored = store.put(&res, marked, EventType::Modified);
        return Ok(present(&s.rt, &s.version, &stored));
    }
    if is_crd(&s.rt) {
        let group = obj["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let plural = obj["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        store.drop_resource(&(group.clone(), plural.clone()));
        store.registry.unregister(&group, &plural);
    }
    let gone = store.remove(&res, &key).unwrap_or(obj);
    Ok(present(&s.rt, &s.version, &gone))
}

/// `propagationPolicy: Orphan`: dependents lose their reference to the owner.
fn orphan_dependents(store: &mut Store, owner_uid: &str) {
    let dependents: Vec<((String, String), Value)> = store
        .all()
        .filter(|(_, o)| references(o, owner_uid))
        .map(|(r, o)| (r.clone(), o.clone()))
        .collect();
    for (res, mut o) in dependents {
        if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != owner_uid);
        }
        if o["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(Vec::is_empty)
            && let Some(m) = o["metadata"].as_object_mut()
        {
            m.remove("ownerReferences");
        }
        store.put(&res, o, EventType::Modified);
    }
}

/// Whether `obj` has an ownerReference to `uid`.
pub(crate) fn references(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// DELETE on a collection: every object the selectors match.
pub(crate) fn delete_collection(
    store: &mut Store,
    s: &Scope,
    q: &ListQuery,
    d: &DeleteOpts,
) -> Result<Value, ApiError> {
    let names: Vec<(String, String)> = store
        .list(&res_key(&s.rt), s.namespace.as_deref())
        .filter(|o| q.matches(o))
        .map(obj_key)
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        let scope = Scope {
            namespace: (!ns.is_empty()).then_some(ns),
            ..s.clone()
        };
        items.push(delete(store, &scope, &name, d)?);
    }
    Ok(json!({
        "kind": format!("{}List", s.rt.kind),
        "apiVersion": s.rt.api_version(&s.version),
        "metadata": {"resourceVersion": store.current_rv().to_string()},
        "items": items,
    }))
}
