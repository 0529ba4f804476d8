//! The resource registry: which group/version/resource paths exist, with their kind,
//! scope and subresources. Built-in kinds are a fixed table; every
//! `apiextensions.k8s.io/v1` CustomResourceDefinition adds one entry (served versions,
//! plural, scope, status subresource and the OpenAPI schema of each version).
//!
//! ```text
//! Registry ── by (group, plural) ─> ResourceType { kind, versions[served], namespaced,
//!                                                  status_subresource, schemas{version} }
//! ```
//!
//! Objects are stored once per (group, plural), whatever version they were written in;
//! a read in another served version only rewrites `apiVersion` (CRDs with conversion
//! strategy `None`, as the Gateway API's are, need nothing more).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::error::{ApiError, FieldError};

/// One resource (a plural name in a group) and everything the server needs about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceType {
    pub(crate) group: String,
    /// Served versions, by Kubernetes version priority (the preferred one first).
    pub(crate) versions: Vec<String>,
    /// The version objects are stored in.
    pub(crate) storage: String,
    pub(crate) kind: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) namespaced: bool,
    /// Has a `/status` subresource: the main resource then ignores `.status` and the
    /// subresource changes only `.status`.
    pub(crate) status_subresource: bool,
    /// For custom resources: the structural schema of each version (defaults, pruning,
    /// list types for server-side apply, validation). `None` for built-in kinds.
    pub(crate) schemas: Option<BTreeMap<String, Value>>,
}

impl ResourceType {
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub(crate) fn storage_version(&self) -> &str {
        &self.storage
    }

    pub(crate) fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub(crate) fn is_custom(&self) -> bool {
        self.schemas.is_some()
    }

    /// The schema of one version (custom resources only).
    pub(crate) fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas.as_ref().and_then(|s| s.get(version))
    }
}

/// Built-in kinds: (group, version, kind, plural, namespaced, status subresource, short
/// names). Only the kinds Portico and its tests touch; no controller runs for any of
/// them (no Deployment makes Pods, no kubelet runs them).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
);
const BUILTINS: &[Builtin] = &[
    ("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
    ("", "v1", "Service", "services", true, true, &["svc"]),
    ("", "v1", "Secret", "secrets", true, false, &[]),
    ("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
    ("", "v1", "Event", "events", true, false, &["ev"]),
    ("", "v1", "Pod", "pods", true, true, &["po"]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
    ),
    ("", "v1", "Node", "nodes", false, true, &["no"]),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        false,
        &[],
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        &["ev"],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        &[],
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        &["deploy"],
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", true, true, &["ds"]),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        &["crd", "crds"],
    ),
    // Stored so that manifests which ship them (the Gateway API's safe-upgrades policy)
    // apply; never evaluated.
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
        true,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
        false,
        &[],
    ),
];

/// The group that CRDs register through.
pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(crate) const CRD_PLURAL: &str = "customresourcedefinitions";

/// Every resource the server serves, built-in and custom.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    by_key: BTreeMap<(String, String), Arc<ResourceType>>,
}

impl Registry {
    pub(crate) fn with_builtins() -> Self {
        let mut by_key = BTreeMap::new();
        for (group, version, kind, plural, namespaced, status, short) in BUILTINS {
            let rt = ResourceType {
                group: (*group).to_string(),
                versions: vec![(*version).to_string()],
                storage: (*version).to_string(),
                kind: (*kind).to_string(),
                plural: (*plural).to_string(),
                singular: kind.to_lowercase(),
                short_names: short.iter().map(|s| (*s).to_string()).collect(),
                categories: Vec::new(),
                namespaced: *namespaced,
                status_subresource: *status,
                schemas: None,
            };
            by_key.insert(((*group).to_string(), (*plural).to_string()), Arc::new(rt));
        }
        Registry { by_key }
    }

    /// The resource at `/apis/<group>/<version>/<plural>`, if that version is served.
    pub(crate) fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.by_key
            .get(&(group.to_string(), plural.to_string()))
            .filter(|rt| rt.serves(version))
            .cloned()
    }

    pub(crate) fn get(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_key
            .get(&(group.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource of an `apiVersion` + `kind` pair (used by ownerReferences and apply).
    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.by_key
            .values()
            .find(|rt| rt.group == group && rt.kind == kind && rt.serves(version))
            .cloned()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.by_key.values()
    }

    /// Groups in discovery order (core group excluded), each with its versions.
    pub(crate) fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rt in self.by_key.values().filter(|rt| !rt.group.is_empty()) {
            let versions = groups.entry(rt.group.clone()).or_default();
            for v in &rt.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| version_priority(v));
        }
        groups
    }

    pub(crate) fn register(&mut self, rt: ResourceType) {
        self.by_key
            .insert((rt.group.clone(), rt.plural.clone()), Arc::new(rt));
    }

    pub(crate) fn unregister(&mut self, group: &str, plural: &str) {
        self.by_key.remove(&(group.to_string(), plural.to_string()));
    }
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Reads a CustomResourceDefinition into the resource it defines, checking what the
/// real server checks before it accepts one: names, scope, exactly one storage version,
/// `metadata.name == <plural>.<group>`.
pub(crate) fn from_crd(crd: &Value) -> Result<ResourceType, Vec<FieldError>> {
    let mut errors = Vec::new();
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let group = text(&spec["group"]);
    let names = &spec["names"];
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    let name = text(&crd["metadata"]["name"]);
    if name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            &Value::String(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            errors.push(FieldError::unsupported(
                "spec.scope",
                &spec["scope"],
                &[Value::from("Cluster"), Value::from("Namespaced")],
            ));
            false
        }
    };
    let mut versions = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut status_subresource = false;
    let mut storage = None;
    for (i, v) in spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vname = text(&v["name"]);
        if v["storage"].as_bool() == Some(true) {
            if storage.is_some() {
                errors.push(FieldError::invalid(
                    "spec.versions",
                    &Value::from(vname.clone()),
                    "must have exactly one version marked as storage version",
                ));
            }
            storage = Some(vname.clone());
        }
        if v["served"].as_bool() != Some(true) {
            continue;
        }
        if v["subresources"]["status"].is_object() {
            // The Gateway API enables /status on every served version; a CRD that
            // differs per version is not worth modelling here.
            status_subresource = true;
        }
        let schema = v["schema"]["openAPIV3Schema"].clone();
        if schema.is_null() {
            errors.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
        schemas.insert(vname.clone(), schema);
        versions.push(vname);
    }
    if storage.is_none() {
        errors.push(FieldError::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    versions.sort_by_key(|v| version_priority(v));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(ResourceType {
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        group,
        versions,
        storage: storage.unwrap_or_default(),
        kind,
        plural,
        namespaced,
        status_subresource,
        schemas: Some(schemas),
    })
}

/// Sort key of a version, as discovery orders them: GA before beta before alpha, higher
/// numbers first (`v2`, `v1`, `v1beta2`, `v1beta1`, `v1alpha1`), others last by name.
fn version_priority(v: &str) -> (u8, std::cmp::Reverse<u32>, std::cmp::Reverse<u32>, String) {
    let parsed = v.strip_prefix('v').and_then(|rest| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u32 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (rank, minor) = if tail.is_empty() {
            (0, "0")
        } else if let Some(m) = tail.strip_prefix("beta") {
            (1, m)
        } else if let Some(m) = tail.strip_prefix("alpha") {
            (2, m)
        } else {
            return None;
        };
        Some((rank, major, minor.parse::<u32>().ok()?))
    });
    match parsed {
        Some((rank, major, minor)) => (
            rank,
            std::cmp::Reverse(major),
            std::cmp::Reverse(minor),
            String::new(),
        ),
        None => (3, std::cmp::Reverse(0), std::cmp::Reverse(0), v.to_string()),
    }
}

/// An error for a CRD that collides with a resource already served.
pub(crate) fn crd_conflict(name: &str, rt: &ResourceType) -> ApiError {
    ApiError::invalid(
        "CustomResourceDefinition",
        name,
        &[FieldError::invalid(
            "spec.names.plural",
            &Value::from(rt.plural.clone()),
            "is already served by a built-in resource",
        )],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_versions_by_priority_with_storage_apart() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}, "schema": {"openAPIV3Schema": {"type": "object"}}},
                ],
            },
        });
        let rt = from_crd(&crd).unwrap();
        assert_eq!(rt.versions, vec!["v1", "v1beta1"]);
        assert_eq!(rt.storage_version(), "v1");
        let mut vs = vec!["v1alpha1", "v1beta1", "v2", "foo", "v1", "v1beta2"];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(vs, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
        assert!(rt.status_subresource && rt.namespaced);
        assert_eq!(rt.singular, "widget");
        assert_eq!(rt.short_names, vec!["wd"]);
    }

    #[test]
    fn crd_with_wrong_name_or_no_storage_is_rejected() {
        let crd = json!({
            "metadata": {"name": "widgets"},
            "spec": {"group": "example.com", "scope": "Cluster",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {}}}]},
        });
        let errors = from_crd(&crd).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "spec.versions"]);
    }

    #[test]
    fn builtins_resolve_by_kind() {
        let r = Registry::with_builtins();
        let rt = r.by_kind("discovery.k8s.io/v1", "EndpointSlice").unwrap();
        assert_eq!(rt.plural, "endpointslices");
        assert!(r.lookup("", "v1", "services").unwrap().status_subresource);
        assert!(r.lookup("", "v2", "services").is_none());
    }
}
