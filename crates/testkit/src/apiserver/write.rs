//! Writes: create, replace and patch (merge, strategic, JSON patch, apply), on the
//! main resource or its `/status` subresource (deletes: `delete.rs`). Every update
//! ends in [`commit`]:
//!
//! ```text
//! request body ─> (patch|apply) ─> split main/status ─> keep system metadata
//!   ─> resourceVersion precondition ─> defaults ─> validation ─> generation
//!   ─> managedFields ─> no-op? ─> finalizers ─> store.put (rv+1, event to watches)
//! ```
//!
//! Rules from the Kubernetes API conventions kept here:
//! - "PUT requests to the /status subresource take a custom resource object and ignore
//!   changes to anything except the status stanza", and the main resource ignores
//!   `.status` when the kind has a status subresource.
//! - `metadata.generation` increases on changes to anything but `.metadata` and (with a
//!   status subresource) `.status`.
//! - An update whose result equals the stored object is not written: no new
//!   resourceVersion, no watch event.
//! - An object with finalizers is only marked (`deletionTimestamp`) by a delete and goes
//!   when its last finalizer is removed.

use serde_json::{Value, json};

use super::admission;
use super::apply::{self, Writer};
use super::error::{ApiError, FieldError};
use super::fieldset::Part;
use super::read::{Scope, present};
use super::resources::{self, CRD_GROUP, CRD_PLURAL, ResourceType};
use super::schema::Cursor;
use super::store::{EventType, Store, res_key};

/// Who writes and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOpts {
    pub(crate) manager: String,
    pub(crate) dry_run: bool,
    pub(crate) force: bool,
    /// The request is on the `/status` subresource.
    pub(crate) status: bool,
}

/// The patch formats, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`: handled as a merge patch (lists are
    /// replaced, not merged by their patch keys; `$patch` directives are not
    /// understood). Refused for custom resources, as by the real server.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// `2024-05-01T10:00:00Z`, as metav1.Time serializes.
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// Which part of the object a write on this scope may set.
fn part(rt: &ResourceType, o: &WriteOpts) -> Part {
    if o.status {
        Part::Status
    } else if rt.status_subresource {
        Part::Main
    } else {
        Part::Whole
    }
}

/// Everything but metadata (and status, when it has its own endpoint): what
/// `metadata.generation` tracks.
fn spec_view(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        for k in ["metadata", "apiVersion", "kind"] {
            m.remove(k);
        }
        if rt.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// The object without what changes on every write anyway (managedFields timestamps).
fn noop_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(list) = v["metadata"]["managedFields"].as_array_mut() {
        for e in list {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

fn check_body_identity(s: &Scope, body: &Value, url_name: Option<&str>) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let want = s.rt.api_version(&s.version);
    if let Some(av) = body["apiVersion"].as_str()
        && av != want
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want})"
        )));
    }
    if let Some(k) = body["kind"].as_str()
        && k != s.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            s.rt.kind
        )));
    }
    if let Some(name) = url_name {
        let body_name = meta_str(body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    let body_ns = meta_str(body, "namespace");
    if s.rt.namespaced
        && let Some(ns) = &s.namespace
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Namespaced objects need a namespace that exists and is not being deleted.
fn check_namespace(store: &Store, s: &Scope, name: &str) -> Result<(), ApiError> {
    if !s.rt.namespaced {
        return Ok(());
    }
    let Some(ns) = s.namespace.as_deref() else {
        return Err(ApiError::bad_request(
            "a namespace is required for namespaced resources",
        ));
    };
    let ns_key = (String::new(), "namespaces".to_string());
    match store.get(&ns_key, &(String::new(), ns.to_string())) {
        None => Err(ApiError::not_found(super::error::Subject {
            group: "",
            plural: "namespaces",
            name: ns,
        })),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(
            s.subject(name),
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(&rt.kind, name, errors)
}

/// POST to a collection.
pub(crate) fn create(
    store: &mut Store,
    s: &Scope,
    mut body: Value,
    o: &WriteOpts,
) -> Result<Value, ApiError> {
    check_body_identity(s, &body, None)?;
    if meta_str(&body, "name").is_empty() {
        let prefix = meta_str(&body, "generateName").to_string();
        if prefix.is_empty() {
            return Err(invalid(
                &s.rt,
                "",
                &[FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        body["metadata"]["name"] = Value::from(format!("{prefix}{}", random_suffix()));
    }
    let cursor = Cursor::root(s.rt.schema(&s.version), &s.rt.kind);
    let writer = Writer {
        manager: &o.manager,
        api_version: &s.rt.api_version(&s.version),
        subresource: "",
        now: &now(),
    };
    if let Some(meta) = body["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    let mut tracked = body;
    prepare_new(store, s, &mut tracked)?;
    apply::track_update(None, &mut tracked, cursor, &writer);
    insert_new(store, s, tracked, o)
}

/// Fills system metadata of an object about to be created and strips what a create
/// may not set.
fn prepare_new(store: &Store, s: &Scope, obj: &mut Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").to_string();
    check_namespace(store, s, &name)?;
    if store.get(&res_key(&s.rt), &s.key(&name)).is_some() {
        return Err(ApiError::already_exists(s.subject(&name)));
    }
    let meta = &mut obj["metadata"];
    if let Some(m) = meta.as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    meta["uid"] = Value::from(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = Value::from(now());
    meta["generation"] = Value::from(1);
    match &s.namespace {
        Some(ns) if s.rt.namespaced => meta["namespace"] = Value::from(ns.clone()),
        _ => {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    if s.rt.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    Ok(())
}

/// Defaults, validates and stores a new object (its managedFields already set).
fn insert_new(
    store: &mut Store,
    s: &Scope,
    mut obj: Value,
    o: &WriteOpts,
) -> Result<Value, ApiError> {
    let name = meta_str(&obj, "name").to_string();
    admission::default(&s.rt, &s.version, &mut obj, None, store);
    let errors = admission::validate(&s.rt, &s.version, &obj);
    if !errors.is_empty() {
        return Err(invalid(&s.rt, &name, &errors));
    }
    obj["apiVersion"] = Value::from(s.rt.api_version(s.rt.storage_version()));
    obj["kind"] = Value::from(s.rt.kind.clone());
    if is_crd(&s.rt) {
        register_crd(store, &mut obj, o.dry_run)?;
    }
    if o.dry_run {
        return Ok(present(&s.rt, &s.version, &obj));
    }
    let stored = store.put(&res_key(&s.rt), obj, EventType::Added);
    Ok(present(&s.rt, &s.version, &stored))
}

pub(crate) fn is_crd(rt: &ResourceType) -> bool {
    rt.group == CRD_GROUP && rt.plural == CRD_PLURAL
}

/// A CRD write: check it, (re)register its resource, and report it Established.
fn register_crd(store: &mut Store, crd: &mut Value, dry_run: bool) -> Result<(), ApiError> {
    let name = meta_str(crd, "name").to_string();
    let rt = resources::from_crd(crd)
        .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, &e))?;
    if let Some(existing) = store.registry.get(&rt.group, &rt.plural)
        && !existing.is_custom()
    {
        return Err(resources::crd_conflict(&name, &existing));
    }
    let now = now();
    let condition = |ty: &str, reason: &str, message: &str| json!({"type": ty, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": [rt.storage_version()],
    });
    if !dry_run {
        store.registry.register(rt);
    }
    Ok(())
}

/// PUT on an object or its status.
pub(crate) fn replace(
    store: &mut Store,
    s: &Scope,
    name: &str,
    body: Value,
    o: &WriteOpts,
) -> Result<Value, ApiError> {
    check_body_identity(s, &body, Some(name))?;
    let Some(old) = store.get(&res_key(&s.rt), &s.key(name)).cloned() else {
        return Err(ApiError::not_found(s.subject(name)));
    };
    if meta_str(&body, "resourceVersion").is_empty() && s.rt.is_custom() {
        return Err(invalid(
            &s.rt,
            name,
            &[FieldError::invalid(
                "metadata.resourceVersion",
                &Value::from("0x0"),
                "must be specified for an update",
            )],
        ));
    }
    commit(store, s, &old, body, o, true)
}

/// PATCH on an object or its status; apply creates a missing object.
pub(crate) fn patch(
    store: &mut Store,
    s: &Scope,
    name: &str,
    ptype: PatchType,
    body: &[u8],
    o: &WriteOpts,
) -> Result<(Value, bool), ApiError> {
    let current = store.get(&res_key(&s.rt), &s.key(name)).cloned();
    if ptype == PatchType::Apply {
        return apply_patch(store, s, name, current, body, o);
    }
    let Some(old) = current else {
        return Err(ApiError::not_found(s.subject(name)));
    };
    let mut doc = present(&s.rt, &s.version, &old);
    match ptype {
        PatchType::Strategic if s.rt.is_custom() => {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
            ));
        }
        PatchType::Merge | PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut doc, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| {
                invalid(
                    &s.rt,
                    name,
                    &[FieldError::invalid(
                        "",
                        &Value::Null,
                        &format!("the JSON patch could not be applied: {e}"),
                    )],
                )
            })?;
        }
        PatchType::Apply => {}
    }
    commit(store, s, &old, doc, o, true).map(|v| (v, false))
}

fn apply_patch(
    store: &mut Store,
    s: &Scope,
    name: &str,
    current: Option<Value>,
    body: &[u8],
    o: &WriteOpts,
) -> Result<(Value, bool), ApiError> {
    if o.manager.is_empty() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let config: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if config["apiVersion"].as_str().is_none() || config["kind"].as_str().is_none() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    check_body_identity(s, &config, Some(name))?;
    let cursor = Cursor::root(s.rt.schema(&s.version), &s.rt.kind);
    let api_version = s.rt.api_version(&s.version);
    let now = now();
    let writer = Writer {
        manager: &o.manager,
        api_version: &api_version,
        subresource: if o.status { "status" } else { "" },
        now: &now,
    };
    let to_error = |c: Vec<apply::Conflict>| ApiError::apply_conflict(s.subject(name), &c);
    match current {
        None if o.status => Err(ApiError::not_found(s.subject(name))),
        None => {
            let mut config = config;
            config["metadata"]["name"] = Value::from(name);
            let mut created = apply::apply(None, &config, part(&s.rt, o), cursor, o.force, &writer)
                .map_err(to_error)?;
            prepare_new(store, s, &mut created)?;
            insert_new(store, s, created, o).map(|v| (v, true))
        }
        Some(old) => {
            // A resourceVersion in the configuration is a precondition.
            let want = meta_str(&config, "resourceVersion");
            if !want.is_empty() && want != meta_str(&old, "resourceVersion") {
                return Err(ApiError::stale(s.subject(name)));
            }
            let merged = apply::apply(
                Some(&old),
                &config,
                part(&s.rt, o),
                cursor,
                o.force,
                &writer,
            )
            .map_err(to_error)?;
            commit(store, s, &old, merged, o, false).map(|v| (v, false))
        }
    }
}

/// The common end of every update (see the module doc). `track`: record managedFields
/// for a non-apply write (apply has done its own bookkeeping).
fn commit(
    store: &mut Store,
    s: &Scope,
    old: &Value,
    body: Value,
    o: &WriteOpts,
    track: bool,
) -> Result<Value, ApiError> {
    let rt = s.rt.clone();
    let name = meta_str(old, "name").to_string();
    let body_rv = meta_str(&body, "resourceVersion").to_string();
    if !body_rv.is_empty() && body_rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::stale(s.subject(&name)));
    }
    let mut new = if o.status {
        let mut n = old.clone();
        match body.get("status") {
            Some(st) => n["status"] = st.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if !track {
            n["metadata"]["managedFields"] = body["metadata"]["managedFields"].clone();
        }
        n
    } else {
        let mut n = body;
        if rt.status_subresource {
            match old.get("status") {
                Some(st) => n["status"] = st.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // System metadata is the server's: kept from the stored object.
        for k in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(k) {
                Some(v) => n["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = n["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        n
    };
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    new["apiVersion"] = Value::from(rt.api_version(rt.storage_version()));
    new["kind"] = Value::from(rt.kind.clone());
    admission::default(&rt, &s.version, &mut new, Some(old), store);
    let errors = admission::validate(&rt, &s.version, &new);
    if !errors.is_empty() {
        return Err(invalid(&rt, &name, &errors));
    }
    if spec_view(&rt, &new) != spec_view(&rt, old) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = Value::from(g + 1);
    }
    if track {
        let cursor = Cursor::root(rt.schema(&s.version), &rt.kind);
        let api_version = rt.api_version(&s.version);
        let now = now();
        let writer = Writer {
            manager: &o.manager,
            api_version: &api_version,
            subresource: if o.status { "status" } else { "" },
            now: &now,
        };
        apply::track_update(Some(old), &mut new, cursor, &writer);
    }
    if is_crd(&rt) {
        register_crd(store, &mut new, o.dry_run)?;
    }
    let mut old_cmp = old.clone();
    if let Some(m) = old_cmp["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    if noop_view(&new) == noop_view(&old_cmp) || o.dry_run {
        if o.dry_run {
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            return Ok(present(&rt, &s.version, &new));
        }
        return Ok(present(&rt, &s.version, old));
    }
    let res = res_key(&rt);
    let finalized = !new["metadata"]["deletionTimestamp"].is_null()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    if finalized {
        // The last finalizer is gone: the delete that was waiting completes now.
        store.put(&res, new, EventType::Modified);
        let gone = store.remove(&res, &s.key(&name)).unwrap_or_default();
        return Ok(present(&rt, &s.version, &gone));
    }
    let stored = store.put(&res, new, EventType::Modified);
    Ok(present(&rt, &s.version, &stored))
}
