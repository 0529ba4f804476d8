//! The kubelet and the EndpointSlice controller of the standalone target.
//!
//! ```text
//!   Deployment (echo image) ──> replicas × pod  <deployment>-<template hash>-<suffix>
//!   Pod (echo image)        ──> 1 pod, its own name         │ one portico-echo each
//!                                                            │ (backend.rs)
//!   Service with a selector ──> per matching ready pod: EndpointSlice
//!                                 <service>-<pod>, label kubernetes.io/service-name,
//!                                 endpoint 127.0.0.1 -> targetRef the pod,
//!                                 ports: the Service's port names, numbers resolved
//!                                 against the pod (targetPort number or container
//!                                 port name) to the process's port
//! ```
//!
//! One slice per pod because every stand-in pod listens on a port of its own: a real
//! slice lists endpoints that share port numbers, ours cannot. Pods of other images
//! (coredns in the base manifests) do not run here; their Services get no endpoints, as
//! in a cluster where they never become ready. Services of type ExternalName and
//! Services without a selector get no managed slices: a cluster leaves those alone too
//! (manual slices in manifests are the user's).
//!
//! A template change rolls the Deployment (new hash, new pods, old ones stopped); a
//! pod whose process died is replaced, as `restartPolicy: Always` would.
//!
//! The container's environment picks what the echo plays, as it does for echo-basic:
//! `TCP_ECHO_SERVER` the TCP line protocol on `TCP_PORT` (3000) and, with
//! `TLS_SERVER_CERT`/`TLS_SERVER_PRIV_KEY` files mounted from a Secret volume, over TLS
//! on `TLS_PORT` (8443) with that certificate (a pod whose Secret does not exist yet
//! stays pending, as in a cluster); `UDP_ECHO_SERVER` the UDP echo on `UDP_PORT`
//! (8080). The coredns Deployment of the base manifests is played by the UDP echo on
//! port 53: it stands in for a DNS server by answering every datagram (the UDPRoute
//! cases check the answering pod and the echoed payload, not DNS).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use portico_api::names::ENDPOINT_SLICE_SERVICE_LABEL;
use portico_echo::Identity;
use serde_json::{Value, json};

use super::backend::{Backend, EchoMode, EchoRole, Placement};
use super::cluster::{Cluster, Key, Owner};
use super::local_cluster::snapshot::Snapshot;

/// Images the stand-in can play: the upstream conformance echo servers.
const ECHO_IMAGES: &[&str] = &["gateway-api/echo-basic", "gateway-api/echo-advanced"];

/// Whether a container image is one of the upstream echo servers (what the stand-in
/// plays, and what the kube target swaps for Portico's echo image).
pub(crate) fn is_echo_image(image: &str) -> bool {
    ECHO_IMAGES.iter().any(|e| image.contains(e))
}

/// The ports echo-basic serves cleartext HTTP on (its `HTTP_PORT` and `H2C_PORT`
/// defaults). Our echo serves HTTP/1.1 and h2c on one port, so both map to it. Its
/// HTTPS port (8443) is served only by pods given a certificate (see [`EchoRole::Https`]):
/// sending cleartext where a pod expects TLS would pass where a cluster fails.
const ECHO_HTTP_PORTS: &[(&str, i64)] = &[("HTTP_PORT", 3000), ("H2C_PORT", 3001)];

/// echo-basic's `HTTPS_PORT` default: where it serves HTTPS when given a certificate.
const ECHO_HTTPS_PORT: i64 = 8443;

/// The DNS server image of the base manifests (the UDPRoute backends), played by the
/// UDP echo on port 53.
const DNS_IMAGE: &str = "coredns/coredns";
const DNS_PORT: i64 = 53;

/// The label that marks slices this controller owns.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "portico-conformance";

/// `kubernetes/pkg/util/rand` SafeEncodeString's alphabet: no vowels, no look-alikes.
const POD_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    /// Deployment name and pod template hash.
    Deployment(String, String),
    Pod(String),
}

#[derive(Debug)]
struct Pod {
    workload: Workload,
    labels: BTreeMap<String, String>,
    /// Container port name -> number.
    named_ports: BTreeMap<String, i64>,
    /// Port numbers the echo serves.
    served_ports: BTreeSet<i64>,
    role: EchoRole,
    backend: Backend,
}

/// What a workload's pods look like.
#[derive(Debug, Clone)]
struct Template {
    namespace: String,
    workload: Workload,
    replicas: usize,
    labels: BTreeMap<String, String>,
    named_ports: BTreeMap<String, i64>,
    served_ports: BTreeSet<i64>,
    role: EchoRole,
}

#[derive(Debug)]
pub(crate) struct Kubelet {
    mode: EchoMode,
    /// Where pods run: loopback (standalone) or a pod network (local cluster).
    place: Placement,
    /// (namespace, pod name) -> pod.
    pods: BTreeMap<(String, String), Pod>,
    /// The kube target: the cluster's own kubelets run the pods, nothing runs here;
    /// the last look at the cluster (its `pods`) answers for them.
    remote: Option<Arc<Snapshot>>,
}

impl Kubelet {
    pub(crate) fn new(mode: EchoMode) -> Self {
        Self {
            mode,
            place: Placement::Loopback,
            pods: BTreeMap::new(),
            remote: None,
        }
    }

    /// A kubelet that runs nothing: a real cluster runs the pods, and
    /// [`Kubelet::observe`] says what they are.
    pub(crate) fn remote() -> Self {
        Self {
            remote: Some(Arc::default()),
            ..Self::new(EchoMode::InProcess)
        }
    }

    /// The cluster's pods as last read (a remote kubelet; ignored otherwise).
    pub(crate) fn observe(&mut self, snapshot: Arc<Snapshot>) {
        if let Some(remote) = &mut self.remote {
            *remote = snapshot;
        }
    }

    /// Whether the pods are a real cluster's (no process here to ask).
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Pods run in `network` on addresses of their own, which their EndpointSlices
    /// carry (the local-cluster target: an API server rejects loopback endpoints).
    pub(crate) fn in_pod_network(
        mut self,
        network: std::sync::Arc<portico_testkit::PodNetwork>,
    ) -> Self {
        self.place = Placement::Pod(network);
        self
    }

    /// Brings pods and EndpointSlices in line with the cluster's objects. Returns the
    /// keys of the slices it wrote or deleted.
    pub(crate) async fn reconcile(&mut self, cluster: &mut Cluster) -> Result<Vec<Key>, String> {
        if self.remote.is_some() {
            // The cluster's controllers run the pods and publish the slices.
            return Ok(Vec::new());
        }
        let templates = templates(cluster);

        // Pods whose workload is gone or changed, extra replicas, and dead processes go.
        let mut doomed: Vec<(String, String)> = Vec::new();
        let mut kept: BTreeMap<(String, Workload), usize> = BTreeMap::new();
        for (key, pod) in &mut self.pods {
            let wanted = templates
                .iter()
                .find(|t| t.namespace == key.0 && t.workload == pod.workload);
            let count = kept
                .entry((key.0.clone(), pod.workload.clone()))
                .or_default();
            match wanted {
                // A changed role (a new certificate in the Secret it mounts) restarts
                // the pod: the echo reads its certificate at start.
                Some(t) if *count < t.replicas && pod.backend.alive() && pod.role == t.role => {
                    *count += 1;
                }
                _ => doomed.push(key.clone()),
            }
        }
        for key in doomed {
            if let Some(pod) = self.pods.remove(&key) {
                tracing::debug!(namespace = %key.0, pod = %key.1, "stopping pod");
                pod.backend.stop().await;
            }
        }

        // Missing replicas start, all at once.
        let mut starting = Vec::new();
        for t in &templates {
            let have = kept
                .get(&(t.namespace.clone(), t.workload.clone()))
                .copied()
                .unwrap_or(0);
            for _ in have..t.replicas {
                let name = self.new_pod_name(t);
                let service = primary_service(cluster, &t.namespace, &t.labels, &t.workload);
                let identity = Identity::new(name.clone(), t.namespace.clone(), service);
                let mode = self.mode.clone();
                let place = self.place.clone();
                let t = t.clone();
                // Reserve the name now so that the next replica gets another.
                let role = t.role.clone();
                starting.push((name, t, async move {
                    Backend::start_role_at(&mode, identity, &role, &place).await
                }));
            }
        }
        let names: Vec<(String, Template)> = starting
            .iter()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect();
        let results =
            futures::future::join_all(starting.into_iter().map(|(_, _, start)| start)).await;
        let mut errors = Vec::new();
        for ((name, t), result) in names.into_iter().zip(results) {
            match result {
                Ok(backend) => {
                    tracing::debug!(namespace = %t.namespace, pod = %name, addr = %backend.addr(), "pod ready");
                    self.pods.insert(
                        (t.namespace.clone(), name),
                        Pod {
                            workload: t.workload,
                            labels: t.labels,
                            named_ports: t.named_ports,
                            served_ports: t.served_ports,
                            role: t.role,
                            backend,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }

        let changed = self.publish_slices(cluster).map_err(|e| e.to_string())?;
        if errors.is_empty() {
            Ok(changed)
        } else {
            Err(errors.join("; "))
        }
    }

    fn new_pod_name(&self, t: &Template) -> String {
        match &t.workload {
            Workload::Pod(name) => name.clone(),
            Workload::Deployment(deployment, hash) => loop {
                let suffix: String = (0..5)
                    .map(|_| {
                        char::from(POD_NAME_ALPHABET[fastrand::usize(..POD_NAME_ALPHABET.len())])
                    })
                    .collect();
                let name = format!("{deployment}-{hash}-{suffix}");
                if !self.pods.contains_key(&(t.namespace.clone(), name.clone())) {
                    break name;
                }
            },
        }
    }

    /// Writes the slices every Service with a selector should have, and deletes the
    /// managed slices nothing wants any more.
    fn publish_slices(
        &self,
        cluster: &mut Cluster,
    ) -> Result<Vec<Key>, super::cluster::ClusterError> {
        let mut desired: BTreeMap<Key, Value> = BTreeMap::new();
        for (key, service) in cluster.list("Service") {
            let Some(selector) = selector(service) else {
                continue;
            };
            for ((namespace, pod_name), pod) in &self.pods {
                if *namespace != key.namespace || !matches(&selector, &pod.labels) {
                    continue;
                }
                if let Some(slice) = slice(&key.name, namespace, pod_name, pod, service) {
                    desired.insert(
                        Key::of(&slice).map_err(super::cluster::ClusterError::Invalid)?,
                        slice,
                    );
                }
            }
        }
        let stale: Vec<Key> = cluster
            .list("EndpointSlice")
            .filter(|(k, v)| {
                v.pointer(&format!(
                    "/metadata/labels/{}",
                    MANAGED_BY_LABEL.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                    == Some(MANAGED_BY)
                    && !desired.contains_key(k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = Vec::new();
        for key in stale {
            changed.extend(cluster.delete(&key, Owner::System)?);
        }
        for (_, slice) in desired {
            let (key, did) = cluster.apply(slice, Owner::System)?;
            if did {
                changed.push(key);
            }
        }
        Ok(changed)
    }

    /// The pods of a namespace that are not (yet, or any more) serving.
    pub(crate) fn unready_pods(&mut self, namespace: &str) -> Vec<String> {
        if let Some(remote) = &self.remote {
            return remote
                .pods
                .iter()
                .filter(|p| p.namespace == namespace && !p.ready)
                .map(|p| format!("{} ({})", p.name, p.why))
                .collect();
        }
        self.pods
            .iter_mut()
            .filter(|((ns, _), _)| ns == namespace)
            .filter_map(|((_, name), pod)| {
                (!pod.backend.alive())
                    .then(|| format!("{name} (exited; {})", pod.backend.last_words()))
            })
            .collect()
    }

    /// The Services in `namespace` whose selector picks pod `pod`, and the name of the
    /// pod's workload (its Deployment, or itself). `None` when no such pod runs.
    pub(crate) fn pod_services(
        &self,
        cluster: &Cluster,
        namespace: &str,
        pod: &str,
    ) -> Option<(String, Vec<String>)> {
        if let Some(remote) = &self.remote {
            let found = remote
                .pods
                .iter()
                .find(|p| p.namespace == namespace && p.name == pod)?;
            return Some((
                found.workload.clone(),
                services_selecting(cluster, namespace, &found.labels),
            ));
        }
        let found = self.pods.get(&(namespace.to_owned(), pod.to_owned()))?;
        let workload = match &found.workload {
            Workload::Deployment(name, _) | Workload::Pod(name) => name.clone(),
        };
        Some((
            workload,
            services_selecting(cluster, namespace, &found.labels),
        ))
    }

    /// The pods behind a Service.
    pub(crate) fn pods_of_service<'a>(
        &'a self,
        cluster: &Cluster,
        namespace: &str,
        service: &str,
    ) -> Vec<(&'a str, &'a Backend)> {
        let Some(selector) = cluster
            .get(&Key::new("Service", namespace, service))
            .and_then(selector)
        else {
            return Vec::new();
        };
        self.pods
            .iter()
            .filter(|((ns, _), pod)| ns == namespace && matches(&selector, &pod.labels))
            .map(|((_, name), pod)| (name.as_str(), &pod.backend))
            .collect()
    }

    /// Stops every pod.
    pub(crate) async fn shutdown(&mut self) {
        let pods = std::mem::take(&mut self.pods);
        futures::future::join_all(pods.into_values().map(|p| p.backend.stop())).await;
    }
}

/// The workloads the cluster asks for, in key order.
fn templates(cluster: &Cluster) -> Vec<Template> {
    let mut out = Vec::new();
    for (key, deployment) in cluster.list("Deployment") {
        let Some(template) = deployment.pointer("/spec/template") else {
            continue;
        };
        let Some(mut t) = pod_template(cluster, &key.namespace, template) else {
            continue;
        };
        t.workload = Workload::Deployment(key.name.clone(), template_hash(template));
        // "replicas [...] Defaults to 1."
        t.replicas = deployment
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .map_or(1, |r| usize::try_from(r).unwrap_or(usize::MAX));
        out.push(t);
    }
    for (key, pod) in cluster.list("Pod") {
        if let Some(mut t) = pod_template(cluster, &key.namespace, pod) {
            t.workload = Workload::Pod(key.name.clone());
            out.push(t);
        }
    }
    out
}

/// The pod a template (or a Pod) describes, if it runs an echo image (or the DNS
/// image the UDP echo plays); `None` too while a Secret it mounts does not exist.
fn pod_template(cluster: &Cluster, namespace: &str, template: &Value) -> Option<Template> {
    let containers = template.pointer("/spec/containers")?.as_array()?;
    let echo = containers.iter().find(|c| {
        c["image"]
            .as_str()
            .is_some_and(|image| is_echo_image(image) || image.contains(DNS_IMAGE))
    })?;
    let labels = string_map(template.pointer("/metadata/labels"));
    let mut named_ports = BTreeMap::new();
    for c in containers {
        for p in c["ports"].as_array().into_iter().flatten() {
            if let (Some(name), Some(port)) = (p["name"].as_str(), p["containerPort"].as_i64()) {
                named_ports.insert(name.to_owned(), port);
            }
        }
    }
    let env: BTreeMap<&str, &str> = echo["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    let role = echo_role(cluster, namespace, template, echo, &env)?;
    let served_ports = match &role {
        EchoRole::Http => ECHO_HTTP_PORTS
            .iter()
            .map(|(var, default)| {
                env.get(var)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(*default)
            })
            .collect(),
        EchoRole::Tcp { port, tls } => std::iter::once(*port)
            .chain(tls.as_ref().map(|(p, _)| *p))
            .collect(),
        EchoRole::Udp { port } => BTreeSet::from([*port]),
        EchoRole::Https { port, .. } => ECHO_HTTP_PORTS
            .iter()
            .map(|(var, default)| {
                env.get(var)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(*default)
            })
            .chain(std::iter::once(*port))
            .collect(),
    };
    Some(Template {
        namespace: namespace.to_owned(),
        workload: Workload::Pod(String::new()),
        replicas: 1,
        labels,
        named_ports,
        served_ports,
        role,
    })
}

/// What the echo container asks to play (see the module docs). `None`: TLS asked for
/// with a certificate whose Secret is not there (yet).
fn echo_role(
    cluster: &Cluster,
    namespace: &str,
    template: &Value,
    container: &Value,
    env: &BTreeMap<&str, &str>,
) -> Option<EchoRole> {
    if container["image"]
        .as_str()
        .is_some_and(|i| i.contains(DNS_IMAGE))
    {
        return Some(EchoRole::Udp { port: DNS_PORT });
    }
    let set = |var: &str| env.get(var).is_some_and(|v| !v.is_empty());
    let port =
        |var: &str, default: i64| env.get(var).and_then(|v| v.parse().ok()).unwrap_or(default);
    if set("TCP_ECHO_SERVER") {
        let tls = match (env.get("TLS_SERVER_CERT"), env.get("TLS_SERVER_PRIV_KEY")) {
            (Some(cert), Some(key)) => {
                let file =
                    |path: &str| mounted_secret_file(cluster, namespace, template, container, path);
                let Some((cert, key)) = file(cert).zip(file(key)) else {
                    tracing::debug!(%namespace, "echo pod pending: its certificate Secret is missing");
                    return None;
                };
                Some((
                    port("TLS_PORT", 8443),
                    portico_echo::LineTls {
                        cert_chain_pem: cert,
                        private_key_pem: key,
                    },
                ))
            }
            _ => None,
        };
        return Some(EchoRole::Tcp {
            port: port("TCP_PORT", 3000),
            tls,
        });
    }
    if set("UDP_ECHO_SERVER") {
        return Some(EchoRole::Udp {
            port: port("UDP_PORT", 8080),
        });
    }
    // echo-basic serves HTTPS beside HTTP when given a certificate (the tls-backend
    // Deployments of the base manifests, behind the BackendTLSPolicy cases).
    if let (Some(cert), Some(key)) = (env.get("TLS_SERVER_CERT"), env.get("TLS_SERVER_PRIVKEY")) {
        let file = |path: &str| mounted_secret_file(cluster, namespace, template, container, path);
        let Some((cert, key)) = file(cert).zip(file(key)) else {
            tracing::debug!(%namespace, "echo pod pending: its certificate Secret is missing");
            return None;
        };
        return Some(EchoRole::Https {
            port: port("HTTPS_PORT", ECHO_HTTPS_PORT),
            tls: portico_echo::LineTls {
                cert_chain_pem: cert,
                private_key_pem: key,
            },
        });
    }
    Some(EchoRole::Http)
}

/// The content of the file at `path` in the container, when a Secret volume mounted
/// there provides it (`items[].path` names the file, else the Secret key does).
fn mounted_secret_file(
    cluster: &Cluster,
    namespace: &str,
    template: &Value,
    container: &Value,
    path: &str,
) -> Option<Vec<u8>> {
    let mounts = container["volumeMounts"].as_array()?;
    let (mount, rest) = mounts.iter().find_map(|m| {
        let dir = m["mountPath"].as_str()?.trim_end_matches('/');
        let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
        Some((m, rest))
    })?;
    let volume = template
        .pointer("/spec/volumes")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    let secret = volume["secret"]["secretName"].as_str()?;
    let key = volume["secret"]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["path"].as_str() == Some(rest)))
        .and_then(|i| i["key"].as_str())
        .unwrap_or(rest);
    let data = cluster
        .get(&Key::new("Secret", namespace, secret))?
        .get("data")?
        .get(key)?
        .as_str()?;
    super::base64::decode(data).ok()
}

/// A stable 10-character hash of a pod template, in the pod name alphabet (what the
/// Deployment controller puts in ReplicaSet and pod names).
fn template_hash(template: &Value) -> String {
    // FNV-1a over the canonical JSON (serde_json sorts object keys).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let base = POD_NAME_ALPHABET.len() as u64;
    (0..10)
        .map(|_| {
            let c = POD_NAME_ALPHABET[(h % base) as usize];
            h /= base;
            char::from(c)
        })
        .collect()
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A Service's selector, when a cluster would manage its endpoints.
fn selector(service: &Value) -> Option<BTreeMap<String, String>> {
    // "ExternalName [...] No proxying of any kind is set up."
    if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return None;
    }
    let selector = string_map(service.pointer("/spec/selector"));
    // A Service without a selector: "the corresponding EndpointSlice [...] objects are
    // not created automatically."
    (!selector.is_empty()).then_some(selector)
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn services_selecting(
    cluster: &Cluster,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    cluster
        .list("Service")
        .filter(|(k, _)| k.namespace == namespace)
        .filter(|(_, s)| selector(s).is_some_and(|sel| matches(&sel, labels)))
        .map(|(k, _)| k.name.clone())
        .collect()
}

/// The Service a pod reports (`--service`): the one named like its workload if that
/// one selects it (the upstream convention), else the first that does, else the
/// workload's name.
fn primary_service(
    cluster: &Cluster,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    workload: &Workload,
) -> String {
    let name = match workload {
        Workload::Deployment(name, _) | Workload::Pod(name) => name.clone(),
    };
    let services = services_selecting(cluster, namespace, labels);
    if services.contains(&name) {
        return name;
    }
    services.into_iter().next().unwrap_or(name)
}

/// `<service>-<pod>`, shortened to a DNS label (63 characters) with a hash of the
/// whole when longer, as the EndpointSlice controller keeps its names short: an API
/// server rejects longer ones.
fn slice_name(service: &str, pod: &str) -> String {
    const MAX: usize = 63;
    let full = format!("{service}-{pod}");
    if full.len() <= MAX {
        return full;
    }
    let hash = template_hash(&json!(full));
    let keep = full[..MAX - hash.len() - 1].trim_end_matches(['-', '.']);
    format!("{keep}-{hash}")
}

/// The slice of one Service for one pod, or `None` when none of the Service's ports
/// resolve on the pod.
fn slice(
    service_name: &str,
    namespace: &str,
    pod_name: &str,
    pod: &Pod,
    service: &Value,
) -> Option<Value> {
    let mut ports = Vec::new();
    for sp in service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(port) = sp["port"].as_i64() else {
            continue;
        };
        // "targetPort [...] If this is not specified, the value of the 'port' field is
        // used." A string names a container port.
        let number = match &sp["targetPort"] {
            Value::Null => Some(port),
            Value::Number(n) => n.as_i64(),
            Value::String(name) => name
                .parse()
                .ok()
                .or_else(|| pod.named_ports.get(name).copied()),
            _ => None,
        };
        // HTTP: every port the echo serves is the process's one port; L4 roles serve
        // each port on an address of its own.
        let Some(served) = number
            .filter(|n| pod.served_ports.contains(n))
            .and_then(|n| pod.backend.port_for(n))
        else {
            continue;
        };
        let mut entry = json!({
            "name": sp["name"].as_str().unwrap_or(""),
            "port": served.port(),
            "protocol": sp["protocol"].as_str().unwrap_or("TCP"),
        });
        if let Some(app) = sp["appProtocol"].as_str() {
            entry["appProtocol"] = json!(app);
        }
        ports.push(entry);
    }
    if ports.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(service_name, pod_name),
            "namespace": namespace,
            "labels": {ENDPOINT_SLICE_SERVICE_LABEL: service_name, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [pod.backend.addr().ip().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod_name},
        }],
        "ports": ports,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::conformance::defaults::Defaulter;

    fn deployment(name: &str, replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image,
                                           "ports": [{"name": "web", "containerPort": 3000}]}]}}}
        })
    }

    fn service(name: &str, app: &str, target: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"selector": {"app": app},
                     "ports": [{"name": "first", "port": 8080, "targetPort": target},
                               {"name": "tls", "port": 443, "targetPort": 8443}]}
        })
    }

    const ECHO: &str = "registry.k8s.io/gateway-api/echo-basic:v1.5.1";

    #[tokio::test]
    async fn deployments_become_pods_and_services_get_slices() {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path().to_owned(), Defaulter::default());
        cluster
            .apply(deployment("web", 2, ECHO), Owner::Case)
            .unwrap();
        cluster
            .apply(deployment("dns", 1, "coredns:1"), Owner::Case)
            .unwrap();
        cluster
            .apply(service("web", "web", json!(3000)), Owner::Case)
            .unwrap();
        cluster
            .apply(service("named", "web", json!("web")), Owner::Case)
            .unwrap();
        cluster
            .apply(service("dns", "dns", json!(53)), Owner::Case)
            .unwrap();
        let mut kubelet = Kubelet::new(EchoMode::InProcess);
        kubelet.reconcile(&mut cluster).await.unwrap();

        let pods = kubelet.pods_of_service(&cluster, "ns", "web");
        assert_eq!(pods.len(), 2);
        let (pod, backend) = pods[0];
        // <deployment>-<hash>-<suffix>: dropping two parts gives the Deployment.
        let parts: Vec<&str> = pod.split('-').collect();
        assert_eq!(parts.len(), 3, "{pod}");
        assert_eq!(parts[0], "web");
        assert_eq!(parts[1].len(), 10);
        let (workload, services) = kubelet.pod_services(&cluster, "ns", pod).unwrap();
        assert_eq!(workload, "web");
        assert_eq!(services, ["named", "web"]);

        let slices: Vec<&Value> = cluster.list("EndpointSlice").map(|(_, v)| v).collect();
        assert_eq!(slices.len(), 4, "two Services × two pods; coredns has none");
        let slice = cluster
            .get(&Key::new("EndpointSlice", "ns", &format!("web-{pod}")))
            .unwrap();
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "web"
        );
        assert_eq!(slice["endpoints"][0]["targetRef"]["name"], pod);
        assert_eq!(
            slice["ports"].as_array().unwrap().len(),
            1,
            "8443 is not served"
        );
        assert_eq!(slice["ports"][0]["name"], "first");
        assert_eq!(slice["ports"][0]["port"], backend.addr().port());

        // Scale down, then delete: pods stop and their slices go.
        cluster
            .apply(deployment("web", 1, ECHO), Owner::Case)
            .unwrap();
        kubelet.reconcile(&mut cluster).await.unwrap();
        assert_eq!(kubelet.pods_of_service(&cluster, "ns", "web").len(), 1);
        assert_eq!(cluster.list("EndpointSlice").count(), 2);
        cluster
            .delete(&Key::new("Deployment", "ns", "web"), Owner::Case)
            .unwrap();
        kubelet.reconcile(&mut cluster).await.unwrap();
        assert_eq!(cluster.list("EndpointSlice").count(), 0);
        assert!(kubelet.pods_of_service(&cluster, "ns", "web").is_empty());
        kubelet.shutdown().await;
    }

    #[tokio::test]
    async fn a_template_change_rolls_the_pods() {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path().to_owned(), Defaulter::default());
        cluster
            .apply(deployment("web", 1, ECHO), Owner::Case)
            .unwrap();
        let mut kubelet = Kubelet::new(EchoMode::InProcess);
        kubelet.reconcile(&mut cluster).await.unwrap();
        let before: Vec<String> = kubelet.pods.keys().map(|k| k.1.clone()).collect();
        let mut changed = deployment("web", 1, ECHO);
        changed["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        cluster.apply(changed, Owner::Case).unwrap();
        kubelet.reconcile(&mut cluster).await.unwrap();
        let after: Vec<String> = kubelet.pods.keys().map(|k| k.1.clone()).collect();
        assert_eq!(after.len(), 1);
        assert_ne!(before, after);
        kubelet.shutdown().await;
    }

    #[tokio::test]
    async fn l4_roles_follow_the_environment_and_wait_for_their_secret() {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path().to_owned(), Defaulter::default());
        let tcp = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "tcp", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "tcp"}},
                     "template": {"metadata": {"labels": {"app": "tcp"}},
                                  "spec": {"containers": [{"name": "c", "image": ECHO,
                                           "volumeMounts": [{"name": "v", "mountPath": "/etc/secret-volume"}],
                                           "env": [{"name": "TCP_ECHO_SERVER", "value": "1"},
                                                   {"name": "TLS_SERVER_CERT", "value": "/etc/secret-volume/crt"},
                                                   {"name": "TLS_SERVER_PRIV_KEY", "value": "/etc/secret-volume/key"}]}],
                                           "volumes": [{"name": "v", "secret": {"secretName": "cert",
                                               "items": [{"key": "tls.crt", "path": "crt"}, {"key": "tls.key", "path": "key"}]}}]}}}
        });
        cluster.apply(tcp, Owner::Case).unwrap();
        cluster
            .apply(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tcp", "namespace": "ns"},
                       "spec": {"selector": {"app": "tcp"}, "ports": [{"name": "plain", "port": 3000}, {"name": "tls", "port": 8443}]}}),
                Owner::Case,
            )
            .unwrap();
        cluster
            .apply(
                deployment("coredns", 1, "registry.k8s.io/coredns/coredns:v1.12.2"),
                Owner::Case,
            )
            .unwrap();
        cluster
            .apply(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": "ns"},
                       "spec": {"selector": {"app": "coredns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
                Owner::Case,
            )
            .unwrap();
        let mut kubelet = Kubelet::new(EchoMode::InProcess);
        kubelet.reconcile(&mut cluster).await.unwrap();
        assert!(
            kubelet.pods_of_service(&cluster, "ns", "tcp").is_empty(),
            "pending without its Secret"
        );
        assert_eq!(kubelet.pods_of_service(&cluster, "ns", "dns").len(), 1);

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["abc.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cluster
            .apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert", "namespace": "ns"},
                       "type": "kubernetes.io/tls",
                       "data": {"tls.crt": crate::conformance::base64::encode(cert.pem().as_bytes()),
                                "tls.key": crate::conformance::base64::encode(key.serialize_pem().as_bytes())}}),
                Owner::Case,
            )
            .unwrap();
        kubelet.reconcile(&mut cluster).await.unwrap();
        let pods = kubelet.pods_of_service(&cluster, "ns", "tcp");
        assert_eq!(pods.len(), 1);
        let slice = cluster
            .get(&Key::new(
                "EndpointSlice",
                "ns",
                &format!("tcp-{}", pods[0].0),
            ))
            .unwrap();
        let port = |i: usize| slice["ports"][i]["port"].as_u64().unwrap();
        assert_ne!(port(0), port(1), "plain and TLS each have a socket");
        let plain = pods[0].1.port_for(3000).unwrap();
        assert_eq!(u64::from(plain.port()), port(0));
        let socket = tokio::net::TcpStream::connect(plain).await.unwrap();
        let mut welcome = String::new();
        tokio::io::BufReader::new(socket)
            .read_line(&mut welcome)
            .await
            .unwrap();
        assert_eq!(welcome.trim_end(), portico_echo::WELCOME);

        let dns = kubelet.pods_of_service(&cluster, "ns", "dns")[0]
            .1
            .port_for(53)
            .unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"foo.bar.com.", dns).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let reply: portico_echo::UdpReport = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(reply.request, "foo.bar.com.");
        kubelet.shutdown().await;
    }

    #[test]
    fn slice_names_stay_dns_labels() {
        assert_eq!(slice_name("svc", "pod-1"), "svc-pod-1");
        let long = slice_name(
            "backendtlspolicy-cert-mismatch-test-tls-backend",
            "backendtlspolicy-cert-mismatch-test-tls-backend-ldxq6nh9ts-q4zfh",
        );
        assert!(long.len() <= 63, "{long}");
        assert!(long.starts_with("backendtlspolicy-cert-mismatch-test-tls-backend-"));
        assert_ne!(
            long,
            slice_name(
                "backendtlspolicy-cert-mismatch-test-tls-backend",
                "backendtlspolicy-cert-mismatch-test-tls-backend-ldxq6nh9ts-zzzzz",
            )
        );
    }

    #[test]
    fn external_name_and_selectorless_services_are_left_alone() {
        assert!(
            selector(&json!({"spec": {"type": "ExternalName", "selector": {"a": "b"}}})).is_none()
        );
        assert!(selector(&json!({"spec": {"ports": []}})).is_none());
        assert!(
            selector(&json!({"spec": {"clusterIP": "None", "selector": {"a": "b"}}})).is_some()
        );
    }
}
