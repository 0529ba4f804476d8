//! What the runner reads back from the API server and the proxy, polled in the
//! background and published on a watch channel (as standalone publishes what it went
//! live with), so that checks read statuses without waiting on the network.
//!
//! ```text
//!   every POLL:  list every gateway.networking.k8s.io kind ──> statuses, in the shape
//!                  the standalone View reads ({gateways: {"ns/name": status}, ...})
//!                  and the objects themselves (generation + status, for settling)
//!                list Services ──> kube_proxy.rs: DNAT rules (LB address:port ->
//!                  proxy pod:targetPort)           (local-cluster target only)
//!                GET proxy /readyz ──> the config version it serves, and since when
//!                                                  (local-cluster target only)
//!                list Pods ──> name, labels, owner, readiness (kube target: the
//!                  cluster's kubelets run the backends)
//!   ──> watch::Sender<Arc<Snapshot>> (sent after every look, with when it was taken)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_api::k8s_openapi::api::core::v1::Pod;
use portico_api::kube::api::{Api, ApiResource, DynamicObject, ListParams};
use portico_api::kube::discovery::{Discovery, Scope};
use portico_api::kube::{Client, ResourceExt};
use portico_api::names;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::cluster::Key;
use super::super::observe::map_name;
use super::kube_proxy::KubeProxy;

/// How often the API server and the proxy are read.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Bound on one read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One look at the API server and the proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Statuses as the standalone View reads them.
    pub(crate) statuses: Value,
    /// Gateway API objects as the server holds them.
    pub(crate) objects: BTreeMap<Key, Value>,
    /// The config version the proxy serves (`None`: not ready yet).
    pub(crate) proxy_version: Option<String>,
    /// When the proxy started serving that version.
    pub(crate) proxy_since: Option<Instant>,
    /// The cluster's Pods (read only when [`Probes::pods`] asks).
    pub(crate) pods: Vec<PodState>,
    /// What went wrong reading (named in failure messages).
    pub(crate) problems: Vec<String>,
    /// When this look started (`None`: no look yet).
    pub(crate) taken: Option<Instant>,
}

/// A Pod as the runner needs it: who it is, what selects it, whether it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodState {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// The Deployment (or ReplicaSet, or the Pod itself) the pod belongs to.
    pub(crate) workload: String,
    /// The Ready condition is True, or the pod completed (Succeeded).
    pub(crate) ready: bool,
    /// Why not ready: phase and the first container's waiting or terminated reason.
    pub(crate) why: String,
}

/// What the poller reads besides the Gateway API objects.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    /// The proxy's admin address (its served version) and the DNAT rules kept in line
    /// with the Services: the local-cluster target's own proxy.
    pub(crate) proxy: Option<(SocketAddr, KubeProxy)>,
    /// Read the Pods (the kube target, whose backends the cluster runs).
    pub(crate) pods: bool,
}

/// The background reader.
#[derive(Debug)]
pub(crate) struct Poller {
    rx: watch::Receiver<Arc<Snapshot>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Poller {
    /// Starts reading: `client` for the objects, and what `probes` asks for.
    pub(crate) fn start(client: Client, kinds: Vec<(ApiResource, bool)>, probes: Probes) -> Self {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(poll_loop(client, kinds, probes, tx, stop.clone()));
        Self {
            rx,
            stop,
            task: Some(task),
        }
    }

    pub(crate) fn latest(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// Waits for a new snapshot, at most until `until`.
    pub(crate) async fn changed(&mut self, until: Instant) {
        drop(self.rx.borrow_and_update());
        let _ = tokio::time::timeout_at(until, self.rx.changed()).await;
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(READ_TIMEOUT, task).await.is_err()
        {
            tracing::warn!("the snapshot poller did not stop in time");
        }
    }
}

/// The Gateway API kinds the server serves (their preferred versions).
pub(crate) async fn gateway_kinds(client: &Client) -> Result<Vec<(ApiResource, bool)>, String> {
    let discovery = Discovery::new(client.clone())
        .filter(&[names::GATEWAY_API_GROUP])
        .run()
        .await
        .map_err(|e| format!("discovering the Gateway API kinds: {e}"))?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            kinds.push((resource, caps.scope == Scope::Namespaced));
        }
    }
    if kinds.is_empty() {
        return Err("the API server serves no Gateway API kinds (CRDs missing?)".to_owned());
    }
    Ok(kinds)
}

async fn poll_loop(
    client: Client,
    kinds: Vec<(ApiResource, bool)>,
    mut probes: Probes,
    tx: watch::Sender<Arc<Snapshot>>,
    stop: CancellationToken,
) {
    let mut last_version: Option<(String, Instant)> = None;
    loop {
        let mut snapshot = Snapshot {
            statuses: json!({}),
            taken: Some(Instant::now()),
            ..Snapshot::default()
        };
        for (resource, _) in &kinds {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
            let listed = tokio::time::timeout(READ_TIMEOUT, api.list(&ListParams::default())).await;
            let list = match listed {
                Ok(Ok(list)) => list,
                Ok(Err(e)) => {
                    snapshot
                        .problems
                        .push(format!("listing {}: {e}", resource.kind));
                    continue;
                }
                Err(_) => {
                    snapshot
                        .problems
                        .push(format!("listing {}: timed out", resource.kind));
                    continue;
                }
            };
            for item in list.items {
                let Ok(object) = serde_json::to_value(&item) else {
                    continue;
                };
                let name = item.metadata.name.clone().unwrap_or_default();
                let namespace = item.metadata.namespace.clone().unwrap_or_default();
                let key = Key::new(&resource.kind, &namespace, &name);
                if let Some(status) = object.get("status") {
                    let map_key = if namespace.is_empty() {
                        name.clone()
                    } else {
                        format!("{namespace}/{name}")
                    };
                    if let Some(map) = snapshot.statuses.as_object_mut() {
                        map.entry(map_name(&resource.kind))
                            .or_insert_with(|| json!({}))[map_key] = status.clone();
                    }
                }
                snapshot.objects.insert(key, object);
            }
        }
        if let Some((proxy_admin, kube_proxy)) = probes.proxy.as_mut() {
            let services: Api<portico_api::k8s::Service> = Api::all(client.clone());
            match tokio::time::timeout(READ_TIMEOUT, services.list(&ListParams::default())).await {
                Ok(Ok(list)) => {
                    if let Err(e) = kube_proxy.sync(&list.items) {
                        snapshot.problems.push(e);
                    }
                }
                Ok(Err(e)) => snapshot.problems.push(format!("listing Services: {e}")),
                Err(_) => snapshot
                    .problems
                    .push("listing Services: timed out".to_owned()),
            }
            let version = proxy_version(*proxy_admin).await;
            let since = match (&version, &last_version) {
                (Some(v), Some((old, since))) if v == old => Some(*since),
                (Some(v), _) => {
                    let now = Instant::now();
                    last_version = Some((v.clone(), now));
                    Some(now)
                }
                (None, _) => None,
            };
            snapshot.proxy_version = version;
            snapshot.proxy_since = since;
        }
        if probes.pods {
            let pods: Api<Pod> = Api::all(client.clone());
            match tokio::time::timeout(READ_TIMEOUT, pods.list(&ListParams::default())).await {
                Ok(Ok(list)) => snapshot.pods = list.items.iter().map(pod_state).collect(),
                Ok(Err(e)) => snapshot.problems.push(format!("listing Pods: {e}")),
                Err(_) => snapshot.problems.push("listing Pods: timed out".to_owned()),
            }
        }
        // Sent every time, unchanged or not: `taken` says how fresh it is, which
        // settling needs (the proxy served one version for a while *as of when*).
        tx.send_replace(Arc::new(snapshot));
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    if let Some((_, mut kube_proxy)) = probes.proxy.take() {
        kube_proxy.remove();
    }
}

/// What the runner reads of a Pod.
fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_owned());
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref());
    let reason = container
        .and_then(|s| {
            s.waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .or_else(|| s.terminated.as_ref().and_then(|t| t.reason.clone()))
        })
        .unwrap_or_default();
    let name = pod.name_any();
    // "<deployment>-<template hash>-<suffix>" for a Deployment's pods (CASES.md,
    // Backends): a ReplicaSet owner is "<deployment>-<hash>".
    let workload = match pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) || o.kind == "ReplicaSet")
    {
        Some(owner) if owner.kind == "ReplicaSet" => owner.name.rsplit_once('-').map_or_else(
            || owner.name.clone(),
            |(deployment, _)| deployment.to_owned(),
        ),
        Some(owner) => owner.name.clone(),
        None => name.clone(),
    };
    PodState {
        namespace: pod.namespace().unwrap_or_default(),
        labels: pod.labels().clone(),
        workload,
        ready: ready_condition || phase == "Succeeded",
        why: if reason.is_empty() {
            phase
        } else {
            format!("{phase}, {reason}")
        },
        name,
    }
}

/// `GET /readyz` of the proxy: "ready: serving VERSION".
async fn proxy_version(admin: SocketAddr) -> Option<String> {
    let answer =
        tokio::time::timeout(READ_TIMEOUT, portico_testkit::get(admin, None, "/readyz")).await;
    let Ok(Ok((status, _, body))) = answer else {
        return None;
    };
    if !status.is_success() {
        return None;
    }
    String::from_utf8_lossy(&body)
        .trim()
        .strip_prefix("ready: serving ")
        .map(str::to_owned)
}
