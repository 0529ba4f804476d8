//! Reads: get and list (with selectors and `limit`/`continue` paging), and how an
//! object is shown in the version a client asked for.

use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{ApiError, Subject};
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Store, obj_key, res_key};

/// Which resource a request is about, in which version and namespace.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) rt: Arc<ResourceType>,
    pub(crate) version: String,
    /// The namespace in the URL (None: cluster-scoped, or all namespaces).
    pub(crate) namespace: Option<String>,
}

impl Scope {
    pub(crate) fn subject<'a>(&'a self, name: &'a str) -> Subject<'a> {
        Subject {
            group: &self.rt.group,
            plural: &self.rt.plural,
            name,
        }
    }

    pub(crate) fn key(&self, name: &str) -> (String, String) {
        (self.namespace.clone().unwrap_or_default(), name.to_string())
    }
}

/// The object as served in `version`: objects are stored once, in the storage version.
pub(crate) fn present(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), Value::from(rt.api_version(version)));
        m.insert("kind".into(), Value::from(rt.kind.clone()));
    }
    v
}

/// An object as `meta.k8s.io/v1` PartialObjectMetadata (what clients get when they
/// `Accept` `as=PartialObjectMetadata`, e.g. kube's `metadata_watcher`).
pub(crate) fn to_partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// A list (or a single object) reduced to metadata.
pub(crate) fn to_partial_response(v: &Value) -> Value {
    match v["items"].as_array() {
        Some(items) => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": v["metadata"], "items": items.iter().map(to_partial).collect::<Vec<_>>(),
        }),
        None => to_partial(v),
    }
}

pub(crate) fn get(store: &Store, s: &Scope, name: &str) -> Result<Value, ApiError> {
    store
        .get(&res_key(&s.rt), &s.key(name))
        .map(|o| present(&s.rt, &s.version, o))
        .ok_or_else(|| ApiError::not_found(s.subject(name)))
}

/// Parameters of a list request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
}

impl ListQuery {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// The continue token: the key of the last item returned. Lists are served from the
/// current state, not from a snapshot at the first page's resourceVersion.
fn parse_continue(token: &str) -> Result<(String, String), ApiError> {
    token
        .split_once('/')
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token}")))
}

pub(crate) fn list(store: &Store, s: &Scope, q: &ListQuery) -> Result<Value, ApiError> {
    let after = q
        .continue_token
        .as_deref()
        .map(parse_continue)
        .transpose()?;
    let mut items: Vec<&Value> = store
        .list(&res_key(&s.rt), s.namespace.as_deref())
        .filter(|o| after.as_ref().is_none_or(|a| obj_key(o) > *a))
        .filter(|o| q.matches(o))
        .collect();
    let mut meta = json!({"resourceVersion": store.current_rv().to_string()});
    if let Some(limit) = q.limit.filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            let (ns, name) = obj_key(last);
            meta["continue"] = Value::from(format!("{ns}/{name}"));
            meta["remainingItemCount"] = Value::from(remaining);
        }
    }
    Ok(json!({
        "kind": format!("{}List", s.rt.kind),
        "apiVersion": s.rt.api_version(&s.version),
        "metadata": meta,
        "items": items.into_iter().map(|o| present(&s.rt, &s.version, o)).collect::<Vec<_>>(),
    }))
}
