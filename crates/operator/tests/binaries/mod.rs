//! Whole-binary fault tests' harness: the test API server standing in for the cluster,
//! `portico-operator` processes on the host, and a node (network namespace) where
//! `portico-proxy` and the echo pods run.
//!
//! ```text
//!   test ── kube::Client ──> TestApiServer (127.0.0.1)  <── portico-operator (--kubeconfig)
//!     │                                                       │ config server on host_ip
//!     │ HTTP (Load)                                           │ (gRPC, plaintext)
//!     └──> node_ip:<proxy port> ── portico-proxy (in Node) <──┘
//!                                    └──> echo pod node_ip:8080 (EndpointSlice)
//! ```
//!
//! The scenario is kube_common's (Gateway `apps/web`, HTTPRoute `echo` to Service
//! `echo`) with the EndpointSlice on the node, plus a LoadBalancerIPPool so that the
//! Gateway's Service gets an address (LB-IPAM) and the Gateway is programmed.
//!
//! `portico-proxy` is another package's binary, which cargo does not hand to this
//! package's tests: it is taken from the target folder (`cargo build -p portico-proxy`
//! puts it there; a workspace build or test does too).

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

pub mod node;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use kube::{Api, Client};
use portico_api::k8s::Service;
use portico_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use portico_echo::EchoReport;
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{HttpClient, Process};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kube_common::{SCENARIO, apply, crds_dir};
pub use node::Node;

/// How long the operators' Lease lasts without renewal, and how often it is renewed.
pub const LEASE_DURATION: &str = "3s";
pub const LEASE_RETRY: Duration = Duration::from_millis(500);
/// Bound on every wait for the binaries to do something.
pub const WAIT: Duration = Duration::from_secs(30);

/// A pool for LB-IPAM (TEST-NET-2: never routed).
pub const POOL: &str = r#"
apiVersion: portico.dev/v1alpha1
kind: LoadBalancerIPPool
metadata:
  name: test
spec:
  blocks:
  - start: 198.51.100.10
    stop: 198.51.100.20
"#;

/// The scenario with its echo endpoint on `node`, and the address pool.
pub fn scenario(node: &Node) -> String {
    format!(
        "{}\n---\n{POOL}",
        SCENARIO.replace("10.1.2.3", &node.node_ip.to_string())
    )
}

/// The test API server with the Gateway API and Portico CRDs, and a kubeconfig file
/// for the operator processes.
pub struct Cluster {
    pub server: TestApiServer,
    pub client: Client,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

impl Cluster {
    pub async fn start() -> Self {
        let server = TestApiServer::start().await.unwrap();
        server.apply_crds_from(crds_dir()).unwrap();
        server
            .apply_crds_from(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/crds"))
            .unwrap();
        let dir = TempDir::new().unwrap();
        let kubeconfig = server.kubeconfig(dir.path().join("kubeconfig")).unwrap();
        let client = server.client().unwrap();
        Self {
            server,
            client,
            kubeconfig,
            _dir: dir,
        }
    }

    pub fn apply(&self, yaml: &str) {
        apply(&self.server, yaml);
    }

    /// Starts `portico-operator` as `identity` (Lease in `default`, LB-IPAM on, metrics
    /// on 127.0.0.1:0) with its config server on `config_listen` (port 0: any), and
    /// waits until both ports are bound.
    pub async fn operator(&self, identity: &str, config_listen: SocketAddr) -> OperatorProcess {
        self.operator_with(identity, config_listen, &[]).await
    }

    /// [`Cluster::operator`] with more flags.
    pub async fn operator_with(
        &self,
        identity: &str,
        config_listen: SocketAddr,
        flags: &[&str],
    ) -> OperatorProcess {
        let listen = config_listen.to_string();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico-operator"));
        command
            .args(["--kubeconfig".as_ref(), self.kubeconfig.as_os_str()])
            .args(["--identity", identity, "--lease-namespace", "default"])
            .args(["--lease-duration", LEASE_DURATION])
            .args(["--lease-retry-period", "500ms", "--debounce", "20ms"])
            .args(["--config-listen", &listen, "--insecure"])
            .args([
                "--metrics-listen",
                "127.0.0.1:0",
                "--lb-ipam",
                "--log",
                "info",
            ])
            .args(flags)
            .env("NO_COLOR", "1");
        let process = Process::spawn_command(command).unwrap();
        let config_addr = listening(&process, "config server listening").await;
        let metrics_addr = listening(&process, "metrics and health listening").await;
        OperatorProcess {
            process,
            identity: identity.to_owned(),
            config_addr,
            metrics_addr,
        }
    }

    /// The port of the node's proxy that serves `port` of Gateway `apps/<gateway>`: its
    /// Service's targetPort, once the operator has made the Service.
    pub async fn proxy_port(&self, gateway: &str, port: i32) -> u16 {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "apps");
        let name = format!("portico-gateway-{gateway}");
        portico_testkit::eventually(WAIT, || async {
            let service = services.get(&name).await.map_err(|e| e.to_string())?;
            let target = service
                .spec
                .and_then(|s| s.ports)
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.port == port)
                .and_then(|p| p.target_port);
            match target {
                Some(IntOrString::Int(p)) => u16::try_from(p).map_err(|e| e.to_string()),
                other => Err(format!("{name} port {port}: targetPort {other:?}")),
            }
        })
        .await
        .unwrap()
    }

    /// The uid of Gateway `apps/<gateway>`'s Service.
    pub async fn service_uid(&self, gateway: &str) -> String {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "apps");
        services
            .get(&format!("portico-gateway-{gateway}"))
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    }
}

/// A `portico-operator` process and the ports it bound.
pub struct OperatorProcess {
    pub process: Process,
    pub identity: String,
    pub config_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
}

impl OperatorProcess {
    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = HttpClient::http1(self.metrics_addr)
            .get(None, "/metrics")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// The value of an unlabelled counter or gauge in `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// How many status patches this replica logged.
    pub fn status_patches(&self) -> usize {
        self.process
            .lines()
            .iter()
            .filter(|l| l.text.contains("status: patched"))
            .count()
    }
}

/// Waits for the log line containing `message` and returns its `addr` field.
async fn listening(process: &Process, message: &str) -> SocketAddr {
    let line = process.wait_for_line(message, WAIT).await.unwrap();
    field(&line, "addr")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr in {line:?}"))
}

/// The value of `name=value` in a tracing log line.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

/// The `portico-proxy` binary, from the target folder this test was built in.
pub fn proxy_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/portico-proxy
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("portico-proxy"))
        .unwrap();
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p portico-proxy)",
        bin.display()
    );
    bin
}

/// Starts `portico-proxy` on `node` as node `name`, following the operator at
/// `operator` (it keeps retrying while that is down, every 500 ms at most).
pub fn proxy(node: &Node, name: &str, operator: SocketAddr) -> Process {
    proxy_with(node, name, operator, "127.0.0.1:0", Duration::from_secs(1))
}

/// [`proxy`] with its admin endpoint (`/metrics`) on `admin` and a drain timeout.
pub fn proxy_with(
    node: &Node,
    name: &str,
    operator: SocketAddr,
    admin: &str,
    drain_timeout: Duration,
) -> Process {
    let url = format!("http://{operator}");
    let drain = format!("{}ms", drain_timeout.as_millis());
    node.spawn(
        &proxy_binary(),
        &[
            "--operator",
            &url,
            "--insecure",
            "--node",
            name,
            "--admin",
            admin,
            "--connect-timeout",
            "1s",
            "--reconnect-max",
            "500ms",
            "--drain-timeout",
            &drain,
            "--log",
            "info",
        ],
    )
}

/// What a [`Load`] saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub ok: u64,
    /// Each failed request: when (since the start) and why.
    pub failures: Vec<(Duration, String)>,
    /// The `x-portico-*` request headers the latest answer reported (echo reflects what
    /// it received): which config the proxy served.
    pub last_headers: Vec<String>,
    /// Answers per echo pod.
    pub pods: BTreeMap<String, u64>,
}

/// A request loop through a proxy: one GET every `every`, each on a new connection,
/// until stopped (at most `LOAD_MAX`).
pub struct Load {
    stop: CancellationToken,
    progress: watch::Receiver<LoadReport>,
    task: JoinHandle<()>,
}

/// The longest a load runs, whatever the test does.
const LOAD_MAX: Duration = Duration::from_secs(120);

impl Load {
    pub fn start(addr: SocketAddr, every: Duration) -> Self {
        let stop = CancellationToken::new();
        let (tx, progress) = watch::channel(LoadReport::default());
        let tx = Arc::new(tx);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let started = Instant::now();
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while started.elapsed() < LOAD_MAX {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let http = HttpClient::http1(addr).with_timeout(Duration::from_secs(2));
                    let result = http.get(Some("web.example.com"), "/load").await;
                    tx.send_modify(|r| match result {
                        Ok((StatusCode::OK, _, body)) => {
                            r.ok += 1;
                            let report = serde_json::from_slice::<EchoReport>(&body).ok();
                            r.last_headers =
                                report.as_ref().map(portico_headers).unwrap_or_default();
                            if let Some(report) = report {
                                *r.pods.entry(report.pod).or_default() += 1;
                            }
                        }
                        Ok((status, _, body)) => r.failures.push((
                            started.elapsed(),
                            format!("{status}: {}", String::from_utf8_lossy(&body)),
                        )),
                        Err(e) => r.failures.push((started.elapsed(), e.to_string())),
                    });
                }
            }
        });
        Self {
            stop,
            progress,
            task,
        }
    }

    /// What it saw so far.
    pub fn report(&self) -> LoadReport {
        self.progress.borrow().clone()
    }

    /// Waits until `more` requests more than now have succeeded (a span of traffic,
    /// rather than of time); fails after [`WAIT`].
    pub async fn succeeded(&mut self, more: u64) {
        let target = self.progress.borrow().ok + more;
        let reached = tokio::time::timeout(WAIT, self.progress.wait_for(|r| r.ok >= target));
        assert!(
            matches!(reached.await, Ok(Ok(_))),
            "load did not reach {target} answers: {:?}",
            self.report()
        );
    }

    /// Waits until the answers show `header` (sent by the proxy to the echo pod).
    pub async fn shows(&mut self, header: &str) {
        self.shows_within(header, WAIT).await;
    }

    /// [`Load::shows`], failing after `wait`.
    pub async fn shows_within(&mut self, header: &str, wait: Duration) {
        let reached = tokio::time::timeout(
            wait,
            self.progress
                .wait_for(|r| r.last_headers.iter().any(|h| h == header)),
        );
        assert!(
            matches!(reached.await, Ok(Ok(_))),
            "answers never showed {header}: {:?}",
            self.report()
        );
    }

    pub async fn finish(self) -> LoadReport {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        self.progress.borrow().clone()
    }
}

/// "name: value" of each `X-Portico-*` header the echo pod reported receiving.
fn portico_headers(report: &EchoReport) -> Vec<String> {
    report
        .headers
        .iter()
        .filter(|(name, _)| name.to_ascii_lowercase().starts_with("x-portico-"))
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| format!("{}: {v}", name.to_ascii_lowercase()))
        })
        .collect()
}
