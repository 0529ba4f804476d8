//! The local-cluster target: the same cases against `portico-operator`,
//! `portico-cert-sync` and `portico-proxy` as separate processes, driven through a
//! Kubernetes API server (the in-memory test server, or a real one given with
//! `--kubeconfig`).
//!
//! ```text
//!   runner ─apply─> Cluster (local mirror, journal for rollback) ─changes─> api.rs ─SSA─> API server
//!      │                 │ Deployments, Services                               │  ▲ status,
//!      │                 ▼                                                     ▼  │ Services
//!      │     Kubelet: portico-echo pods IN the pod network          portico-operator (host)
//!      │       (netns, 10.244.K.x), EndpointSlices with pod IPs ──>   LB-IPAM: pool 10.245.K.0/24
//!      │                                                              config stream ══> portico-proxy
//!      │                                                                    (a pod: 10.244.K.y)
//!      └─ requests to status.addresses ── nft DNAT (kube_proxy.rs) ──> proxy pod:targetPort ─> pods
//!   snapshot.rs polls statuses, Services (-> DNAT rules) and the proxy's served version
//! ```
//!
//! Nothing here depends on the API server being the test one: with `--kubeconfig` the
//! runner still runs the pods (there is no kubelet for them on this host), publishes
//! their EndpointSlices itself, and runs the operator and proxy as processes here.
//!
//! Settling after a change: the writes reach the API server; then every Gateway of the
//! class under test, and every route attached to one, carries a status whose
//! `observedGeneration` is the server's generation; and the proxy has served one
//! config version for [`QUIET`] (at least that long after the writes), which is how
//! long the operator gets to push what the writes changed when they change no status
//! (EndpointSlices).

pub(crate) mod api;
pub(crate) mod kube_proxy;
pub(crate) mod kubelet;
pub(crate) mod processes;
mod snapshot;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portico_api::kube::Client;
use portico_api::kube::config::{KubeConfigOptions, Kubeconfig};
use portico_api::names;
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{PodNetwork, Process};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::cluster::{Cluster, Key};
use snapshot::{POLL, Poller, Snapshot};

/// How long the proxy must serve one version, after the writes, before the target
/// counts as settled.
const QUIET: Duration = Duration::from_millis(600);

/// The operator's debounce: short, cases change objects often.
const OPERATOR_DEBOUNCE: Duration = Duration::from_millis(50);

/// Time allowed for the start: CRDs established, binaries up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of each process's output shown with a failing case.
const TAIL_LINES: usize = 25;

/// Portico's own CRDs (LoadBalancerIPPool, PorticoGatewayClassConfig), as `make
/// generate` writes them.
const PORTICO_CRDS: &[&str] = &[
    include_str!("../../../../api/crds/portico.dev_loadbalancerippools.yaml"),
    include_str!("../../../../api/crds/portico.dev_porticogatewayclassconfigs.yaml"),
];

/// Route kinds whose status has a parent entry per Gateway (the ones settling waits
/// for).
const ROUTE_KINDS: &[&str] = &[
    names::kind::HTTP_ROUTE,
    names::kind::GRPC_ROUTE,
    names::kind::TLS_ROUTE,
    names::kind::TCP_ROUTE,
    names::kind::UDP_ROUTE,
];

/// How the local-cluster target runs.
#[derive(Debug, Clone)]
pub(crate) struct LocalClusterConfig {
    /// A real API server; `None`: the in-memory test server.
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Gateway API CRDs to apply (a folder of YAML files).
    pub(crate) crds: Option<PathBuf>,
}

#[derive(Debug)]
pub(crate) struct LocalCluster {
    /// The test API server (`None` with `--kubeconfig`).
    server: Option<TestApiServer>,
    writer: api::Writer,
    pub(crate) network: Arc<PodNetwork>,
    operator: Option<Process>,
    cert_sync: Option<Process>,
    proxy: Option<Process>,
    poller: Option<Poller>,
    /// When the last writes reached the API server.
    pushed_at: Instant,
}

impl LocalCluster {
    /// Starts everything; `dir` is the run folder (kubeconfig, logs).
    pub(crate) async fn start(config: &LocalClusterConfig, dir: &Path) -> Result<Self, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        if let Some(why) = PodNetwork::unavailable() {
            return Err(format!(
                "the local-cluster target runs pods in a network namespace, which needs root: {why}"
            ));
        }
        let network = Arc::new(PodNetwork::create().map_err(|e| e.to_string())?);
        let lb_cidr = format!("10.245.{}.0/24", network.index());
        network.route_to_pods(&lb_cidr).map_err(|e| e.to_string())?;

        let (server, client, kubeconfig) = match &config.kubeconfig {
            Some(path) => (None, client_from(path).await?, path.clone()),
            None => {
                let server = TestApiServer::start()
                    .await
                    .map_err(|e| format!("starting the test API server: {e}"))?;
                let client = server.client().map_err(|e| e.to_string())?;
                let path = server
                    .kubeconfig(dir.join("kubeconfig"))
                    .map_err(|e| e.to_string())?;
                (Some(server), client, path)
            }
        };
        let mut writer = api::Writer::new(client.clone());
        apply_crds(&mut writer, config.crds.as_deref(), deadline).await?;
        for namespace in [processes::OPERATOR_NAMESPACE, processes::SECRETS_NAMESPACE] {
            writer
                .create_if_missing(&json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": namespace},
                }))
                .await?;
        }
        let pool = json!({
            "apiVersion": "portico.dev/v1alpha1",
            "kind": names::kind::LOAD_BALANCER_IP_POOL,
            "metadata": {"name": format!("portico-conformance-{}", network.index())},
            "spec": {"blocks": [{"cidr": lb_cidr}]},
        });
        writer.apply_until(&pool, deadline).await?;

        let cert_sync = processes::start_cert_sync(&kubeconfig).await?;
        let (operator, config_addr) =
            processes::start_operator(&kubeconfig, network.host_ip(), OPERATOR_DEBOUNCE).await?;
        let proxy_ip = network.allocate().map_err(|e| e.to_string())?;
        let proxy = processes::start_proxy(&network, proxy_ip, config_addr).await?;
        let kube_proxy = kube_proxy::KubeProxy::new(
            format!(
                "portico_conformance_{}_{}",
                std::process::id(),
                network.index()
            ),
            proxy_ip,
        );
        let admin = SocketAddr::from((proxy_ip, processes::PROXY_ADMIN_PORT));
        let poller = retry_poller(client, admin, kube_proxy, deadline).await?;
        tracing::info!(pods = %network.subnet(), load_balancers = %lb_cidr, proxy = %proxy_ip, "local cluster up");
        Ok(Self {
            server,
            writer,
            network,
            operator: Some(operator),
            cert_sync: Some(cert_sync),
            proxy: Some(proxy),
            poller: Some(poller),
            pushed_at: Instant::now(),
        })
    }

    /// The latest snapshot of statuses and the proxy.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.poller.as_ref().map(Poller::latest).unwrap_or_default()
    }

    /// Waits for a newer snapshot, at most until `until`.
    pub(crate) async fn changed(&mut self, until: Instant) {
        match self.poller.as_mut() {
            Some(poller) => poller.changed(until).await,
            None => tokio::time::sleep_until(until).await,
        }
    }

    /// Writes the cluster's changes to the API server.
    pub(crate) async fn push(
        &mut self,
        cluster: &mut Cluster,
        deadline: Instant,
    ) -> Result<(), String> {
        let changes = cluster.take_changes();
        if changes.is_empty() {
            return Ok(());
        }
        self.writer.push(cluster, changes, deadline).await?;
        self.pushed_at = Instant::now();
        Ok(())
    }

    /// Whether the operator and the proxy have caught up with the cluster's objects:
    /// `Err` says what is missing.
    pub(crate) fn converged(
        &self,
        snapshot: &Snapshot,
        cluster: &Cluster,
        class: &str,
    ) -> Result<(), String> {
        for (key, gateway) in cluster.list(names::kind::GATEWAY) {
            if gateway
                .pointer("/spec/gatewayClassName")
                .and_then(Value::as_str)
                != Some(class)
            {
                continue;
            }
            observed(snapshot, cluster, key, |status| {
                conditions_at(status.get("conditions"))
            })?;
        }
        for kind in ROUTE_KINDS {
            for (key, route) in cluster.list(kind) {
                if !attached_to_ours(route, &key.namespace, cluster, class) {
                    continue;
                }
                observed(snapshot, cluster, key, |status| {
                    let ours: Vec<&Value> = status
                        .get("parents")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|p| p["controllerName"] == names::CONTROLLER_NAME)
                        .collect();
                    if ours.is_empty() {
                        return Vec::new();
                    }
                    ours.iter()
                        .flat_map(|p| conditions_at(p.get("conditions")))
                        .collect()
                })?;
            }
        }
        let Some(version) = &snapshot.proxy_version else {
            return Err("the proxy serves no config yet".to_owned());
        };
        let quiet_since = snapshot
            .proxy_since
            .map_or(self.pushed_at, |since| since.max(self.pushed_at));
        if snapshot
            .taken
            .is_none_or(|taken| taken < quiet_since + QUIET)
        {
            return Err(format!(
                "the proxy has not served one config ({version}) for {QUIET:?} since the last change"
            ));
        }
        Ok(())
    }

    /// The last lines of the operator's and the proxy's output.
    pub(crate) fn logs(&self) -> String {
        let mut out = Vec::new();
        if let Some(p) = &self.operator {
            out.push(processes::tail("portico-operator", p, TAIL_LINES));
        }
        if let Some(p) = &self.cert_sync {
            out.push(processes::tail("portico-cert-sync", p, TAIL_LINES));
        }
        if let Some(p) = &self.proxy {
            out.push(processes::tail("portico-proxy", p, TAIL_LINES));
        }
        out.join("\n")
    }

    /// Stops the proxy, the operator, cert-sync and the API server; the logs go to `dir`.
    pub(crate) async fn shutdown(mut self, dir: &Path) {
        if let Some(poller) = self.poller.take() {
            poller.stop().await;
        }
        for (name, process) in [
            ("portico-proxy", self.proxy.take()),
            ("portico-operator", self.operator.take()),
            ("portico-cert-sync", self.cert_sync.take()),
        ] {
            if let Some(process) = process {
                processes::write_log(dir, name, &process);
                if let Err(error) = process.stop(Duration::from_secs(10)).await {
                    tracing::warn!(%error, "stopping {name}");
                }
            }
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A client for the cluster of a kubeconfig file.
pub(crate) async fn client_from(path: &Path) -> Result<Client, String> {
    let kubeconfig =
        Kubeconfig::read_from(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let config = portico_api::kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Client::try_from(config).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies the CustomResourceDefinitions of `dir` and Portico's own.
pub(crate) async fn apply_crds(
    writer: &mut api::Writer,
    dir: Option<&Path>,
    deadline: Instant,
) -> Result<(), String> {
    let mut texts: Vec<String> = PORTICO_CRDS.iter().map(|t| (*t).to_owned()).collect();
    if let Some(dir) = dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        paths.sort();
        for path in paths {
            texts.push(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?,
            );
        }
    }
    for text in texts {
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document)
                .map_err(|e| format!("a CRD file: {e}"))?;
            if object["kind"] == "CustomResourceDefinition" {
                writer.apply_until(&object, deadline).await?;
            }
        }
    }
    Ok(())
}

/// Starts the poller once the Gateway API kinds are served (CRDs establish
/// asynchronously on a real server).
async fn retry_poller(
    client: Client,
    admin: SocketAddr,
    kube_proxy: kube_proxy::KubeProxy,
    deadline: Instant,
) -> Result<Poller, String> {
    let mut kube_proxy = Some(kube_proxy);
    loop {
        let kinds = snapshot::gateway_kinds(&client).await;
        match kinds {
            Ok(kinds) => {
                let Some(kp) = kube_proxy.take() else {
                    return Err("internal: kube-proxy gone".to_owned());
                };
                return Ok(Poller::start(client, kinds, admin, kp));
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Fails unless the server's copy of `key` is at the cluster's generation and carries
/// conditions (picked by `conditions`) observed at that generation.
fn observed(
    snapshot: &Snapshot,
    cluster: &Cluster,
    key: &Key,
    conditions: impl Fn(&Value) -> Vec<Option<i64>>,
) -> Result<(), String> {
    let generation = cluster.generation(key);
    let server = snapshot
        .objects
        .get(key)
        .ok_or_else(|| format!("{key}: not on the API server yet"))?;
    let server_generation = server
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    if server_generation != generation {
        return Err(format!(
            "{key}: the API server has generation {server_generation:?}, the runner wrote {generation:?}"
        ));
    }
    let seen = server.get("status").map(&conditions).unwrap_or_default();
    if seen.is_empty() || seen.iter().any(|g| *g != generation) {
        return Err(format!(
            "{key}: status not yet observed at generation {generation:?} (conditions at {seen:?})"
        ));
    }
    Ok(())
}

/// The `observedGeneration` of each condition of a list.
fn conditions_at(conditions: Option<&Value>) -> Vec<Option<i64>> {
    conditions
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c["observedGeneration"].as_i64())
        .collect()
}

/// Whether a route names a Gateway of the class under test as a parent.
fn attached_to_ours(route: &Value, namespace: &str, cluster: &Cluster, class: &str) -> bool {
    route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|parent| {
            // "Kind [...] Defaults to Gateway"; "Namespace [...] When unspecified, this
            // refers to the local namespace of the Route."
            let kind = parent["kind"].as_str().unwrap_or(names::kind::GATEWAY);
            let group = parent["group"].as_str().unwrap_or(names::GATEWAY_API_GROUP);
            if kind != names::kind::GATEWAY || group != names::GATEWAY_API_GROUP {
                return false;
            }
            let ns = parent["namespace"].as_str().unwrap_or(namespace);
            let Some(name) = parent["name"].as_str() else {
                return false;
            };
            cluster
                .get(&Key::new(names::kind::GATEWAY, ns, name))
                .and_then(|g| g.pointer("/spec/gatewayClassName"))
                .and_then(Value::as_str)
                == Some(class)
        })
}
