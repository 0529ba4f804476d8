//! The standalone target's API server: the objects the runner applied, kept in memory
//! with the metadata an API server maintains, each written as one YAML file into the
//! folder `portico standalone` serves.
//!
//! ```text
//!   apply / patch / delete ──> objects: Key(kind, namespace, name) -> object (JSON)
//!      │  metadata: uid, creationTimestamp, resourceVersion (global counter),
//!      │            generation (1 on create, +1 when `spec` changes)
//!      │  CRD defaults on `spec` (defaults.rs); namespaced objects default to `default`
//!      ▼
//!   <dir>/<kind>.<namespace>.<name>.yaml   (written atomically: temp file + rename;
//!                                          deleting the object removes the file)
//!
//!   journal: the state of every object before the case touched it, so that the case
//!            can be rolled back (created -> deleted, changed or deleted -> restored)
//! ```
//!
//! Deleting a Namespace deletes what lives in it, as the namespace controller does.
//! Applying an object that did not change is a no-op, as `kubectl apply` is, so its
//! resourceVersion does not move and no file is rewritten.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::base64;
use super::defaults::Defaulter;

/// The namespace kubectl puts namespaced objects in when the manifest names none.
const DEFAULT_NAMESPACE: &str = "default";

/// Kinds that live outside namespaces (the ones conformance manifests can contain).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "GatewayClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Identifies an object: kind, namespace (`""` for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl Key {
    pub(crate) fn new(kind: &str, namespace: &str, name: &str) -> Self {
        let namespace = if CLUSTER_SCOPED.contains(&kind) {
            ""
        } else {
            namespace
        };
        Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The key of an object, its namespace defaulted as the API server would.
    pub(crate) fn of(object: &Value) -> Result<Self, String> {
        let kind = object["kind"].as_str().ok_or("object without `kind`")?;
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{kind} without `metadata.name`"))?;
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        Ok(Self::new(kind, namespace, name))
    }

    fn file_name(&self) -> String {
        let namespace = if self.namespace.is_empty() {
            "_cluster"
        } else {
            &self.namespace
        };
        format!(
            "{}.{namespace}.{}.yaml",
            self.kind.to_ascii_lowercase(),
            self.name
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(Key),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("patching {key}: {message}")]
    Patch { key: Key, message: String },
}

/// Whether a change is the case's own (journaled, rolled back after the case) or the
/// environment's (the kubelet stand-in's EndpointSlices, the suite set-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Case,
    System,
}

/// Unique temporary names within this process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub(crate) struct Cluster {
    dir: PathBuf,
    defaulter: Defaulter,
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    /// Per key the case touched: the object before its first change (`None`: absent), in
    /// the order first touched.
    journal: Vec<(Key, Option<Value>)>,
    /// Every change since the last [`Cluster::take_changes`], in order: what a target
    /// backed by a real API server must write there (the local-cluster target).
    changes: Vec<Change>,
}

/// A change to the objects, for a target that mirrors them into an API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Created or updated: the current object is the one to write.
    Applied(Key),
    /// Deleted; the `apiVersion` it had (the object is gone).
    Deleted(Key, String),
}

impl Cluster {
    pub(crate) fn new(dir: PathBuf, defaulter: Defaulter) -> Self {
        Self {
            dir,
            defaulter,
            objects: BTreeMap::new(),
            resource_version: 0,
            journal: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Every object of `kind`, in namespace then name order.
    pub(crate) fn list<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects.iter().filter(move |(k, _)| k.kind == kind)
    }

    /// Every object, for the sync check against what standalone loaded.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// The path of the file that holds `key`.
    pub(crate) fn path_of(&self, key: &Key) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// `metadata.generation` of an object.
    pub(crate) fn generation(&self, key: &Key) -> Option<i64> {
        self.get(key)?.pointer("/metadata/generation")?.as_i64()
    }

    /// Creates or replaces an object (`kubectl apply` with the whole manifest). Returns
    /// its key and whether anything changed.
    pub(crate) fn apply(
        &mut self,
        mut object: Value,
        owner: Owner,
    ) -> Result<(Key, bool), ClusterError> {
        let key = Key::of(&object).map_err(ClusterError::Invalid)?;
        {
            let meta = object
                .as_object_mut()
                .ok_or_else(|| ClusterError::Invalid(format!("{key}: not a mapping")))?
                .entry("metadata")
                .or_insert_with(|| json!({}));
            let Some(meta) = meta.as_object_mut() else {
                return Err(ClusterError::Invalid(format!(
                    "{key}: metadata is not a mapping"
                )));
            };
            if key.namespace.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), json!(key.namespace));
            }
            // Fields only the API server sets; a manifest's values are ignored.
            for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
                meta.remove(field);
            }
            if key.kind == "Namespace" {
                // "The Kubernetes control plane sets an immutable label
                // kubernetes.io/metadata.name on all namespaces."
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert(
                        portico_api::names::NAMESPACE_NAME_LABEL.into(),
                        json!(key.name),
                    );
                }
            }
        }
        if key.kind == "Secret" {
            merge_string_data(&mut object);
        }
        self.defaulter.apply(&mut object);

        let previous = self.objects.get(&key).cloned();
        let (uid, created, generation) = match &previous {
            Some(old) => {
                if without_server_fields(old) == without_server_fields(&object) {
                    return Ok((key, false));
                }
                let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
                let bumped = if old.get("spec") != object.get("spec") {
                    generation.map(|g| g + 1)
                } else {
                    generation
                };
                (
                    old.pointer("/metadata/uid").cloned(),
                    old.pointer("/metadata/creationTimestamp").cloned(),
                    bumped,
                )
            }
            None => (
                Some(json!(uuid::Uuid::new_v4().to_string())),
                Some(json!(now_rfc3339())),
                Some(1),
            ),
        };
        self.resource_version += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(uid) = uid {
                meta.insert("uid".into(), uid);
            }
            if let Some(created) = created {
                meta.insert("creationTimestamp".into(), created);
            }
            if let Some(generation) = generation {
                meta.insert("generation".into(), json!(generation));
            }
            meta.insert(
                "resourceVersion".into(),
                json!(self.resource_version.to_string()),
            );
        }
        self.write(&key, &object)?;
        self.record(owner, &key, previous);
        self.objects.insert(key.clone(), object);
        self.changes.push(Change::Applied(key.clone()));
        Ok((key, true))
    }

    /// Deletes an object; a Namespace takes its objects with it. Returns the keys
    /// deleted (empty when there was nothing to delete).
    pub(crate) fn delete(&mut self, key: &Key, owner: Owner) -> Result<Vec<Key>, ClusterError> {
        let mut doomed: Vec<Key> = Vec::new();
        if key.kind == "Namespace" {
            doomed.extend(
                self.objects
                    .keys()
                    .filter(|k| k.namespace == key.name)
                    .cloned(),
            );
        }
        if self.objects.contains_key(key) {
            doomed.push(key.clone());
        }
        for k in &doomed {
            let path = self.path_of(k);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ClusterError::Write { path, source }),
            }
            let previous = self.objects.remove(k);
            let api_version = previous
                .as_ref()
                .and_then(|o| o["apiVersion"].as_str())
                .unwrap_or_default()
                .to_owned();
            self.changes.push(Change::Deleted(k.clone(), api_version));
            self.record(owner, k, previous);
        }
        Ok(doomed)
    }

    /// Applies `set` and `append` field paths to a copy of the object, then stores it as
    /// an update.
    pub(crate) fn patch(
        &mut self,
        key: &Key,
        set: &[(String, Value)],
        append: &[(String, Value)],
    ) -> Result<(), ClusterError> {
        let mut object = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ClusterError::NotFound(key.clone()))?;
        let fail = |message: String| ClusterError::Patch {
            key: key.clone(),
            message,
        };
        for (path, value) in set {
            super::patch::set(&mut object, path, value.clone()).map_err(fail)?;
        }
        for (path, value) in append {
            super::patch::append(&mut object, path, value.clone()).map_err(fail)?;
        }
        self.apply(object, Owner::Case).map(|_| ())
    }

    /// The changes since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Takes the metadata a real API server gave an object (`uid`, `resourceVersion`,
    /// `generation`, `creationTimestamp`), so that checks compare `observedGeneration`
    /// with the server's generation. Not a change: nothing is journaled or pushed.
    pub(crate) fn adopt_server_metadata(&mut self, key: &Key, server: &Value) {
        let Some(meta) = self
            .objects
            .get_mut(key)
            .and_then(|o| o.get_mut("metadata"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            if let Some(value) = server.pointer(&format!("/metadata/{field}")) {
                meta.insert(field.into(), value.clone());
            }
        }
    }

    /// Starts recording the case's changes.
    pub(crate) fn begin_case(&mut self) {
        self.journal.clear();
    }

    /// Puts every object the case touched back as it was before the case. Returns the
    /// keys it changed.
    pub(crate) fn rollback(&mut self) -> Result<Vec<Key>, ClusterError> {
        let journal = std::mem::take(&mut self.journal);
        let mut changed = Vec::new();
        // Newest first: objects in a namespace go before the namespace is recreated or
        // deleted.
        for (key, before) in journal.into_iter().rev() {
            match before {
                None => changed.extend(self.delete(&key, Owner::System)?),
                Some(object) => {
                    if self.apply(object, Owner::System)?.1 {
                        changed.push(key);
                    }
                }
            }
        }
        Ok(changed)
    }

    fn record(&mut self, owner: Owner, key: &Key, previous: Option<Value>) {
        if owner == Owner::Case && !self.journal.iter().any(|(k, _)| k == key) {
            self.journal.push((key.clone(), previous));
        }
    }

    fn write(&self, key: &Key, object: &Value) -> Result<(), ClusterError> {
        let path = self.path_of(key);
        let fail = |source| ClusterError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_yaml_ng::to_string(object)
            .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
        write_atomically(&self.dir, &key.file_name(), text.as_bytes()).map_err(fail)
    }
}

/// "stringData [...] is merged into the data field on write, overwriting any existing
/// values" (Secret API reference): stored Secrets only have base64 `data`.
fn merge_string_data(secret: &mut Value) {
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (name, value) in strings {
            if let Some(text) = value.as_str() {
                data.insert(name, json!(base64::encode(text.as_bytes())));
            }
        }
    }
}

/// The object without what the API server maintains, to tell a real change from a
/// re-apply of the same manifest.
fn without_server_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            meta.remove(field);
        }
    }
    copy
}

/// Writes `dir/name` so that a watcher sees the old or the new file, never half of
/// one: a hidden temporary file (skipped by the folder loader), synced, renamed over
/// the target.
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, dir.join(name))) {
        Ok(()) => Ok(()),
        Err(error) => {
            // Best effort: the first error is the one worth reporting.
            let _ = std::fs::remove_file(&tmp);
            Err(error)
        }
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let Ok(secs) = i64::try_from(now) else {
        return "1970-01-01T00:00:00Z".to_owned();
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(backend: &str) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"rules": [{"backendRefs": [{"name": backend, "port": 8080}]}]}
        })
    }

    fn cluster() -> (tempfile::TempDir, Cluster) {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::new(dir.path().to_owned(), Defaulter::default());
        (dir, cluster)
    }

    #[test]
    fn metadata_like_an_api_server() {
        let (_dir, mut c) = cluster();
        let (key, changed) = c.apply(route("v1"), Owner::Case).unwrap();
        assert!(changed);
        let first = c.get(&key).unwrap().clone();
        assert_eq!(first["metadata"]["generation"], 1);
        assert_eq!(first["metadata"]["resourceVersion"], "1");
        assert!(first["metadata"]["uid"].as_str().unwrap().len() > 30);
        let created = first["metadata"]["creationTimestamp"].as_str().unwrap();
        assert!(created.len() == 20 && created.ends_with('Z'), "{created}");

        // The same manifest again: nothing changes.
        assert!(!c.apply(route("v1"), Owner::Case).unwrap().1);
        assert_eq!(c.get(&key).unwrap()["metadata"]["resourceVersion"], "1");

        // A label change is not a spec change: same generation, new resourceVersion.
        let mut relabelled = route("v1");
        relabelled["metadata"]["labels"]["a"] = json!("c");
        c.apply(relabelled, Owner::Case).unwrap();
        let second = c.get(&key).unwrap();
        assert_eq!(second["metadata"]["generation"], 1);
        assert_eq!(second["metadata"]["resourceVersion"], "2");
        assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);

        // A spec change bumps the generation.
        c.patch(
            &key,
            &[("spec.rules[0].backendRefs[0].name".into(), json!("v2"))],
            &[],
        )
        .unwrap();
        let third = c.get(&key).unwrap();
        assert_eq!(third["metadata"]["generation"], 2);
        assert_eq!(third["spec"]["rules"][0]["backendRefs"][0]["name"], "v2");
        let text = std::fs::read_to_string(c.path_of(&key)).unwrap();
        assert!(text.contains("name: v2"), "{text}");
    }

    #[test]
    fn namespaces_default_and_take_their_objects_with_them() {
        let (dir, mut c) = cluster();
        let mut unnamespaced = route("v1");
        unnamespaced["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        let (key, _) = c.apply(unnamespaced, Owner::Case).unwrap();
        assert_eq!(key.namespace, "default");
        let (ns, _) = c
            .apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
                Owner::Case,
            )
            .unwrap();
        assert_eq!(ns.namespace, "");
        assert_eq!(
            c.get(&ns).unwrap()["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "default"
        );
        let deleted = c.delete(&ns, Owner::Case).unwrap();
        assert_eq!(deleted.len(), 2);
        assert!(c.get(&key).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rollback_restores_the_state_before_the_case() {
        let (_dir, mut c) = cluster();
        let (base, _) = c.apply(route("v1"), Owner::System).unwrap();
        c.begin_case();
        let mut other = route("v1");
        other["metadata"]["name"] = json!("mine");
        let (mine, _) = c.apply(other, Owner::Case).unwrap();
        c.patch(
            &base,
            &[("spec.rules[0].backendRefs[0].name".into(), json!("v9"))],
            &[],
        )
        .unwrap();
        let changed = c.rollback().unwrap();
        assert_eq!(changed.len(), 2);
        assert!(c.get(&mine).is_none());
        assert_eq!(
            c.get(&base).unwrap()["spec"]["rules"][0]["backendRefs"][0]["name"],
            "v1"
        );
        assert!(c.rollback().unwrap().is_empty());
    }

    #[test]
    fn secrets_store_string_data_as_base64_data() {
        let (_dir, mut c) = cluster();
        let (key, _) = c
            .apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
                       "data": {"old": "eA=="}, "stringData": {"tls.crt": "foo"}}),
                Owner::Case,
            )
            .unwrap();
        let secret = c.get(&key).unwrap();
        assert_eq!(secret["data"]["tls.crt"], "Zm9v");
        assert_eq!(secret["data"]["old"], "eA==");
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
