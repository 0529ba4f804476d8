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
//!
//! [`Remote`] is the API-server half of this (writer, poller, settling on statuses),
//! shared with the kube target (`../kube.rs`), which has no processes of its own.

pub(crate) mod api;
pub(crate) mod kube_proxy;
pub(crate) mod kubelet;
pub(crate) mod processes;
pub(crate) mod snapshot;

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
use snapshot::{POLL, Poller, Probes, Snapshot};

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
    test_server: Option<TestApiServer>,
    /// Writes to the API server and reads it back (shared with the kube target).
    pub(crate) remote: Remote,
    pub(crate) network: Arc<PodNetwork>,
    operator: Option<Process>,
    cert_sync: Option<Process>,
    proxy: Option<Process>,
}

/// An API server the runner writes the cases' objects to and reads statuses (and
/// pods, the proxy) back from: the part the local-cluster and the kube targets share.
#[derive(Debug)]
pub(crate) struct Remote {
    writer: api::Writer,
    poller: Option<Poller>,
    /// When the last writes reached the API server.
    pushed_at: Instant,
    /// Settling also waits for the proxy's served version (a proxy of the runner's).
    watch_proxy: bool,
}

impl Remote {
    /// Starts reading the API server once the Gateway API kinds are served (CRDs
    /// establish asynchronously on a real server).
    pub(crate) async fn start(
        client: Client,
        writer: api::Writer,
        probes: Probes,
        deadline: Instant,
    ) -> Result<Self, String> {
        let watch_proxy = probes.proxy.is_some();
        let kinds = loop {
            match snapshot::gateway_kinds(&client).await {
                Ok(kinds) => break kinds,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        };
        Ok(Self {
            writer,
            poller: Some(Poller::start(client, kinds, probes)),
            pushed_at: Instant::now(),
            watch_proxy,
        })
    }

    /// The writer, for objects outside the runner's Cluster (set-up, clean-up).
    pub(crate) fn writer(&mut self) -> &mut api::Writer {
        &mut self.writer
    }

    /// The latest snapshot of statuses (and pods, the proxy).
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

    /// Whether the controllers (and the proxy, when it is ours) have caught up with the
    /// cluster's objects: `Err` says what is missing.
    pub(crate) fn converged(
        &self,
        snapshot: &Snapshot,
        cluster: &Cluster,
        class: &str,
    ) -> Result<(), String> {
        statuses_observed(snapshot, cluster, class)?;
        if !self.watch_proxy {
            // The cluster's proxies are not the runner's to ask: statuses read after
            // the writes are what there is (requests retry until the data plane agrees).
            return if snapshot.taken.is_some_and(|t| t >= self.pushed_at) {
                Ok(())
            } else {
                Err("no look at the API server since the last writes yet".to_owned())
            };
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

    /// Stops reading.
    pub(crate) async fn stop(&mut self) {
        if let Some(poller) = self.poller.take() {
            poller.stop().await;
        }
    }
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
        let probes = Probes {
            proxy: Some((admin, kube_proxy)),
            pods: false,
        };
        let remote = Remote::start(client, writer, probes, deadline).await?;
        tracing::info!(pods = %network.subnet(), load_balancers = %lb_cidr, proxy = %proxy_ip, "local cluster up");
        Ok(Self {
            test_server: server,
            remote,
            network,
            operator: Some(operator),
            cert_sync: Some(cert_sync),
            proxy: Some(proxy),
        })
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
        self.remote.stop().await;
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
        if let Some(server) = self.test_server.take() {
            server.shutdown().await;
        }
    }
}

/// A client for the cluster of a kubeconfig file.
pub(crate) async fn client_from(path: &Path) -> Result<Client, String> {
    client_for(Some(path), None).await
}

/// A client for the cluster of `path` (else `KUBECONFIG`, else `~/.kube/config`), in
/// `context` (else the current one).
pub(crate) async fn client_for(
    path: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, String> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let (config, source) = match path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            (
                portico_api::kube::Config::from_custom_kubeconfig(kubeconfig, &options).await,
                path.display().to_string(),
            )
        }
        None => (
            portico_api::kube::Config::from_kubeconfig(&options).await,
            "the kubeconfig (KUBECONFIG or ~/.kube/config)".to_owned(),
        ),
    };
    let config = config.map_err(|e| format!("{source}: {e}"))?;
    Client::try_from(config).map_err(|e| format!("{source}: {e}"))
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

/// Every Gateway of the class under test, and every route attached to one, carries a
/// status observed at the generation the API server has.
fn statuses_observed(snapshot: &Snapshot, cluster: &Cluster, class: &str) -> Result<(), String> {
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
    Ok(())
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
