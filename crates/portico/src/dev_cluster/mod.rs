//! `portico dev-cluster`: a long-running local cluster for trying Portico and for
//! testing the CLI (`portico status`, `config view`, `connectivity test`) against.
//!
//! ```text
//!   TestApiServer (or --kubeconfig)  <── kubeconfig (--kubeconfig-out)
//!     CRDs: Gateway API (experimental channel), Portico's
//!     portico-system: what the Helm chart would create, statuses true to the processes
//!       Deployment portico-operator   ── process portico-operator (host)
//!       Deployment portico-cert-sync  ── process portico-cert-sync (host)
//!       DaemonSet  portico-proxy      ── process portico-proxy (pod network, one "node")
//!       ConfigMap  portico-config     (the chart's keys; `portico config view`)
//!       (no portico-agent: the eBPF agent does not run here; status says "not installed")
//!     GatewayClass portico, LoadBalancerIPPool 10.245.K.0/24, Node portico-dev-node
//!   kubelet (conformance/local_cluster/kubelet.rs: its module doc is the contract for
//!     pods: which images run, how, and how they report) watches the API server:
//!     Deployments and Pods of the echo and cli images run as local processes in the
//!     pod network; EndpointSlices; DNAT for ClusterIP, NodePort and load balancers
//! ```
//!
//! The ready file (`--ready-file`), written once everything is up, is JSON:
//! `{"kubeconfig": PATH, "node_ip": IP, "pod_network": CIDR, "netns": NAME,
//!   "proxy_ip": IP, "pids": {"portico-operator": N, "portico-proxy": N,
//!   "portico-cert-sync": N}}`.
//!
//! The component processes are not restarted when they die: the workload's ready
//! count drops to 0 and stays there (a crash loop, as `portico status` reports it).
//! The proxy is one node's DaemonSet pod: `desiredNumberScheduled` 1.
//! Stops on Ctrl-C or SIGTERM: pods, proxy, operator, cert-sync, nft tables, the pod
//! network and the API server are removed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portico_api::k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use portico_api::k8s_openapi::api::core::v1::Node;
use portico_api::kube::Client;
use portico_api::kube::api::{Api, Patch, PatchParams};
use portico_api::names;
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{PodNetwork, Process};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conformance::local_cluster::{api::Writer, apply_crds, client_from, kubelet, processes};

/// The namespace of the installation.
pub const NAMESPACE: &str = "portico-system";

/// The GatewayClass dev-cluster creates.
pub const GATEWAY_CLASS: &str = "portico";

/// Time allowed for the start: CRDs established, binaries up.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How often the workloads' statuses are brought in line with the processes.
const SUPERVISE: Duration = Duration::from_millis(500);

/// The operator's debounce.
const OPERATOR_DEBOUNCE: Duration = Duration::from_millis(100);

/// The chart version the objects carry (`helm.sh/chart`), the CLI's own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error("dev-cluster: {0}")]
    Start(String),
}

/// How `portico dev-cluster` runs.
#[derive(Debug, Clone)]
pub struct DevClusterConfig {
    /// A real API server; `None`: the in-memory test server.
    pub kubeconfig: Option<PathBuf>,
    /// Where to write the kubeconfig of the test server.
    pub kubeconfig_out: Option<PathBuf>,
    /// Written (JSON, see the module doc) once everything is up.
    pub ready_file: Option<PathBuf>,
    /// Gateway API CRDs (a folder of YAML files).
    pub crds: Option<PathBuf>,
}

/// A component process and the workload that stands for it.
struct Component {
    name: &'static str,
    kind: &'static str,
    process: Option<Process>,
    alive: bool,
    /// The status last written.
    written: Option<Value>,
}

/// Runs the cluster until `shutdown`.
pub async fn run(
    config: DevClusterConfig,
    shutdown: CancellationToken,
) -> Result<(), DevClusterError> {
    let fail = DevClusterError::Start;
    let deadline = Instant::now() + START_TIMEOUT;
    if let Some(why) = PodNetwork::unavailable() {
        return Err(fail(format!(
            "pods run in a network namespace, which needs root: {why}"
        )));
    }
    let network = Arc::new(PodNetwork::create().map_err(|e| fail(e.to_string()))?);
    let lb_cidr = format!("10.245.{}.0/24", network.index());
    network
        .route_to_pods(&lb_cidr)
        .map_err(|e| fail(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("portico-dev-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;

    let (server, client, kubeconfig) = match &config.kubeconfig {
        Some(path) => (None, client_from(path).await.map_err(fail)?, path.clone()),
        None => {
            let server = TestApiServer::start()
                .await
                .map_err(|e| fail(format!("starting the test API server: {e}")))?;
            let client = server.client().map_err(|e| fail(e.to_string()))?;
            let path = config
                .kubeconfig_out
                .clone()
                .unwrap_or_else(|| dir.join("kubeconfig"));
            let path = server.kubeconfig(path).map_err(|e| fail(e.to_string()))?;
            (Some(server), client, path)
        }
    };
    let result = serve(
        &config,
        &network,
        client,
        &kubeconfig,
        &lb_cidr,
        deadline,
        shutdown,
    )
    .await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    result
}

async fn serve(
    config: &DevClusterConfig,
    network: &Arc<PodNetwork>,
    client: Client,
    kubeconfig: &Path,
    lb_cidr: &str,
    deadline: Instant,
    shutdown: CancellationToken,
) -> Result<(), DevClusterError> {
    let fail = DevClusterError::Start;
    let mut writer = Writer::new(client.clone());
    apply_crds(&mut writer, config.crds.as_deref(), deadline)
        .await
        .map_err(fail)?;
    for namespace in [NAMESPACE, processes::SECRETS_NAMESPACE] {
        writer
            .create_if_missing(&json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
            }))
            .await
            .map_err(fail)?;
    }
    let node_ip = network.host_ip();
    for object in cluster_objects(lb_cidr) {
        writer.apply_until(&object, deadline).await.map_err(fail)?;
    }
    // The node's address: where NodePorts answer (the host, on the pod network).
    Api::<Node>::all(client.clone())
        .patch_status(
            kubelet::NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": node_ip.to_string()},
                              {"type": "Hostname", "address": kubelet::NODE_NAME}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }})),
        )
        .await
        .map_err(|e| fail(format!("the Node's status: {e}")))?;

    let mut components = Vec::new();
    let started = start_components(kubeconfig, network).await;
    let (cert_sync, operator, proxy, proxy_ip) = match started {
        Ok(s) => s,
        Err(e) => return Err(fail(e)),
    };
    let pids = json!({
        "portico-operator": operator.pid(),
        "portico-proxy": proxy.pid(),
        "portico-cert-sync": cert_sync.pid(),
    });
    for (name, kind, process) in [
        ("portico-operator", "Deployment", operator),
        ("portico-cert-sync", "Deployment", cert_sync),
        ("portico-proxy", "DaemonSet", proxy),
    ] {
        components.push(Component {
            name,
            kind,
            process: Some(process),
            alive: true,
            written: None,
        });
    }
    for object in installation_objects() {
        writer.apply_until(&object, deadline).await.map_err(fail)?;
    }
    let kubelet = kubelet::Kubelet::start(
        client.clone(),
        network.clone(),
        proxy_ip,
        format!("portico_dev_{}_{}", std::process::id(), network.index()),
    );
    supervise(&client, &mut components).await;
    if let Some(path) = &config.ready_file {
        let ready = json!({
            "kubeconfig": kubeconfig,
            "node_ip": node_ip.to_string(),
            "pod_network": network.subnet(),
            "netns": network.name(),
            "proxy_ip": proxy_ip.to_string(),
            "pids": pids,
        });
        std::fs::write(path, format!("{ready:#}\n"))
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    println!(
        "dev cluster ready: KUBECONFIG={} (pods {}, load balancers {lb_cidr}, node {node_ip})",
        kubeconfig.display(),
        network.subnet()
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(SUPERVISE) => supervise(&client, &mut components).await,
        }
    }
    println!("shutting down");
    kubelet.stop().await;
    for component in components.iter_mut().rev() {
        if let Some(process) = component.process.take() {
            processes::write_log(&std::env::temp_dir(), component.name, &process);
            if let Err(error) = process.stop(Duration::from_secs(10)).await {
                tracing::warn!(%error, "stopping {}", component.name);
            }
        }
    }
    Ok(())
}

/// cert-sync, the operator and the proxy (in the pod network), and the proxy's IP.
async fn start_components(
    kubeconfig: &Path,
    network: &PodNetwork,
) -> Result<(Process, Process, Process, Ipv4Addr), String> {
    let cert_sync = processes::start_cert_sync(kubeconfig).await?;
    let (operator, config_addr) =
        processes::start_operator(kubeconfig, network.host_ip(), OPERATOR_DEBOUNCE).await?;
    let proxy_ip = network.allocate().map_err(|e| e.to_string())?;
    let proxy = processes::start_proxy(network, proxy_ip, config_addr).await?;
    Ok((cert_sync, operator, proxy, proxy_ip))
}

/// Notices component exits and writes the workloads' statuses.
async fn supervise(client: &Client, components: &mut [Component]) {
    for component in components.iter_mut() {
        if let Some(process) = component.process.as_mut()
            && let Ok(status) = process.wait_exit(Duration::ZERO).await
        {
            tracing::warn!(component = component.name, %status, "a component exited");
            component.alive = false;
        }
        let ready = i32::from(component.alive);
        let (status, result) = if component.kind == "Deployment" {
            let status = json!({
                "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": ready, "availableReplicas": ready,
                "unavailableReplicas": 1 - ready,
                "conditions": [{"type": "Available",
                                "status": if component.alive { "True" } else { "False" },
                                "reason": if component.alive { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}],
            });
            if component.written.as_ref() == Some(&status) {
                continue;
            }
            let result = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
                .patch_status(
                    component.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .map(|_| ());
            (status, result)
        } else {
            let status = json!({
                "observedGeneration": 1, "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1, "updatedNumberScheduled": 1,
                "numberReady": ready, "numberAvailable": ready,
                "numberUnavailable": 1 - ready, "numberMisscheduled": 0,
            });
            if component.written.as_ref() == Some(&status) {
                continue;
            }
            let result = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
                .patch_status(
                    component.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .map(|_| ());
            (status, result)
        };
        match result {
            Ok(()) => component.written = Some(status),
            Err(error) => tracing::debug!(%error, component = component.name, "workload status"),
        }
    }
}

/// The cluster-wide objects: GatewayClass, LB-IPAM pool, the Node.
fn cluster_objects(lb_cidr: &str) -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS, "labels": labels("gateway-class")},
            "spec": {"controllerName": names::CONTROLLER_NAME},
        }),
        json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": names::kind::LOAD_BALANCER_IP_POOL,
            "metadata": {"name": "portico-dev", "labels": labels("lb-ipam")},
            "spec": {"blocks": [{"cidr": lb_cidr}]},
        }),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": kubelet::NODE_NAME, "labels": {"kubernetes.io/hostname": kubelet::NODE_NAME}},
        }),
    ]
}

/// What the Helm chart installs in `portico-system` (that runs here).
fn installation_objects() -> Vec<Value> {
    let workload = |kind: &str, name: &str, component: &str, image: &str| {
        let selector = json!({"app.kubernetes.io/name": name});
        json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(component)},
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"containers": [{
                        "name": component,
                        "image": format!("portico/{image}:{VERSION}"),
                    }]},
                },
            },
        })
    };
    let mut operator = workload("Deployment", "portico-operator", "operator", "operator");
    operator["spec"]["replicas"] = json!(1);
    let mut cert_sync = workload("Deployment", "portico-cert-sync", "cert-sync", "cert-sync");
    cert_sync["spec"]["replicas"] = json!(1);
    let proxy = workload("DaemonSet", "portico-proxy", "proxy", "proxy");
    vec![
        operator,
        cert_sync,
        proxy,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "portico-config", "namespace": NAMESPACE, "labels": labels("config")},
            "data": config_data(),
        }),
    ]
}

/// The `portico-config` keys, as helm/portico/templates/config.yaml writes them with
/// the chart's defaults, for what runs here.
fn config_data() -> Value {
    json!({
        "enable-gateway-api": "true",
        "enable-gateway-api-secrets-sync": "true",
        "gateway-api-secrets-namespace": processes::SECRETS_NAMESPACE,
        "gateway-class": GATEWAY_CLASS,
        "gateway-controller": names::CONTROLLER_NAME,
        "kube-proxy-replacement": "false",
        "k8s-service-host": "",
        "k8s-service-port": "",
        "enable-agent": "false",
        "enable-gateway-steering": "false",
        "enable-lb-ipam": "true",
        "enable-l2-announcements": "false",
        "l2-announcements-interfaces": "",
        "proxy-daemonset": "true",
        "proxy-host-network": "false",
        "operator-replicas": "1",
        "operator-config-address": "http://portico-operator.portico-system.svc:18000",
    })
}

/// The chart's common labels.
fn labels(component: &str) -> Value {
    json!({
        "helm.sh/chart": format!("portico-{VERSION}"),
        "app.kubernetes.io/part-of": "portico",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": VERSION,
        "app.kubernetes.io/managed-by": "portico-dev-cluster",
    })
}
