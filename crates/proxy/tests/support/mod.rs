//! Test support: a tiny echo backend, config builders, a client, and an "eventually"
//! helper. Everything binds 127.0.0.1 port 0.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
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
/// `{"server", "method", "path", "version", "headers": {name: [values]}}`, and a
/// response header `x-echo-server: <name>`. `?sleep_ms=N` delays the answer, to have a
/// request in flight.
pub(crate) struct Echo {
    pub(crate) addr: SocketAddr,
    /// Requests that reached this backend (counted on arrival, before any sleep).
    received: Arc<AtomicUsize>,
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
        let counter = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(name.clone(), req)
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

async fn echo(name: Arc<str>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let body = json!({
        "server": &*name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "authority": req.uri().authority().map(|a| a.as_str()),
        "headers": headers,
    });
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
    }
}

pub(crate) fn to(cluster: &str, weight: u32) -> pb::WeightedBackend {
    pb::WeightedBackend {
        weight,
        target: Some(pb::weighted_backend::Target::Cluster(cluster.to_owned())),
    }
}

pub(crate) fn invalid(weight: u32, reason: &str) -> pb::WeightedBackend {
    pb::WeightedBackend {
        weight,
        target: Some(pb::weighted_backend::Target::Invalid(reason.to_owned())),
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
    }
}

/// A virtual host answering any hostname with `routes`.
pub(crate) fn any_host(routes: Vec<pb::Route>) -> pb::VirtualHost {
    vhost("test/gw/http", "", routes)
}

pub(crate) fn vhost(name: &str, hostname: &str, routes: Vec<pb::Route>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        hostname: hostname.to_owned(),
        host_routes: vec![pb::HostRoutes {
            hostname: String::new(),
            routes,
        }],
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
        // HTTP/1 carries the host in the Host header; HTTP/2 in :authority, which
        // hyper builds from the URI, so put the host there and connect by address.
        let mut req = Request::builder().uri(format!("http://{addr}{path}"));
        if !host.is_empty() {
            req = req.header("host", host);
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = self
            .inner
            .request(req.body(Full::default()).unwrap())
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
