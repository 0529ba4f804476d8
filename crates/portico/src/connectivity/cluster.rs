//! The test's Kubernetes calls: server-side apply of JSON manifests, reads of status,
//! the nodes, and deleting the namespace. Every wait is bounded by a deadline.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use portico_api::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams,
};
use portico_api::kube::config::{KubeConfigOptions, Kubeconfig};
use portico_api::kube::core::GroupVersionKind;
use portico_api::kube::{self, Client};
use serde_json::Value;
use tokio::time::Instant;

use super::ConnectivityError;
use super::plan::NodeInfo;

/// The field manager of everything the test writes.
const FIELD_MANAGER: &str = "portico-connectivity-test";

/// Pause between two polls.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// A client for `kubeconfig`, or the default one (KUBECONFIG, ~/.kube/config,
/// in-cluster).
pub(crate) async fn client(kubeconfig: Option<&Path>) -> Result<Client, ConnectivityError> {
    let Some(path) = kubeconfig else {
        return Client::try_default()
            .await
            .map_err(|e| ConnectivityError::Client(e.to_string()));
    };
    let fail = |reason: String| ConnectivityError::Kubeconfig {
        path: path.display().to_string(),
        reason,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    Client::try_from(config).map_err(|e| ConnectivityError::Client(e.to_string()))
}

/// The API of a manifest's kind, in its namespace.
fn api_for(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Gateway" => "gateways".to_owned(),
        "HTTPRoute" => "httproutes".to_owned(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// `kubectl apply --server-side --force-conflicts` of one manifest; the object as the
/// server has it.
pub(crate) async fn apply(client: &Client, manifest: &Value) -> Result<Value, String> {
    let text = |p: &str| manifest.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (kind, name) = (text("/kind"), text("/metadata/name"));
    let namespace = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let api = api_for(client, text("/apiVersion"), kind, namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = api
        .patch(name, &params, &Patch::Apply(manifest))
        .await
        .map_err(|e| format!("applying {kind} {name}: {e}"))?;
    serde_json::to_value(object).map_err(|e| format!("{kind} {name}: {e}"))
}

/// Applies until it succeeds or `deadline` (a namespace still terminating from an
/// earlier run refuses new objects for a while).
pub(crate) async fn apply_until(
    client: &Client,
    manifest: &Value,
    deadline: Instant,
) -> Result<Value, String> {
    loop {
        match apply(client, manifest).await {
            Ok(object) => return Ok(object),
            Err(error) if Instant::now() + POLL >= deadline => return Err(error),
            Err(error) => {
                tracing::debug!(%error, "apply failed, retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The object (`None`: not found).
pub(crate) async fn get(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, String> {
    let api = api_for(client, api_version, kind, Some(namespace));
    let object = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading {kind} {namespace}/{name}: {e}"))?;
    object
        .map(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
        .transpose()
}

/// Polls `name` until `ready` returns `Ok`, or until `deadline`; the
/// last reason it was not ready in the error.
pub(crate) async fn wait_for<T>(
    client: &Client,
    (api_version, kind): (&str, &str),
    namespace: &str,
    name: &str,
    deadline: Instant,
    ready: impl Fn(&Value) -> Result<T, String>,
) -> Result<T, String> {
    loop {
        let last = match get(client, api_version, kind, namespace, name).await {
            Ok(Some(object)) => match ready(&object) {
                Ok(value) => return Ok(value),
                Err(reason) => reason,
            },
            Ok(None) => "not found".to_owned(),
            Err(error) => error,
        };
        if Instant::now() + POLL >= deadline {
            return Err(format!("{kind} {name}: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The cluster's nodes, by name, each with its InternalIP (else first) address.
pub(crate) async fn nodes(client: &Client) -> Result<Vec<NodeInfo>, String> {
    let api = api_for(client, "v1", "Node", None);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    let mut nodes: Vec<NodeInfo> = list
        .items
        .into_iter()
        .map(|node| {
            let addresses = node
                .data
                .pointer("/status/addresses")
                .and_then(Value::as_array);
            let address_of = |wanted: Option<&str>| {
                addresses?.iter().find_map(|a| {
                    let kind = a.get("type").and_then(Value::as_str);
                    if wanted.is_some() && kind != wanted {
                        return None;
                    }
                    a.get("address")?.as_str()?.parse::<IpAddr>().ok()
                })
            };
            NodeInfo {
                name: node.metadata.name.unwrap_or_default(),
                address: address_of(Some("InternalIP")).or_else(|| address_of(None)),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Deletes the namespace (and so everything the test made).
pub(crate) async fn delete_namespace(client: &Client, namespace: &str) -> Result<(), String> {
    let api = api_for(client, "v1", "Namespace", None);
    match api.delete(namespace, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting namespace {namespace}: {e}")),
    }
}

/// Condition `kind` of an object's `status.conditions` is True.
pub(crate) fn condition_true(object: &Value, kind: &str) -> Result<(), String> {
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let found = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    match found {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => Ok(()),
        Some(c) => Err(format!(
            "{kind} is {} ({}: {})",
            c.get("status").and_then(Value::as_str).unwrap_or("?"),
            c.get("reason").and_then(Value::as_str).unwrap_or(""),
            c.get("message").and_then(Value::as_str).unwrap_or("")
        )),
        None => Err(format!("no {kind} condition yet")),
    }
}
