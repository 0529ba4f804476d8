//! Control plane on the local-cluster target: `portico dev-cluster` runs the in-memory API
//! server, `portico-operator` and `portico-proxy` as separate processes (the proxy in a
//! pod network of its own), and this driver creates Gateways and HTTPRoutes through the
//! API server, as `kubectl` would.
//!
//! ```text
//!   CPU 0: portico dev-cluster ── API server (in process), kubelet
//!            ├── portico-operator (watches the API server, serves the proxy's config)
//!            └── portico-proxy    (pod network)
//!   CPU 1: driver ── POST / GET ──> API server
//!                 └── probes and load ──> the Gateway's address (LB-IPAM):18090
//!                       ── DNAT (dev-cluster's kube-proxy rules) ──> portico-proxy
//!                       ──> backend on the node address
//! ```
//!
//! Measured: how long a new HTTPRoute (a POST) takes to answer 200 through the proxy
//! with 10, 100, 1,000, 5,000 routes present, idle and under fixed-rate load; how long
//! 1,000 routes created at once take until every one has `Accepted` in
//! `status.parents[]` and the Gateway's listener reports `attachedRoutes` 1,000 (both
//! read through the API server); CPU and peak RSS of the operator and of the proxy
//! separately at each size. The sizes are reached by adding routes to one cluster.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::config::{self, NAMESPACE};
use crate::load::{self, Outcome};
use crate::peers::{self, Kind, Peer, Proc};
use crate::{progress, stats};

/// The Gateway the sizes are measured on, and its listener port.
const GATEWAY: &str = "gw";
const PORT: u16 = 18090;
/// The Gateway the 1,000 routes created at once attach to.
const ATTACH_GATEWAY: &str = "gw-attach";
const ATTACH_PORT: u16 = 18091;
/// Route numbers of the attach test's routes (hosts of their own).
const ATTACH_BASE: usize = 2_000_000;
/// Route numbers of the routes added while measuring.
const NEW: usize = 1_000_000;
/// The backend's port on the node address (the proxy reaches the host there).
const BACKEND_PORT: u16 = 19010;
/// POSTs outstanding at once when routes are created in bulk (one connection each), so
/// that the time to create them is the API server's and not this client's round trips
/// (the default of `--posts-in-flight`).
pub(crate) const IN_FLIGHT: usize = 48;
/// The operator's debounce in dev-cluster (part of every time measured here).
pub(crate) const OPERATOR_DEBOUNCE_MS: u64 = 100;

#[derive(Debug)]
pub(crate) struct ClusterLab {
    pub(crate) dir: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) ticks: u64,
    /// New routes timed per size (idle, and again under load).
    pub(crate) probes: usize,
    /// Requests per second of the background load.
    pub(crate) load_rate: f64,
    /// POSTs outstanding at once in bulk creation.
    pub(crate) in_flight: usize,
}

/// A running dev-cluster and what the driver needs of it.
pub(crate) struct Cluster {
    api: Api,
    /// Where the two Gateways answer (their status address and listener port).
    gw: SocketAddr,
    attach: SocketAddr,
    operator_pid: u32,
    proxy_pid: u32,
    /// Routes `0..routes` exist on [`GATEWAY`].
    routes: usize,
    /// The next route number for a timed new route.
    next_new: usize,
    /// The last bulk creation on [`GATEWAY`]: routes present before, after, and how long
    /// the POSTs took (what [`Cluster::size_time`] extrapolates from).
    last_bulk: Option<(usize, usize, Duration)>,
    // Dropped last: the backend, then dev-cluster (which stops its processes on SIGTERM).
    _backend: Proc,
    _cluster: Proc,
}

/// What `--ready-file` says (crates/portico/src/dev_cluster).
#[derive(Debug, PartialEq)]
struct Ready {
    kubeconfig: PathBuf,
    node_ip: IpAddr,
    proxy_ip: IpAddr,
    operator_pid: u32,
    proxy_pid: u32,
}

fn parse_ready(text: &str) -> anyhow::Result<Ready> {
    let v: Value = serde_json::from_str(text).context("the ready file is not JSON")?;
    let str_of = |key: &str| {
        v[key]
            .as_str()
            .with_context(|| format!("the ready file has no {key}"))
    };
    let pid = |name: &str| {
        v["pids"][name]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .with_context(|| format!("the ready file has no pid for {name}"))
    };
    Ok(Ready {
        kubeconfig: PathBuf::from(str_of("kubeconfig")?),
        node_ip: str_of("node_ip")?.parse().context("node_ip")?,
        proxy_ip: str_of("proxy_ip")?.parse().context("proxy_ip")?,
        operator_pid: pid("portico-operator")?,
        proxy_pid: pid("portico-proxy")?,
    })
}

/// The API server's address from a kubeconfig of the test server (`server: http://A`).
fn server_of(kubeconfig: &str) -> anyhow::Result<SocketAddr> {
    let url = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .context("no server in the kubeconfig")?
        .trim();
    let host = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: the bench talks plain HTTP to the test API server"))?;
    host.trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url}: not an address"))
}

/// The collection an object is created in: `/api/v1/...` or `/apis/<group>/<version>/...`,
/// namespaced when the object has a namespace; the plural is the lowercase kind + `s`
/// (true of every kind the bench creates).
fn collection(object: &Value) -> anyhow::Result<String> {
    let api_version = object["apiVersion"].as_str().context("no apiVersion")?;
    let kind = object["kind"].as_str().context("no kind")?;
    let root = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let plural = format!("{}s", kind.to_lowercase());
    Ok(match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{root}/namespaces/{ns}/{plural}"),
        None => format!("{root}/{plural}"),
    })
}

/// `status.listeners[name].attachedRoutes` of a Gateway.
fn attached_routes(gateway: &Value, listener: &str) -> Option<u64> {
    gateway["status"]["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == listener)?["attachedRoutes"]
        .as_u64()
}

/// The first IP address in a Gateway's `status.addresses`.
fn gateway_address(gateway: &Value) -> Option<IpAddr> {
    gateway["status"]["addresses"]
        .as_array()?
        .iter()
        .find_map(|a| a["value"].as_str()?.parse().ok())
}

/// How many routes of an HTTPRouteList have `Accepted: True` for `gateway` in
/// `status.parents[]`.
fn accepted_routes(list: &Value, gateway: &str) -> usize {
    let accepted = |route: &Value| {
        route["status"]["parents"]
            .as_array()
            .is_some_and(|parents| {
                parents.iter().any(|p| {
                    p["parentRef"]["name"] == gateway
                        && p["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                        })
                })
            })
    };
    list["items"]
        .as_array()
        .map_or(0, |items| items.iter().filter(|r| accepted(r)).count())
}

/// A keep-alive HTTP/1.1 connection to the API server (reconnects when closed).
struct Api {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("addr", &self.addr).finish()
    }
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to the API server at {}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes))?;
        let response = tokio::time::timeout(Duration::from_secs(60), async {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("{method} {path}: no answer within 60 s"))??;
        let (status, body) = response;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Creates `object`; an object that already exists is fine.
    async fn create(&mut self, object: &Value) -> anyhow::Result<()> {
        let path = collection(object)?;
        let (status, answer) = self.call(Method::POST, &path, Some(object)).await?;
        if (200..300).contains(&status) || status == 409 {
            Ok(())
        } else {
            bail!(
                "POST {path} ({}): {status} {}",
                object["metadata"]["name"],
                answer["message"]
            )
        }
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        let (status, value) = self.call(Method::GET, path, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {}", value["message"]);
        Ok(value)
    }
}

/// Creates `objects` through the API server at `addr` with at most `in_flight` POSTs
/// outstanding, one keep-alive connection each; every connection takes the next object
/// not yet taken, so that a slow answer holds up one object, not a fixed share. The first
/// failure stops the others from taking more and is returned. No object is taken after
/// `until`: returns how many were created, always the first ones.
async fn create_all(
    addr: SocketAddr,
    objects: Vec<Value>,
    in_flight: usize,
    until: Option<Instant>,
) -> anyhow::Result<usize> {
    let objects = Arc::new(objects);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..in_flight.clamp(1, objects.len().max(1)) {
        let (objects, next, failed) = (objects.clone(), next.clone(), failed.clone());
        let mut api = Api::new(addr);
        tasks.push(tokio::spawn(async move {
            while !failed.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
                let Some(object) = objects.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                if let Err(e) = api.create(object).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await.context("a writer task").and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        // Taken and never given back: the first `taken` objects, all answered.
        None => Ok(next.load(Ordering::Relaxed).min(objects.len())),
    }
}

fn routes_path() -> String {
    format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes")
}

fn gateway_path(name: &str) -> String {
    format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/gateways/{name}")
}

/// Namespace, the backend's Service and EndpointSlice (on the node address), and the two
/// Gateways.
fn base_objects(node_ip: IpAddr) -> Vec<Value> {
    let gateway = |name: &str, port: u16| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": "portico",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": port}],
            },
        })
    };
    let [service, slice] = config::service_json("be", node_ip, BACKEND_PORT);
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        service,
        slice,
        gateway(GATEWAY, PORT),
        gateway(ATTACH_GATEWAY, ATTACH_PORT),
    ]
}

/// How long creating routes `from..to` should take, from a bulk creation measured in
/// this run (`before..after` routes present, taking `took`). A POST costs more with more
/// routes present (the API server, CPU-bound here, and the operator share one CPU), so
/// the cost is taken as proportional to the routes present: creating `a..b` takes
/// `k (b² - a²) / 2`, `k` from the sample. It decides only whether a size is begun; it
/// can be low (2026-11-27, 48 in flight: 100 -> 1,000 routes in 0.8 s, 1,000 -> 5,000 in
/// 82 s, 4x the estimate), which is why creation also stops at the deadline
/// ([`ClusterLab::size`]'s `until`).
fn bulk_estimate(sample: (usize, usize, Duration), from: usize, to: usize) -> Duration {
    let (before, after, took) = sample;
    let area = |a: usize, b: usize| (b as f64).powi(2) - (a as f64).powi(2);
    let sampled = area(before, after);
    if sampled <= 0.0 || to <= from {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(took.as_secs_f64() * area(from, to) / sampled)
}

/// utime+stime (µs) of the operator and the proxy.
fn cpu_pair(c: &Cluster, ticks: u64) -> (Option<u64>, Option<u64>) {
    (
        peers::cpu_us(c.operator_pid, ticks),
        peers::cpu_us(c.proxy_pid, ticks),
    )
}

fn seconds_between(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    Some(b?.saturating_sub(a?) as f64 / 1e6)
}

impl Cluster {
    fn peer(addr: SocketAddr) -> Peer {
        Peer {
            kind: Kind::Portico,
            proc: None,
            addr,
            lines: Arc::default(),
        }
    }

    /// How long [`ClusterLab::size`] should take to reach `n` routes: the bulk creation
    /// extrapolated from the last one in this run ([`bulk_estimate`]), plus the timed new
    /// routes, the load and the waits; `fallback` before any bulk creation.
    pub(crate) fn size_time(&self, n: usize, probes: usize, fallback: Duration) -> Duration {
        match self.last_bulk {
            Some(last) => {
                bulk_estimate(last, self.routes, n) + Duration::from_secs(20 + 4 * probes as u64)
            }
            None => fallback,
        }
    }

    fn rss(&self, field: &str) -> Value {
        json!({
            "operator_kib": peers::status_kib(self.operator_pid, field),
            "proxy_kib": peers::status_kib(self.proxy_pid, field),
        })
    }
}

impl ClusterLab {
    /// Starts `portico dev-cluster` (on the proxies' CPU), the backend on the node
    /// address, and the base objects; returns once the proxy answers on the Gateway.
    pub(crate) async fn start(&self) -> anyhow::Result<Cluster> {
        progress!("== local cluster: starting portico dev-cluster");
        std::fs::create_dir_all(&self.dir)?;
        let ready_path = self.dir.join("ready.json");
        let _ = std::fs::remove_file(&ready_path);
        let log_path = self.dir.join("dev-cluster.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = peers::pinned(&self.bin_dir.join("portico").display().to_string());
        command
            .env("TOKIO_WORKER_THREADS", "1")
            .args(["--log", "warn", "dev-cluster", "--ready-file"])
            .arg(&ready_path)
            .arg("--kubeconfig-out")
            .arg(self.dir.join("kubeconfig"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let started = Instant::now();
        let mut cluster =
            Proc::spawn("portico dev-cluster", command)?.with_grace(Duration::from_secs(60));
        let log_tail = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_path)
                && let Ok(ready) = parse_ready(&text)
            {
                break ready;
            }
            if !cluster.alive() {
                bail!("portico dev-cluster exited:\n{}", log_tail());
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "portico dev-cluster not ready within 180 s:\n{}",
                    log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let api_addr = server_of(&std::fs::read_to_string(&ready.kubeconfig)?)?;
        let mut backend = Command::new(std::env::current_exe()?);
        backend.args([
            "backend",
            "--port",
            &BACKEND_PORT.to_string(),
            "--ip",
            &ready.node_ip.to_string(),
        ]);
        let backend = Proc::spawn("backend (node address)", backend)?;
        let mut api = Api::new(api_addr);
        for object in base_objects(ready.node_ip) {
            api.create(&object).await?;
        }
        let mut addresses = Vec::new();
        for (name, port) in [(GATEWAY, PORT), (ATTACH_GATEWAY, ATTACH_PORT)] {
            let wait = Instant::now();
            let ip = loop {
                if let Some(ip) = gateway_address(&api.get(&gateway_path(name)).await?) {
                    break ip;
                }
                if wait.elapsed() > Duration::from_secs(60) {
                    bail!("Gateway {name} has no address after 60 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            addresses.push(SocketAddr::new(ip, port));
        }
        let c = Cluster {
            api,
            gw: addresses[0],
            attach: addresses[1],
            operator_pid: ready.operator_pid,
            proxy_pid: ready.proxy_pid,
            routes: 0,
            next_new: NEW,
            last_bulk: None,
            _backend: backend,
            _cluster: cluster,
        };
        // No route yet: the listener answers 404 once the Gateway is programmed.
        for addr in [c.gw, c.attach] {
            peers::wait_for(
                &mut Cluster::peer(addr),
                &config::target(0),
                404,
                Duration::from_secs(120),
            )
            .await?;
        }
        progress!(
            "   ready after {:.1?}: API server {api_addr}, Gateways at {} and {}, proxy {} (pid {}), operator pid {}",
            started.elapsed(),
            c.gw,
            c.attach,
            ready.proxy_ip,
            c.proxy_pid,
            c.operator_pid
        );
        Ok(c)
    }

    /// Proxy and operator memory with the two Gateways and no route.
    pub(crate) async fn idle(&self, c: &Cluster) -> Value {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = c.rss("VmRSS");
        progress!("   idle RSS {rss}");
        rss
    }

    /// `n` routes created at once on the attach Gateway (`in_flight` POSTs outstanding):
    /// how long the POSTs take, then how long from the last POST's answer until the API
    /// server shows the listener's `attachedRoutes` at `n` and every route `Accepted` (the
    /// operator's part, which the goal is about), and from the first POST until the last
    /// route serves. Deletes them afterwards.
    pub(crate) async fn attached(&self, c: &mut Cluster, n: usize) -> anyhow::Result<Value> {
        progress!("== local cluster: {n} routes created at once, attachedRoutes via the API");
        let objects: Vec<Value> = (0..n)
            .map(|i| {
                let mut r = config::route_json(&format!("a{i}"), ATTACH_BASE + i, ATTACH_GATEWAY);
                r["metadata"]["labels"] = json!({"bench": "attach"});
                r
            })
            .collect();
        let start = Instant::now();
        // The last route's first 200, polled beside the status reads.
        let mut probe = Cluster::peer(c.attach);
        let last = config::target(ATTACH_BASE + n - 1);
        let serving = tokio::spawn(async move {
            peers::wait_for(&mut probe, &last, 200, Duration::from_secs(180)).await
        });
        create_all(c.api.addr, objects, self.in_flight, None).await?;
        let created = start.elapsed();
        let list = format!("{}?labelSelector=bench%3Dattach", routes_path());
        let mut attached_at = None;
        let mut accepted_at = None;
        let mut polls = 0u64;
        let (mut last_attached, mut last_accepted) = (None, 0);
        while attached_at.is_none() || accepted_at.is_none() {
            if start.elapsed() > Duration::from_secs(180) {
                bail!(
                    "within 180 s: attachedRoutes {last_attached:?}, {last_accepted} of {n} routes Accepted"
                );
            }
            polls += 1;
            if attached_at.is_none() {
                let gw = c.api.get(&gateway_path(ATTACH_GATEWAY)).await?;
                last_attached = attached_routes(&gw, "http");
                if last_attached == Some(n as u64) {
                    attached_at = Some(start.elapsed());
                }
            }
            // The list of n routes is the expensive read: every 10th poll until the
            // Gateway shows them attached, then every poll.
            if accepted_at.is_none() && (attached_at.is_some() || polls % 10 == 1) {
                last_accepted = accepted_routes(&c.api.get(&list).await?, ATTACH_GATEWAY);
                if last_accepted == n {
                    accepted_at = Some(start.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let serving = serving.await.context("the serving probe")??;
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        // What the goal is about: the operator's part, from the last POST's answer.
        let after_created = |d: Option<Duration>| ms(d.map(|d| d.saturating_sub(created)));
        progress!(
            "   created in {created:.1?} ({} POSTs in flight); from the last create: attachedRoutes {n} after {:.0} ms, all Accepted after {:.0} ms; from the first: last route serving after {serving:.1?} ({polls} polls)",
            self.in_flight,
            after_created(attached_at).unwrap_or(f64::NAN),
            after_created(accepted_at).unwrap_or(f64::NAN),
        );
        // Remove them, so that the sizes below count only their own routes.
        let (status, _) = c.api.call(Method::DELETE, &list, None).await?;
        anyhow::ensure!(status == 200, "DELETE {list}: {status}");
        peers::wait_for(
            &mut Cluster::peer(c.attach),
            &config::target(ATTACH_BASE + n - 1),
            404,
            Duration::from_secs(120),
        )
        .await?;
        Ok(json!({
            "routes": n,
            "posts_in_flight": self.in_flight,
            "created_ms": created.as_secs_f64() * 1000.0,
            "attached_after_created_ms": after_created(attached_at),
            "accepted_after_created_ms": after_created(accepted_at),
            "attached_reported_ms": ms(attached_at),
            "all_accepted_ms": ms(accepted_at),
            "last_route_serving_ms": serving.as_secs_f64() * 1000.0,
        }))
    }

    /// Adds routes up to `n` on the Gateway, then times new routes idle and under load;
    /// CPU and memory of the operator and the proxy over this size's work. No route is
    /// created after `until` (the run's deadline less the time the rest of the size
    /// needs): then the size stops there and says so (`skipped`).
    pub(crate) async fn size(
        &self,
        c: &mut Cluster,
        n: usize,
        until: Option<Instant>,
    ) -> anyhow::Result<Value> {
        progress!("== local cluster: new route with {n} routes present");
        let cpu_start = cpu_pair(c, self.ticks);
        let start = Instant::now();
        let objects: Vec<Value> = (c.routes..n)
            .map(|i| config::route_json(&format!("r{i}"), i, GATEWAY))
            .collect();
        let wanted = objects.len();
        let made = create_all(c.api.addr, objects, self.in_flight, until).await?;
        let created = start.elapsed();
        if made < wanted {
            let reason = format!(
                "the run's deadline: {made} of the {wanted} routes to add created in {:.0} s when the time for creating ran out",
                created.as_secs_f64()
            );
            progress!("   stopped: {reason}");
            c.routes += made;
            return Ok(json!({ "routes": n, "skipped": reason }));
        }
        peers::wait_for(
            &mut Cluster::peer(c.gw),
            &config::target(n - 1),
            200,
            Duration::from_secs(300),
        )
        .await?;
        let bulk_serving = start.elapsed();
        c.last_bulk = Some((c.routes, n, created));
        c.routes = n;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = c.rss("VmRSS");

        let mut idle_ms = Vec::new();
        for _ in 0..self.probes {
            idle_ms.push(self.add_route(c).await?);
        }
        let cpu_before_load = cpu_pair(c, self.ticks);
        let (stop, load) = self.background_load(c);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut load_ms = Vec::new();
        for _ in 0..self.probes {
            load_ms.push(self.add_route(c).await?);
        }
        stop.store(true, Ordering::Relaxed);
        let outcome = load.await.unwrap_or_default();
        let cpu_end = cpu_pair(c, self.ticks);
        let peak = c.rss("VmHWM");
        progress!(
            "   {} routes created in {created:.1?} ({} POSTs in flight), all serving after {bulk_serving:.1?}; new route idle {:.1} ms, under load {:.1} ms (medians); rss {rss}, peak {peak}, load errors {}",
            n,
            self.in_flight,
            stats::median(&idle_ms).unwrap_or(f64::NAN),
            stats::median(&load_ms).unwrap_or(f64::NAN),
            outcome.non_2xx + outcome.socket_errors
        );
        Ok(json!({
            "routes": n,
            "posts_in_flight": self.in_flight,
            "bulk_created_ms": created.as_secs_f64() * 1000.0,
            "bulk_serving_ms": bulk_serving.as_secs_f64() * 1000.0,
            "new_route_idle": stats::summary_ms(&idle_ms),
            "new_route_under_load": stats::summary_ms(&load_ms),
            "load": crate::control::load_json(self.load_rate, &outcome),
            "operator_cpu_s": seconds_between(cpu_start.0, cpu_end.0),
            "proxy_cpu_s": seconds_between(cpu_start.1, cpu_end.1),
            "operator_cpu_s_during_load": seconds_between(cpu_before_load.0, cpu_end.0),
            "proxy_cpu_s_during_load": seconds_between(cpu_before_load.1, cpu_end.1),
            "operator_rss_kib": rss["operator_kib"],
            "proxy_rss_kib": rss["proxy_kib"],
            "operator_peak_rss_kib": peak["operator_kib"],
            "proxy_peak_rss_kib": peak["proxy_kib"],
        }))
    }

    /// POSTs a new route and waits for its first 200 through the proxy; milliseconds.
    async fn add_route(&self, c: &mut Cluster) -> anyhow::Result<f64> {
        let i = c.next_new;
        c.next_new += 1;
        let route = config::route_json(&format!("new-{i}"), i, GATEWAY);
        let start = Instant::now();
        c.api.create(&route).await?;
        peers::wait_for(
            &mut Cluster::peer(c.gw),
            &config::target(i),
            200,
            Duration::from_secs(60),
        )
        .await?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    }

    fn background_load(&self, c: &Cluster) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Outcome>) {
        load::background(c.gw, config::target(0), self.load_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use hyper::body::Incoming;

    /// What the fake API server saw: POSTs outstanding now and at most, names created.
    #[derive(Default)]
    struct Seen {
        in_flight: usize,
        most: usize,
        names: Vec<String>,
    }

    /// An API server on loopback that holds every POST until `gate` of them are
    /// outstanding at once (then answers all, and the rest at once), and answers 500 to
    /// the object named `refuse`, 409 to names starting with `dup`.
    async fn fake_api(gate: usize, refuse: &'static str) -> (SocketAddr, Arc<Mutex<Seen>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (open, opened) = tokio::sync::watch::channel(false);
        let open = Arc::new(open);
        let state = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, open, opened) = (state.clone(), open.clone(), opened.clone());
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (seen, open) = (seen.clone(), open.clone());
                    let mut opened = opened.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let object: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
                        {
                            let mut s = seen.lock().expect("lock");
                            s.in_flight += 1;
                            s.most = s.most.max(s.in_flight);
                            if s.in_flight == gate {
                                let _ = open.send(true);
                            }
                        }
                        let _ = opened.wait_for(|open| *open).await;
                        let status = {
                            let mut s = seen.lock().expect("lock");
                            s.in_flight -= 1;
                            s.names.push(name.clone());
                            match name.as_str() {
                                n if n == refuse => 500,
                                n if n.starts_with("dup") => 409,
                                _ => 201,
                            }
                        };
                        let response = http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"{}")))?;
                        anyhow::Ok(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, seen)
    }

    fn route(name: &str) -> Value {
        config::route_json(name, 1, GATEWAY)
    }

    /// `in_flight` POSTs are outstanding at once and never more; every object is POSTed
    /// once; 409 (already there) is fine. The fake server holds the first POSTs until
    /// `in_flight` are outstanding, so a client with less concurrency would never finish:
    /// the timeout guards against a hang and says so.
    #[tokio::test]
    async fn creates_with_the_bound_in_flight() {
        let (addr, seen) = fake_api(8, "none").await;
        let mut objects: Vec<Value> = (0..100).map(|i| route(&format!("r{i}"))).collect();
        objects.push(route("dup-1"));
        let made =
            tokio::time::timeout(Duration::from_secs(120), create_all(addr, objects, 8, None))
                .await
                .expect("8 POSTs were never outstanding at once")
                .expect("all created");
        assert_eq!(made, 101);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.most, 8);
        let mut names = seen.names.clone();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 101, "each object POSTed once");
    }

    /// A refused object fails the whole creation, with its name in the error.
    #[tokio::test]
    async fn a_refused_object_is_an_error() {
        let (addr, _) = fake_api(4, "r3").await;
        let objects: Vec<Value> = (0..20).map(|i| route(&format!("r{i}"))).collect();
        let e = tokio::time::timeout(Duration::from_secs(120), create_all(addr, objects, 4, None))
            .await
            .expect("4 POSTs were never outstanding at once")
            .expect_err("r3 was refused");
        assert!(format!("{e:#}").contains("500"), "{e:#}");
        assert!(format!("{e:#}").contains("r3"), "{e:#}");
    }

    /// Past the deadline nothing more is POSTed, and the count says so.
    #[tokio::test]
    async fn nothing_is_created_after_the_deadline() {
        let (addr, seen) = fake_api(1, "none").await;
        let objects: Vec<Value> = (0..10).map(|i| route(&format!("r{i}"))).collect();
        let made = create_all(addr, objects, 4, Some(Instant::now()))
            .await
            .expect("no error");
        assert_eq!(made, 0);
        assert!(seen.lock().expect("lock").names.is_empty());
    }

    #[test]
    fn bulk_estimate_grows_with_the_routes_present() {
        // 100 -> 1,000 routes in 11.7 s (the run of 2026-11-27): 1,000 -> 5,000 would
        // take (5000² - 1000²) / (1000² - 100²) times as long.
        let sample = (100, 1000, Duration::from_secs_f64(11.7));
        let e = bulk_estimate(sample, 1000, 5000).as_secs_f64();
        assert!((e - 11.7 * 24.0e6 / 0.99e6).abs() < 0.01, "{e}");
        // The sample itself is reproduced; nothing to create takes nothing.
        let same = bulk_estimate(sample, 100, 1000).as_secs_f64();
        assert!((same - 11.7).abs() < 1e-9, "{same}");
        assert_eq!(bulk_estimate(sample, 5000, 5000), Duration::ZERO);
        assert_eq!(
            bulk_estimate((10, 10, Duration::from_secs(1)), 0, 10),
            Duration::ZERO
        );
    }

    #[test]
    fn ready_file_and_kubeconfig() {
        let ready = parse_ready(
            r#"{"kubeconfig": "/tmp/k", "node_ip": "10.244.3.1", "pod_network": "10.244.3.0/24",
                "netns": "n", "proxy_ip": "10.244.3.2",
                "pids": {"portico-operator": 11, "portico-proxy": 12, "portico-cert-sync": 13}}"#,
        )
        .expect("a ready file");
        assert_eq!(
            ready,
            Ready {
                kubeconfig: PathBuf::from("/tmp/k"),
                node_ip: "10.244.3.1".parse().expect("ip"),
                proxy_ip: "10.244.3.2".parse().expect("ip"),
                operator_pid: 11,
                proxy_pid: 12,
            }
        );
        assert!(parse_ready(r#"{"kubeconfig": "/tmp/k"}"#).is_err());
        let kubeconfig = "clusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:4321\n";
        assert_eq!(
            server_of(kubeconfig).expect("a server"),
            SocketAddr::from(([127, 0, 0, 1], 4321))
        );
        assert!(server_of("clusters:\n- cluster:\n    server: https://10.0.0.1:6443\n").is_err());
    }

    #[test]
    fn collections_of_the_objects_created() {
        let paths: Vec<String> = base_objects("10.0.0.1".parse().expect("ip"))
            .iter()
            .chain(std::iter::once(&config::route_json("r1", 1, GATEWAY)))
            .map(|o| collection(o).expect("a collection"))
            .collect();
        assert_eq!(
            paths,
            [
                "/api/v1/namespaces".to_owned(),
                "/api/v1/namespaces/bench/services".to_owned(),
                "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices".to_owned(),
                "/apis/gateway.networking.k8s.io/v1/namespaces/bench/gateways".to_owned(),
                "/apis/gateway.networking.k8s.io/v1/namespaces/bench/gateways".to_owned(),
                routes_path(),
            ]
        );
    }

    #[test]
    fn attached_and_accepted_from_statuses() {
        let gw = json!({"status": {"listeners": [
            {"name": "https", "attachedRoutes": 3},
            {"name": "http", "attachedRoutes": 1000},
        ]}});
        assert_eq!(attached_routes(&gw, "http"), Some(1000));
        assert_eq!(attached_routes(&gw, "tcp"), None);
        assert_eq!(attached_routes(&json!({}), "http"), None);
        let gw = json!({"status": {"addresses": [{"type": "IPAddress", "value": "10.245.3.0"}]}});
        assert_eq!(gateway_address(&gw), "10.245.3.0".parse().ok());
        assert_eq!(gateway_address(&json!({"status": {}})), None);
        let route = |gateway: &str, status: &str| {
            json!({"status": {"parents": [{
                "parentRef": {"name": gateway},
                "conditions": [{"type": "ResolvedRefs", "status": "True"},
                               {"type": "Accepted", "status": status}],
            }]}})
        };
        let list = json!({"items": [
            route("gw-attach", "True"),
            route("gw-attach", "False"),
            route("other", "True"),
            {"metadata": {"name": "no-status"}},
            route("gw-attach", "True"),
        ]});
        assert_eq!(accepted_routes(&list, "gw-attach"), 2);
        assert_eq!(accepted_routes(&json!({}), "gw-attach"), 0);
    }
}
