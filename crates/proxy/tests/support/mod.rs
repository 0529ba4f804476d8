//! Test support: backends (an echo server, a scripted one, one that never answers, an
//! upgrade echo), config builders, a client, and an "eventually" helper. Everything
//! binds 127.0.0.1 port 0.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use portico_api::config::v1 as pb;
use portico_proxy::{ProxyHandle, ProxyOptions};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

// ---------------------------------------------------------------------------------------
// Echo backend

/// An HTTP/1.1 + h2c server answering every request with JSON describing it:
/// `{"server", "method", "path", "version", "authority", "headers": {name: [values]},
/// "body"}`, and a response header `x-echo-server: <name>`. `?sleep_ms=N` delays the
/// answer, to have a request in flight.
pub(crate) struct Echo {
    pub(crate) addr: SocketAddr,
    /// Requests that reached this backend (counted on arrival, before any sleep).
    received: Arc<AtomicUsize>,
    /// The JSON of every request answered, in order.
    seen: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    pub(crate) async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name: Arc<str> = name.into();
        let received = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let counter = received.clone();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                let counter = counter.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(name.clone(), log.clone(), req)
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            seen,
            task,
        }
    }

    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The requests answered so far, as the JSON each was answered with.
    pub(crate) fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests reached this backend.
    pub(crate) async fn wait_received(&self, n: usize) {
        eventually(Duration::from_secs(5), || async {
            (self.received() >= n).then_some(())
        })
        .await;
    }

    pub(crate) fn endpoint(&self) -> pb::Endpoint {
        pb::Endpoint {
            address: self.addr.ip().to_string(),
            port: u32::from(self.addr.port()),
            ready: true,
            pod: String::new(),
        }
    }
}

async fn echo(
    name: Arc<str>,
    log: Arc<Mutex<Vec<Value>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let sleep_ms = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("sleep_ms="))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, v) in req.headers() {
        headers
            .entry(n.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("<body error: {e}>"),
    };
    let body = json!({
        "server": &*name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", parts.version),
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "headers": headers,
        "body": body,
    });
    log.lock().unwrap().push(body.clone());
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("x-echo-server", &*name)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

// ---------------------------------------------------------------------------------------
// Config builders

pub(crate) fn cluster(name: &str, echoes: &[&Echo]) -> pb::Cluster {
    pb::Cluster {
        name: name.to_owned(),
        endpoints: echoes.iter().map(|e| e.endpoint()).collect(),
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: None,
    }
}

pub(crate) fn to(cluster: &str, weight: u32) -> pb::WeightedBackend {
    pb::WeightedBackend {
        weight,
        target: Some(pb::weighted_backend::Target::Cluster(cluster.to_owned())),
        filters: vec![],
    }
}

pub(crate) fn invalid(weight: u32, reason: &str) -> pb::WeightedBackend {
    pb::WeightedBackend {
        weight,
        target: Some(pb::weighted_backend::Target::Invalid(reason.to_owned())),
        filters: vec![],
    }
}

pub(crate) fn prefix_route(
    name: &str,
    prefix: &str,
    backends: Vec<pb::WeightedBackend>,
) -> pb::Route {
    pb::Route {
        name: name.to_owned(),
        route: "test/route".to_owned(),
        r#match: Some(pb::RouteMatch {
            path: Some(pb::PathMatch {
                kind: pb::path_match::Kind::Prefix as i32,
                value: prefix.to_owned(),
            }),
            ..Default::default()
        }),
        filters: vec![],
        backends,
        timeouts: None,
        grpc: false,
        retry: None,
    }
}

/// A virtual host answering any hostname with `routes`.
pub(crate) fn any_host(routes: Vec<pb::Route>) -> pb::VirtualHost {
    vhost("test/gw/http", "", routes)
}

// The update is needless until the proto grows a field.
#[allow(clippy::needless_update)]
pub(crate) fn vhost(name: &str, hostname: &str, routes: Vec<pb::Route>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        hostname: hostname.to_owned(),
        host_routes: vec![pb::HostRoutes {
            hostname: String::new(),
            routes,
        }],
        // Fields added to the proto later keep their defaults here.
        ..Default::default()
    }
}

/// An HTTP listener on 127.0.0.1, port 0 (any free port).
pub(crate) fn listener(name: &str, vhosts: Vec<pb::VirtualHost>) -> pb::Listener {
    listener_on(name, 0, vhosts)
}

pub(crate) fn listener_on(name: &str, port: u16, vhosts: Vec<pb::VirtualHost>) -> pb::Listener {
    pb::Listener {
        name: name.to_owned(),
        address: "127.0.0.1".to_owned(),
        port: u32::from(port),
        protocol: pb::Protocol::Http as i32,
        virtual_hosts: vhosts,
        gateway_port: 0,
        stream_routes: vec![],
    }
}

pub(crate) fn config(
    version: &str,
    listeners: Vec<pb::Listener>,
    clusters: Vec<pb::Cluster>,
) -> pb::Config {
    pb::Config {
        version: version.to_owned(),
        listeners,
        clusters,
    }
}

/// Options for tests: short timeouts so that failures show fast.
pub(crate) fn options() -> ProxyOptions {
    ProxyOptions {
        connect_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(5),
        ..ProxyOptions::default()
    }
}

pub(crate) async fn start(config: pb::Config) -> ProxyHandle {
    portico_proxy::start(options(), config).await.unwrap()
}

// ---------------------------------------------------------------------------------------
// Client

#[derive(Clone)]
pub(crate) struct TestClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The echo server that answered.
    pub(crate) fn server(&self) -> String {
        self.json()["server"].as_str().unwrap().to_owned()
    }

    /// The values of request header `name` as the echo server saw it.
    pub(crate) fn seen_header(&self, name: &str) -> Vec<String> {
        self.json()["headers"][name]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }
}

impl TestClient {
    pub(crate) fn http1() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub(crate) fn h2c() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub(crate) async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> Reply {
        self.send(addr, host, path, &[]).await
    }

    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_send(addr, host, path, headers).await.unwrap()
    }

    pub(crate) async fn try_send(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        self.try_request("GET", addr, host, path, headers, Bytes::new())
            .await
    }

    /// Any method, with a body.
    pub(crate) async fn request(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_request(method, addr, host, path, headers, body.into())
            .await
            .unwrap()
    }

    async fn try_request(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        // HTTP/1 carries the host in the Host header; HTTP/2 in :authority, which
        // hyper builds from the URI, so put the host there and connect by address.
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if !host.is_empty() {
            req = req.header("host", host);
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = self
            .inner
            .request(req.body(Full::new(body)).unwrap())
            .await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Eventually

/// Polls `check` until it returns `Some`, at most `within`, 20 ms apart.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Other backends

/// An HTTP/1.1 server answering with the statuses of its script, one per request (200
/// once the script is used up), with the request's body as its body. Counts requests.
pub(crate) struct Scripted {
    pub(crate) addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub(crate) async fn start(statuses: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let script = script.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(body))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    pub(crate) fn cluster(&self, name: &str) -> pb::Cluster {
        pb::Cluster {
            name: name.to_owned(),
            endpoints: vec![endpoint(self.addr)],
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: None,
        }
    }
}

/// A server that accepts connections and never answers: a stuck backend.
pub(crate) struct BlackHole {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn cluster(&self, name: &str) -> pb::Cluster {
        pb::Cluster {
            name: name.to_owned(),
            endpoints: vec![endpoint(self.addr)],
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: None,
        }
    }
}

/// An HTTP/1.1 server that accepts any upgrade (101 Switching Protocols) and then
/// echoes every byte back; a plain request gets 200 "no upgrade".
pub(crate) struct UpgradeEcho {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UpgradeEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UpgradeEcho {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|mut req: Request<Incoming>| async move {
                        let Some(protocol) = req.headers().get("upgrade").cloned() else {
                            return Ok::<_, Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"no upgrade"),
                            )));
                        };
                        let on_upgrade = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(upgraded) = on_upgrade.await else {
                                return;
                            };
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 1024];
                            loop {
                                match tokio::io::AsyncReadExt::read(&mut io, &mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if tokio::io::AsyncWriteExt::write_all(&mut io, &buf[..n])
                                            .await
                                            .is_err()
                                        {
                                            break;
                                        }
                                    }
                                }
                            }
                        });
                        Ok(Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", protocol)
                            .body(Full::default())
                            .unwrap())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    pub(crate) fn cluster(&self, name: &str) -> pb::Cluster {
        pb::Cluster {
            name: name.to_owned(),
            endpoints: vec![endpoint(self.addr)],
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: None,
        }
    }
}

fn endpoint(addr: SocketAddr) -> pb::Endpoint {
    pb::Endpoint {
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
        ready: true,
        pod: String::new(),
    }
}

/// A route answering `prefix` with `filters` and `backends`.
pub(crate) fn filtered_route(
    name: &str,
    prefix: &str,
    filters: Vec<pb::Filter>,
    backends: Vec<pb::WeightedBackend>,
) -> pb::Route {
    pb::Route {
        filters,
        ..prefix_route(name, prefix, backends)
    }
}

/// A proxy serving `routes` (any host) on a listener configured on `port` but bound to
/// an ephemeral one, with `clusters`.
pub(crate) async fn start_on(
    port: u16,
    routes: Vec<pb::Route>,
    clusters: Vec<pb::Cluster>,
) -> (ProxyHandle, SocketAddr) {
    let proxy = portico_proxy::start(
        ProxyOptions {
            ephemeral_ports: true,
            ..options()
        },
        config(
            "v1",
            vec![listener_on("http", port, vec![any_host(routes)])],
            clusters,
        ),
    )
    .await
    .unwrap();
    let addr = proxy.bound_addrs()["http"];
    (proxy, addr)
}
