//! Writing the runner's objects into a Kubernetes API server (the test one or a real
//! one), as `kubectl apply --server-side --force-conflicts` and `kubectl delete` would.
//!
//! ```text
//!   Cluster::take_changes() ──> Applied(key) ──> SSA patch (field manager
//!       │                          │             portico-conformance, force) ──> server
//!       │                          └── the server's uid / resourceVersion / generation
//!       │                              go back into the Cluster (checks compare
//!       │                              observedGeneration with the server's generation)
//!       └─────────────────────> Deleted(key) ──> DELETE (404: already gone)
//!   kind -> resource: discovery per (apiVersion, kind), cached; a kind the server does
//!   not serve (RBAC on the test server) is skipped once with a note in the log
//! ```
//!
//! Namespaces are written before the objects that live in them and deleted after them.
//! A write that fails (a namespace still terminating, a CRD not yet established) is
//! retried until the deadline: a real API server is eventually consistent about both.

use std::collections::BTreeMap;
use std::time::Duration;

use portico_api::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams,
};
use portico_api::kube::core::GroupVersionKind;
use portico_api::kube::discovery::{self, Scope};
use portico_api::kube::{self, Client};
use serde_json::Value;
use tokio::time::Instant;

use super::super::cluster::{Change, Cluster, Key};

/// The field manager of everything the runner writes.
pub(crate) const FIELD_MANAGER: &str = "portico-conformance";

/// Pause between two rounds of writes that failed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Fields only the API server sets.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// A resource the server serves, and whether it is namespaced.
#[derive(Clone)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

/// Writes objects into an API server.
pub(crate) struct Writer {
    client: Client,
    /// (apiVersion, kind) -> what serves it (`None`: nothing, skipped).
    served: BTreeMap<(String, String), Option<Served>>,
    /// The image that replaces the upstream echo servers in the pods written (the kube
    /// target: the cluster runs Portico's echo, echo-basic compatible).
    echo_image: Option<String>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("kinds", &self.served.len())
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            served: BTreeMap::new(),
            echo_image: None,
        }
    }

    /// Pods and Deployments are written with `image` instead of the upstream echo
    /// servers' images.
    pub(crate) fn with_echo_image(mut self, image: String) -> Self {
        self.echo_image = Some(image);
        self
    }

    /// What serves `kind` of `api_version`, looked up once.
    async fn served(&mut self, api_version: &str, kind: &str) -> Option<Served> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(known) = self.served.get(&key) {
            return known.clone();
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => Some(Served {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            }),
            Err(error) => {
                tracing::info!(%api_version, %kind, %error, "the API server does not serve this kind: its objects are skipped");
                None
            }
        };
        // A CRD may be registered later: only a known kind's answer is kept.
        if found.is_some() {
            self.served.insert(key, found.clone());
        }
        found
    }

    fn api(&self, served: &Served, namespace: &str) -> Api<DynamicObject> {
        if served.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &served.resource)
        } else {
            Api::all_with(self.client.clone(), &served.resource)
        }
    }

    /// Server-side applies one object; returns what the server stored (`None`: the kind
    /// is not served).
    pub(crate) async fn apply(&mut self, object: &Value) -> Result<Option<Value>, String> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let Some(served) = self.served(api_version, kind).await else {
            return Ok(None);
        };
        let key = Key::of(object)?;
        let mut body = object.clone();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_FIELDS {
                meta.remove(*field);
            }
        }
        if let Some(map) = body.as_object_mut() {
            // Status belongs to the controllers; the main resource ignores it anyway.
            map.remove("status");
        }
        if let Some(image) = &self.echo_image {
            swap_echo_images(&mut body, image);
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let stored = self
            .api(&served, &key.namespace)
            .patch(&key.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| format!("applying {key}: {e}"))?;
        serde_json::to_value(stored)
            .map(Some)
            .map_err(|e| format!("{key}: {e}"))
    }

    /// [`Writer::apply`], retried until it succeeds or `deadline` passes (a CRD not yet
    /// established, a namespace still being created).
    pub(crate) async fn apply_until(
        &mut self,
        object: &Value,
        deadline: Instant,
    ) -> Result<Option<Value>, String> {
        loop {
            match self.apply(object).await {
                Ok(stored) => return Ok(stored),
                Err(e) if Instant::now() + RETRY_PAUSE >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "retrying a write");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Deletes one object; gone already is fine.
    pub(crate) async fn delete(&mut self, key: &Key, api_version: &str) -> Result<(), String> {
        let Some(served) = self.served(api_version, &key.kind).await else {
            return Ok(());
        };
        match self
            .api(&served, &key.namespace)
            .delete(&key.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(format!("deleting {key}: {e}")),
        }
    }

    /// Creates an object unless it exists (set-up objects the runner owns).
    pub(crate) async fn create_if_missing(&mut self, object: &Value) -> Result<(), String> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let Some(served) = self.served(api_version, kind).await else {
            return Err(format!(
                "the API server does not serve {api_version} {kind}"
            ));
        };
        let key = Key::of(object)?;
        let typed: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| format!("{key}: {e}"))?;
        match self
            .api(&served, &key.namespace)
            .create(&PostParams::default(), &typed)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(format!("creating {key}: {e}")),
        }
    }

    /// Writes the cluster's changes: namespaces first, their deletion last; failures
    /// retried until `deadline`.
    pub(crate) async fn push(
        &mut self,
        cluster: &mut Cluster,
        changes: Vec<Change>,
        deadline: Instant,
    ) -> Result<(), String> {
        // The last change of a key is what counts.
        let mut last: Vec<Change> = Vec::new();
        for change in changes.into_iter().rev() {
            let key = match &change {
                Change::Applied(k) | Change::Deleted(k, _) => k,
            };
            if !last
                .iter()
                .any(|c| matches!(c, Change::Applied(k) | Change::Deleted(k, _) if k == key))
            {
                last.push(change);
            }
        }
        last.reverse();
        let is_namespace = |c: &Change| matches!(c, Change::Applied(k) | Change::Deleted(k, _) if k.kind == "Namespace");
        let mut pending: Vec<Change> = last
            .iter()
            .filter(|c| is_namespace(c) && matches!(c, Change::Applied(_)))
            .chain(last.iter().filter(|c| !is_namespace(c)))
            .chain(
                last.iter()
                    .filter(|c| is_namespace(c) && matches!(c, Change::Deleted(..))),
            )
            .cloned()
            .collect();
        loop {
            let mut failed = Vec::new();
            let mut errors = Vec::new();
            for change in pending {
                let result = match &change {
                    Change::Applied(key) => match cluster.get(key).cloned() {
                        // Changed and then deleted within the batch: nothing to write.
                        None => Ok(()),
                        Some(object) => self.apply(&object).await.map(|stored| {
                            if let Some(stored) = stored {
                                cluster.adopt_server_metadata(key, &stored);
                            }
                        }),
                    },
                    Change::Deleted(key, api_version) => self.delete(key, api_version).await,
                };
                if let Err(e) = result {
                    errors.push(e);
                    failed.push(change);
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(errors.join("; "));
            }
            tracing::debug!(errors = %errors.join("; "), "writes to the API server failed; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
            pending = failed;
        }
    }
}

/// Replaces the upstream echo images of a Pod's or a workload's containers by `image`.
fn swap_echo_images(object: &mut Value, image: &str) {
    let pointer = match object["kind"].as_str() {
        Some("Pod") => "/spec/containers",
        Some("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            "/spec/template/spec/containers"
        }
        _ => return,
    };
    let Some(containers) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
        return;
    };
    for container in containers {
        if container["image"]
            .as_str()
            .is_some_and(super::super::kubelet::is_echo_image)
        {
            container["image"] = Value::String(image.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn echo_images_are_swapped_in_workloads_and_pods_only() {
        let mut deployment = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "registry.k8s.io/gateway-api/echo-basic:v1.5.1"},
            {"name": "b", "image": "coredns/coredns:1.12"},
        ]}}}});
        swap_echo_images(&mut deployment, "portico/echo:t");
        let containers = &deployment["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "portico/echo:t");
        assert_eq!(containers[1]["image"], "coredns/coredns:1.12");

        let mut pod = json!({"kind": "Pod", "spec": {"containers": [
            {"image": "gcr.io/k8s-staging-gateway-api/echo-advanced:v2"}]}});
        swap_echo_images(&mut pod, "portico/echo:t");
        assert_eq!(pod["spec"]["containers"][0]["image"], "portico/echo:t");

        let mut config_map = json!({"kind": "ConfigMap", "spec": {"containers": [
            {"image": "registry.k8s.io/gateway-api/echo-basic:v1"}]}});
        let before = config_map.clone();
        swap_echo_images(&mut config_map, "portico/echo:t");
        assert_eq!(config_map, before);
    }
}
