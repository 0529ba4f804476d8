//! The kubelet, the Deployment controller, the EndpointSlice controller and kube-proxy
//! of `portico dev-cluster`: unlike the conformance runner's kubelet (which plays the
//! runner's own objects), this one WATCHES THE API SERVER, so anything that writes
//! there (kubectl, `portico connectivity test`, a test's kube client) gets pods.
//!
//! ```text
//!   watch Pods, Deployments, Services ──(any event, or every TICK)──> reconcile:
//!   Deployment, image runnable ──> replicas × Pod <name>-<template hash>-<suffix>
//!                                  (ownerReference to the Deployment; template change
//!                                  = new hash: old pods deleted, new ones created);
//!                                  .status replicas/ready/available/updated written
//!   Pod, image runnable ──> a local process in the pod network namespace on a pod
//!                            IP of its own (portico-echo or portico, with the
//!                            container's command/args and env); a `hostNetwork`
//!                            pod runs on the host with the node's IP as podIP;
//!                            .status: phase, podIP, hostIP, Ready, containerStatuses
//!   Service with a selector ──> EndpointSlice <service>-dev (ready pods of ours
//!                               matching it, ports resolved against the pods)
//!   Service frontends ──> nft DNAT (kube_proxy.rs), on the host and inside the pod
//!                          namespace: clusterIP:port, <node IP>:nodePort and
//!                          load balancer ingress:port -> the slice's endpoints, or,
//!                          for a Service whose selector has no pods of ours (the
//!                          operator's Gateway Services), the proxy pod:targetPort
//! ```
//!
//! Runnable images (the contract other tools rely on):
//! - `*/echo:*` or `portico-echo[:tag]`: `portico-echo` (the binary beside `portico`).
//!   It listens on `<pod IP>:<port>` (`ECHO_LISTEN`, unless the container sets it),
//!   port = the container's `HTTP_PORT`, else its first `containerPort`, else 3000:
//!   every pod shares the one pod network namespace, so each binds its own address.
//!   `POD_NAME` and `NAMESPACE` default to the pod's.
//! - `*/cli:*` or `portico[:tag]`: `portico` with the container's args (a `command`
//!   whose first word is the binary is dropped, other words are kept as arguments).
//!   A client pod, e.g. `portico connectivity probe ...` in a bare Pod with
//!   `restartPolicy: Never`, reports through its termination message: when it exits,
//!   the Pod gets `phase` Succeeded (exit 0) or Failed and
//!   `status.containerStatuses[0].state.terminated` = `{exitCode, reason, message}`,
//!   `message` being the last lines of its stdout (at most [`MESSAGE_BYTES`]).
//! - Any other image (the chart's operator/proxy images, whose processes dev-cluster
//!   runs itself) is left alone: no process, no status.
//!
//! Env `valueFrom.fieldRef` is resolved for `metadata.name`, `metadata.namespace`,
//! `status.podIP`, `status.hostIP` and `spec.nodeName`; other sources are skipped.
//! Pods of `restartPolicy: Always` (Deployment pods) are restarted when they exit,
//! `restartCount` counting. Jobs are not run (the test API server does not serve them).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use portico_api::k8s::{EndpointSlice, IntOrString, Service};
use portico_api::k8s_openapi::api::apps::v1::Deployment;
use portico_api::k8s_openapi::api::core::v1::{Container, Pod};
use portico_api::kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use portico_api::kube::runtime::{WatchStreamExt, watcher};
use portico_api::kube::{Client, Resource, ResourceExt};
use portico_api::names::ENDPOINT_SLICE_SERVICE_LABEL;
use portico_testkit::{PodNetwork, Process};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::kube_proxy::{KubeProxy, Rule};
use super::processes::sibling;

/// Reconcile at least this often (process exits and readiness are polled).
const TICK: Duration = Duration::from_millis(500);

/// The node every pod runs on (dev-cluster creates its Node object).
pub(crate) const NODE_NAME: &str = "portico-dev-node";

/// The field manager of everything the kubelet writes.
const FIELD_MANAGER: &str = "portico-dev-kubelet";

/// The label of the EndpointSlices the kubelet manages.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "portico-dev-cluster";

/// The largest termination message (Kubernetes' limit per container).
pub(crate) const MESSAGE_BYTES: usize = 4096;

/// Lines of stdout a termination message keeps (then cut to [`MESSAGE_BYTES`]).
const MESSAGE_LINES: usize = 40;

/// echo-basic's default HTTP port.
const ECHO_DEFAULT_PORT: u16 = 3000;

/// The binary a container image runs here, if any.
pub(crate) fn binary_for(image: &str) -> Option<&'static str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split(['@', ':']).next().unwrap_or(last);
    let has_path = image.contains('/');
    match name {
        "portico-echo" => Some("portico-echo"),
        "echo" if has_path => Some("portico-echo"),
        "portico" if !has_path => Some("portico"),
        "cli" if has_path => Some("portico"),
        _ => None,
    }
}

/// The running kubelet; stops (pods killed, rules removed) on [`Kubelet::stop`].
#[derive(Debug)]
pub(crate) struct Kubelet {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Kubelet {
    /// Starts watching `client`'s API server; pods run in `network`, Services without
    /// pods of ours go to the proxy at `proxy_ip`; `table` names the nft tables.
    pub(crate) fn start(
        client: Client,
        network: Arc<PodNetwork>,
        proxy_ip: Ipv4Addr,
        table: String,
    ) -> Self {
        let stop = CancellationToken::new();
        let notify = Arc::new(Notify::new());
        let watches = vec![
            tokio::spawn(watch(Api::<Pod>::all(client.clone()), notify.clone())),
            tokio::spawn(watch(
                Api::<Deployment>::all(client.clone()),
                notify.clone(),
            )),
            tokio::spawn(watch(Api::<Service>::all(client.clone()), notify.clone())),
        ];
        let state = State {
            host_proxy: KubeProxy::new(table.clone(), proxy_ip),
            pod_proxy: KubeProxy::in_netns(table, proxy_ip, network.name()),
            client,
            network,
            proxy_ip,
            pods: BTreeMap::new(),
            slices: BTreeMap::new(),
            deployment_status: BTreeMap::new(),
        };
        let task = tokio::spawn(run(state, notify, watches, stop.clone()));
        Self { stop, task }
    }

    /// Stops every pod and removes the rules.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the kubelet task failed");
        }
    }
}

/// Notifies on every event of `api`'s watch.
async fn watch<K>(api: Api<K>, notify: Arc<Notify>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        if let Err(error) = event {
            tracing::debug!(%error, "kubelet watch");
        }
        notify.notify_one();
    }
}

async fn run(
    mut state: State,
    notify: Arc<Notify>,
    watches: Vec<JoinHandle<()>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = notify.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        if let Err(error) = state.reconcile().await {
            tracing::debug!(%error, "kubelet: will retry");
        }
    }
    for w in watches {
        w.abort();
    }
    for (_, pod) in std::mem::take(&mut state.pods) {
        pod.stop(&state.network).await;
    }
    state.host_proxy.remove();
    state.pod_proxy.remove();
}

/// One pod this kubelet runs.
#[derive(Debug)]
struct LocalPod {
    uid: String,
    /// Its own address in the pod network, or the node's for `hostNetwork` pods.
    ip: Ipv4Addr,
    /// `spec.hostNetwork`: the process runs in the host's network namespace.
    host_network: bool,
    container: Container,
    restart_always: bool,
    /// `None` once it has exited for good.
    process: Option<Process>,
    restarts: i32,
    started_at: String,
    /// (exit code, message, finished at) once it has exited for good.
    terminated: Option<(i32, String, String)>,
    /// The port checked for readiness (`None`: ready once started).
    probe_port: Option<u16>,
    ready: bool,
    /// The status last written.
    written: Option<Value>,
}

impl LocalPod {
    async fn stop(mut self, network: &PodNetwork) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
        if !self.host_network {
            network.release(self.ip);
        }
    }
}

struct State {
    client: Client,
    network: Arc<PodNetwork>,
    proxy_ip: Ipv4Addr,
    host_proxy: KubeProxy,
    pod_proxy: KubeProxy,
    /// (namespace, name) -> the pod's process.
    pods: BTreeMap<(String, String), LocalPod>,
    /// (namespace, slice name) -> the slice last written.
    slices: BTreeMap<(String, String), Value>,
    /// (namespace, name) -> the Deployment status last written.
    deployment_status: BTreeMap<(String, String), Value>,
}

impl State {
    async fn reconcile(&mut self) -> Result<(), String> {
        let all = ListParams::default();
        let deployments = Api::<Deployment>::all(self.client.clone())
            .list(&all)
            .await
            .map_err(|e| format!("listing Deployments: {e}"))?
            .items;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&all)
            .await
            .map_err(|e| format!("listing Pods: {e}"))?
            .items;
        for deployment in &deployments {
            if let Err(error) = self.deployment(deployment, &pods).await {
                tracing::warn!(%error, "kubelet: Deployment");
            }
        }
        self.run_pods(&pods).await;
        let services = Api::<Service>::all(self.client.clone())
            .list(&all)
            .await
            .map_err(|e| format!("listing Services: {e}"))?
            .items;
        self.services(&services, &pods).await;
        Ok(())
    }

    /// Makes a Deployment's pods, and writes its status.
    async fn deployment(&mut self, deployment: &Deployment, pods: &[Pod]) -> Result<(), String> {
        let spec = &deployment.spec;
        let template = &spec.template;
        let runnable = template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .and_then(binary_for)
            .is_some();
        if !runnable {
            return Ok(());
        }
        let namespace = deployment.namespace().unwrap_or_default();
        let name = deployment.name_any();
        let uid = deployment.uid().unwrap_or_default();
        let hash = template_hash(
            &serde_json::to_value(template).map_err(|e| format!("{namespace}/{name}: {e}"))?,
        );
        let api = Api::<Pod>::namespaced(self.client.clone(), &namespace);
        let owned: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.kind == "Deployment")
            })
            .collect();
        let mut current = Vec::new();
        for pod in owned {
            let same = pod.labels().get("pod-template-hash") == Some(&hash);
            if same && pod.metadata.deletion_timestamp.is_none() {
                current.push(pod);
            } else if !same {
                delete_pod(&api, &pod.name_any()).await;
            }
        }
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        current.sort_by_key(|p| p.name_any());
        for extra in current.iter().skip(replicas) {
            delete_pod(&api, &extra.name_any()).await;
        }
        for _ in current.len()..replicas {
            let mut labels: BTreeMap<String, String> = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert("pod-template-hash".to_owned(), hash.clone());
            let mut pod_spec = serde_json::to_value(&template.spec).unwrap_or(Value::Null);
            pod_spec["nodeName"] = json!(NODE_NAME);
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{name}-{hash}-{}", suffix()),
                    "namespace": namespace,
                    "labels": labels,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                        "uid": uid, "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": pod_spec,
            });
            let pod: Pod = serde_json::from_value(pod).map_err(|e| format!("{name}: {e}"))?;
            api.create(&PostParams::default(), &pod)
                .await
                .map_err(|e| format!("creating a pod of {namespace}/{name}: {e}"))?;
        }
        let mine: Vec<&LocalPod> = current
            .iter()
            .take(replicas)
            .filter_map(|p| self.pods.get(&(namespace.clone(), p.name_any())))
            .collect();
        let ready = mine.iter().filter(|p| p.ready).count();
        let count = current.len().min(replicas);
        let available = if ready >= replicas { "True" } else { "False" };
        let status = json!({
            "observedGeneration": deployment.metadata.generation,
            "replicas": count,
            "updatedReplicas": count,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas.saturating_sub(ready),
            "conditions": [{"type": "Available", "status": available,
                            "reason": "MinimumReplicasAvailable"}],
        });
        let key = (namespace.clone(), name.clone());
        if self.deployment_status.get(&key) != Some(&status) {
            Api::<Deployment>::namespaced(self.client.clone(), &namespace)
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .map_err(|e| format!("status of {namespace}/{name}: {e}"))?;
            self.deployment_status.insert(key, status);
        }
        Ok(())
    }

    /// Starts, restarts and stops processes to match `pods`; writes their status.
    async fn run_pods(&mut self, pods: &[Pod]) {
        let wanted: BTreeMap<(String, String), &Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.as_deref())
                    .and_then(binary_for)
                    .is_some()
            })
            .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
            .collect();
        let gone: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(key, local)| {
                wanted
                    .get(*key)
                    .is_none_or(|p| p.uid().as_deref() != Some(local.uid.as_str()))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(local) = self.pods.remove(&key) {
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), "stopping pod");
                local.stop(&self.network).await;
            }
        }
        for (key, pod) in wanted {
            if !self.pods.contains_key(&key) {
                match self.start_pod(pod) {
                    Ok(local) => {
                        tracing::info!(pod = %format!("{}/{}", key.0, key.1), ip = %local.ip, "pod started");
                        self.pods.insert(key.clone(), local);
                    }
                    Err(error) => {
                        tracing::warn!(pod = %format!("{}/{}", key.0, key.1), %error, "cannot start pod");
                        continue;
                    }
                }
            }
            let network = self.network.clone();
            let Some(local) = self.pods.get_mut(&key) else {
                continue;
            };
            check(local, pod, &network).await;
            let status = pod_status(local, network.host_ip());
            if local.written.as_ref() != Some(&status) {
                let api = Api::<Pod>::namespaced(self.client.clone(), &key.0);
                match api
                    .patch_status(
                        &key.1,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                {
                    Ok(_) => local.written = Some(status),
                    Err(error) => tracing::debug!(%error, "pod status"),
                }
            }
        }
    }

    fn start_pod(&self, pod: &Pod) -> Result<LocalPod, String> {
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .ok_or("no container")?;
        let restart_always = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .is_none_or(|p| p == "Always");
        let host_network = is_host_network(pod);
        let ip = if host_network {
            self.network.host_ip()
        } else {
            self.network.allocate().map_err(|e| e.to_string())?
        };
        let mut local = LocalPod {
            uid: pod.uid().unwrap_or_default(),
            ip,
            host_network,
            container,
            restart_always,
            process: None,
            restarts: 0,
            started_at: now(),
            terminated: None,
            probe_port: None,
            ready: false,
            written: None,
        };
        match spawn(
            &self.network,
            pod,
            &local.container,
            ip,
            self.network.host_ip(),
        ) {
            Ok((process, probe_port)) => {
                local.process = Some(process);
                local.probe_port = probe_port;
                Ok(local)
            }
            Err(e) => {
                if !host_network {
                    self.network.release(ip);
                }
                Err(e)
            }
        }
    }

    /// EndpointSlices for Services with selectors, then the DNAT rules.
    async fn services(&mut self, services: &[Service], pods: &[Pod]) {
        let mut rules = BTreeSet::new();
        let mut wanted_slices = BTreeSet::new();
        for service in services {
            let namespace = service.namespace().unwrap_or_default();
            let name = service.name_any();
            let Some(spec) = &service.spec else { continue };
            let selector = spec.selector.clone().unwrap_or_default();
            // port index -> backends
            let mut backends: Vec<Vec<SocketAddrV4>> =
                vec![Vec::new(); spec.ports.as_ref().map_or(0, Vec::len)];
            let mut endpoints = Vec::new();
            let mut slice_ports: Vec<Value> = Vec::new();
            if !selector.is_empty() {
                for pod in pods.iter().filter(|p| {
                    p.namespace().as_deref() == Some(namespace.as_str())
                        && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
                }) {
                    let Some(local) = self.pods.get(&(namespace.clone(), pod.name_any())) else {
                        continue;
                    };
                    if local.uid != pod.uid().unwrap_or_default() || local.process.is_none() {
                        continue;
                    }
                    for (i, port) in spec.ports.iter().flatten().enumerate() {
                        if let Some(target) = resolve_port(port, &local.container)
                            && let Some(list) = backends.get_mut(i)
                            && local.ready
                        {
                            list.push(SocketAddrV4::new(local.ip, target));
                        }
                    }
                    endpoints.push(json!({
                        "addresses": [local.ip.to_string()],
                        "conditions": {"ready": local.ready, "serving": local.ready, "terminating": false},
                        "nodeName": NODE_NAME,
                        "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod.name_any(), "uid": local.uid},
                    }));
                    if slice_ports.is_empty() {
                        slice_ports = spec
                            .ports
                            .iter()
                            .flatten()
                            .filter_map(|p| {
                                let number = resolve_port(p, &local.container)?;
                                Some(json!({"name": p.name.clone().unwrap_or_default(),
                                            "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                                            "port": number}))
                            })
                            .collect();
                    }
                }
                let slice_name = format!("{name}-dev");
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {
                        "name": slice_name, "namespace": namespace,
                        "labels": {ENDPOINT_SLICE_SERVICE_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": slice_ports,
                });
                let key = (namespace.clone(), slice_name.clone());
                wanted_slices.insert(key.clone());
                if self.slices.get(&key) != Some(&slice) {
                    let api = Api::<EndpointSlice>::namespaced(self.client.clone(), &namespace);
                    match api
                        .patch(
                            &slice_name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&slice),
                        )
                        .await
                    {
                        Ok(_) => {
                            self.slices.insert(key, slice);
                        }
                        Err(error) => tracing::debug!(%error, "writing an EndpointSlice"),
                    }
                }
            }
            rules.extend(service_rules(
                spec,
                service,
                &backends,
                self.proxy_ip,
                self.network.host_ip(),
            ));
        }
        let stale: Vec<(String, String)> = self
            .slices
            .keys()
            .filter(|k| !wanted_slices.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            let api = Api::<EndpointSlice>::namespaced(self.client.clone(), &key.0);
            if let Err(error) = api.delete(&key.1, &DeleteParams::default()).await {
                tracing::debug!(%error, "deleting an EndpointSlice");
            }
            self.slices.remove(&key);
        }
        for proxy in [&mut self.host_proxy, &mut self.pod_proxy] {
            if let Err(error) = proxy.write(rules.clone()) {
                tracing::warn!(%error, "kube-proxy rules");
            }
        }
    }
}

/// The DNAT rules of one Service: each port's frontends (cluster IP, node port on
/// `node_ip`, load balancer addresses) to its backends; a port without pod backends
/// goes to the proxy on its numeric targetPort when the Service is a load balancer.
fn service_rules(
    spec: &portico_api::k8s_openapi::api::core::v1::ServiceSpec,
    service: &Service,
    backends: &[Vec<SocketAddrV4>],
    proxy_ip: Ipv4Addr,
    node_ip: Ipv4Addr,
) -> Vec<Rule> {
    let mut out = Vec::new();
    let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let ingress: Vec<Ipv4Addr> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => "tcp",
            Some("UDP") => "udp",
            Some(_) => continue,
        };
        let mut targets = backends.get(i).cloned().unwrap_or_default();
        if targets.is_empty()
            && load_balancer
            && let Some(IntOrString::Int(n)) = &port.target_port
            && let Ok(n) = u16::try_from(*n)
        {
            targets.push(SocketAddrV4::new(proxy_ip, n));
        }
        if targets.is_empty() {
            continue;
        }
        targets.sort();
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let mut frontends: Vec<(Ipv4Addr, u16)> = Vec::new();
        if let Some(ip) = cluster_ip {
            frontends.push((ip, number));
        }
        if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
            frontends.push((node_ip, node_port));
        }
        frontends.extend(ingress.iter().map(|ip| (*ip, number)));
        for (address, port) in frontends {
            out.push(Rule {
                address,
                protocol,
                port,
                backends: targets.clone(),
            });
        }
    }
    out
}

/// The container port a Service port reaches: targetPort's number, or the container
/// port of that name; no targetPort = the Service port.
fn resolve_port(
    port: &portico_api::k8s_openapi::api::core::v1::ServicePort,
    container: &Container,
) -> Option<u16> {
    let number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    u16::try_from(number).ok()
}

/// Starts the process of a pod's container; returns it and the port to probe.
fn spawn(
    network: &PodNetwork,
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
    host_ip: Ipv4Addr,
) -> Result<(Process, Option<u16>), String> {
    let image = container.image.as_deref().unwrap_or_default();
    let binary = binary_for(image).ok_or_else(|| format!("image {image} does not run here"))?;
    let path = sibling(binary)?;
    let mut args: Vec<String> = Vec::new();
    if let Some(command) = &container.command {
        let mut words = command.iter();
        if let Some(first) = words.next()
            && !first.ends_with(binary)
        {
            args.push(first.clone());
        }
        args.extend(words.cloned());
    }
    args.extend(container.args.iter().flatten().cloned());
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(from)) => {
                from.field_ref
                    .as_ref()
                    .and_then(|f| match f.field_path.as_str() {
                        "metadata.name" => Some(name.clone()),
                        "metadata.namespace" => Some(namespace.clone()),
                        "status.podIP" => Some(ip.to_string()),
                        "status.hostIP" => Some(host_ip.to_string()),
                        "spec.nodeName" => Some(NODE_NAME.to_owned()),
                        _ => None,
                    })
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    let probe = if binary == "portico-echo" {
        let port = env
            .get("HTTP_PORT")
            .and_then(|p| p.parse().ok())
            .or_else(|| {
                container
                    .ports
                    .iter()
                    .flatten()
                    .find_map(|p| u16::try_from(p.container_port).ok())
            })
            .unwrap_or(ECHO_DEFAULT_PORT);
        env.entry("ECHO_LISTEN".to_owned())
            .or_insert_with(|| SocketAddr::from((ip, port)).to_string());
        env.entry("POD_NAME".to_owned()).or_insert(name);
        env.entry("NAMESPACE".to_owned()).or_insert(namespace);
        env.get("ECHO_LISTEN")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port())
    } else {
        container
            .ports
            .iter()
            .flatten()
            .find_map(|p| u16::try_from(p.container_port).ok())
    };
    let mut command = if is_host_network(pod) {
        tokio::process::Command::new(&path)
    } else {
        network.command(&path)
    };
    command.args(&args).envs(&env).env("NO_COLOR", "1");
    let process =
        Process::spawn_command(command).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((process, probe))
}

/// `spec.hostNetwork`: the pod runs on the host (the node) instead of the pod network.
fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Notices exits (restarting or finishing the pod) and readiness.
async fn check(local: &mut LocalPod, pod: &Pod, network: &PodNetwork) {
    let Some(process) = local.process.as_mut() else {
        return;
    };
    let Ok(status) = process.wait_exit(Duration::ZERO).await else {
        if !local.ready {
            local.ready = match local.probe_port {
                None => true,
                Some(port) => tokio::time::timeout(
                    Duration::from_millis(300),
                    tokio::net::TcpStream::connect((local.ip, port)),
                )
                .await
                .is_ok_and(|c| c.is_ok()),
            };
        }
        return;
    };
    let code = status.code().unwrap_or(128 + 9);
    let message = termination_message(&process.stdout_lines());
    local.ready = false;
    if local.restart_always {
        tracing::info!(pod = %pod.name_any(), code, "pod exited: restarting");
        local.restarts += 1;
        match spawn(network, pod, &local.container, local.ip, network.host_ip()) {
            Ok((process, _)) => {
                local.process = Some(process);
                local.started_at = now();
            }
            Err(error) => tracing::warn!(%error, "restarting a pod"),
        }
    } else {
        tracing::info!(pod = %pod.name_any(), code, "pod finished");
        local.process = None;
        local.terminated = Some((code, message, now()));
    }
}

/// The last lines of `stdout`, at most [`MESSAGE_BYTES`].
pub(crate) fn termination_message(stdout: &[String]) -> String {
    let start = stdout.len().saturating_sub(MESSAGE_LINES);
    let mut text = stdout[start..].join("\n");
    while text.len() > MESSAGE_BYTES {
        match text.find('\n') {
            Some(i) => {
                text.drain(..=i);
            }
            None => {
                let cut = text.len() - MESSAGE_BYTES;
                let cut = (cut..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                text.drain(..cut);
            }
        }
    }
    text
}

/// The `.status` of a pod we run.
fn pod_status(local: &LocalPod, host_ip: Ipv4Addr) -> Value {
    let ready = if local.ready { "True" } else { "False" };
    let (phase, state) = match &local.terminated {
        Some((code, message, finished)) => (
            if *code == 0 { "Succeeded" } else { "Failed" },
            json!({"terminated": {
                "exitCode": code,
                "reason": if *code == 0 { "Completed" } else { "Error" },
                "message": message,
                "startedAt": local.started_at,
                "finishedAt": finished,
            }}),
        ),
        None => (
            "Running",
            json!({"running": {"startedAt": local.started_at}}),
        ),
    };
    json!({
        "phase": phase,
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": local.ip.to_string(),
        "podIPs": [{"ip": local.ip.to_string()}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ],
        "containerStatuses": [{
            "name": local.container.name,
            "image": local.container.image,
            "imageID": "",
            "ready": local.ready,
            "started": local.terminated.is_none(),
            "restartCount": local.restarts,
            "state": state,
        }],
    })
}

async fn delete_pod(api: &Api<Pod>, name: &str) {
    if let Err(error) = api.delete(name, &DeleteParams::default()).await {
        tracing::debug!(%error, pod = name, "deleting a pod");
    }
}

/// A short stable hash of a pod template (the `pod-template-hash` label).
fn template_hash(template: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut hasher);
    let n = hasher.finish();
    encode(n, 10)
}

/// A pod name suffix (5 characters of Kubernetes' alphabet).
fn suffix() -> String {
    encode(fastrand::u64(..), 5)
}

fn encode(mut n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        let i = usize::try_from(n % ALPHABET.len() as u64).unwrap_or(0);
        out.push(char::from(ALPHABET[i]));
        n /= ALPHABET.len() as u64;
    }
    out
}

/// Now, as an RFC 3339 timestamp.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn images_that_run_here() {
        assert_eq!(
            binary_for("ghcr.io/portico/echo:0.1.0"),
            Some("portico-echo")
        );
        assert_eq!(binary_for("portico-echo"), Some("portico-echo"));
        assert_eq!(binary_for("portico/cli:0.1.0"), Some("portico"));
        assert_eq!(binary_for("portico:dev"), Some("portico"));
        assert_eq!(binary_for("portico/operator:0.1.0"), None);
        assert_eq!(
            binary_for("gcr.io/k8s-staging-gateway-api/echo-basic:v1"),
            None
        );
        assert_eq!(binary_for("echo"), None);
    }

    #[test]
    fn termination_messages_keep_the_last_lines_within_the_limit() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let message = termination_message(&lines);
        assert!(message.ends_with("line 99"));
        assert!(message.starts_with(&format!("line {}", 100 - MESSAGE_LINES)));
        let long = vec!["x".repeat(10_000), "last".to_owned()];
        let message = termination_message(&long);
        assert_eq!(message, "last");
        let one = vec!["é".repeat(5_000)];
        assert!(termination_message(&one).len() <= MESSAGE_BYTES);
    }

    #[test]
    fn named_target_ports_resolve_against_the_container() {
        let container: Container = serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 3000}]
        }))
        .unwrap();
        let named: portico_api::k8s_openapi::api::core::v1::ServicePort =
            serde_json::from_value(json!({"port": 80, "targetPort": "http"})).unwrap();
        let plain: portico_api::k8s_openapi::api::core::v1::ServicePort =
            serde_json::from_value(json!({"port": 8080})).unwrap();
        assert_eq!(resolve_port(&named, &container), Some(3000));
        assert_eq!(resolve_port(&plain, &container), Some(8080));
    }
}
