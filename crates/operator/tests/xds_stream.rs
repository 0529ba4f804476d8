//! The config stream end to end, in process over real sockets: the operator's config
//! server (`portico_operator::xds`) and the proxy's stream client
//! (`portico_proxy::client`), with traffic through the proxy to an echo backend.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use portico_api::config::v1::{
    Cluster, ClusterProtocol, Config, Endpoint, HostRoutes, Listener, PathMatch, Protocol, Route,
    RouteMatch, VirtualHost, WeightedBackend, path_match, weighted_backend,
};
use portico_api::names::{condition, reason};
use portico_operator::xds::{
    self, ConfigServer, ProxyRecords, ServeConfig, ServerTls, XdsMetrics, status,
};
use portico_proxy::ProxyOptions;
use portico_proxy::client::{self, Client, StreamConfig, StreamStatus, StreamTls};
use portico_testkit::{EchoBackend, HttpClient, eventually};
use portico_translate::{Condition, ConditionStatus, GatewayStatus, ObjectRef, Statuses};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
const CLUSTER: &str = "default/echo:80";

/// One Gateway listener: (config listener name, port, "<namespace>/<gateway>").
type Socket<'a> = (&'a str, u16, &'a str);

fn config(version: &str, sockets: &[Socket<'_>], backend: SocketAddr) -> Config {
    let listeners = sockets
        .iter()
        .map(|(name, port, gateway)| Listener {
            name: (*name).to_owned(),
            address: "127.0.0.1".to_owned(),
            port: u32::from(*port),
            protocol: Protocol::Http as i32,
            virtual_hosts: vec![VirtualHost {
                name: format!("{gateway}/http"),
                hostname: String::new(),
                access_log_disabled: false,
                host_routes: vec![HostRoutes {
                    hostname: String::new(),
                    routes: vec![Route {
                        name: format!("{gateway}/route/rule/0/match/0"),
                        route: "default/route".to_owned(),
                        r#match: Some(RouteMatch {
                            path: Some(PathMatch {
                                kind: path_match::Kind::Prefix as i32,
                                value: "/".to_owned(),
                            }),
                            ..RouteMatch::default()
                        }),
                        backends: vec![WeightedBackend {
                            weight: 1,
                            target: Some(weighted_backend::Target::Cluster(CLUSTER.to_owned())),
                            filters: vec![],
                        }],
                        ..Route::default()
                    }],
                }],
                tls: None,
            }],
            gateway_port: 0,
            stream_routes: vec![],
        })
        .collect();
    Config {
        version: version.to_owned(),
        listeners,
        clusters: vec![Cluster {
            name: CLUSTER.to_owned(),
            endpoints: vec![Endpoint {
                address: backend.ip().to_string(),
                port: u32::from(backend.port()),
                ready: true,
                pod: "echo-0".to_owned(),
            }],
            protocol: ClusterProtocol::Http1 as i32,
            tls: None,
        }],
    }
}

/// The operator's side: a config server fed by a watch channel.
struct Operator {
    addr: SocketAddr,
    configs: watch::Sender<Option<Arc<Config>>>,
    records: ProxyRecords,
    metrics: XdsMetrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Operator {
    async fn start(listen: SocketAddr, tls: Option<ServerTls>, initial: Config) -> Self {
        let (configs, rx) = watch::channel(Some(Arc::new(initial)));
        let records = ProxyRecords::default();
        let metrics = XdsMetrics::unregistered();
        let shutdown = CancellationToken::new();
        let server = ConfigServer::new(rx, records.clone(), metrics.clone(), shutdown.clone());
        let serving = xds::serve(&ServeConfig { listen, tls }, server, shutdown.clone())
            .await
            .unwrap();
        Self {
            addr: serving.addr,
            configs,
            records,
            metrics,
            shutdown,
            task: serving.task,
        }
    }

    fn publish(&self, config: Config) {
        self.configs.send_replace(Some(Arc::new(config)));
    }

    /// Stops the server, its streams with it, as a crashing operator would.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn stream_config(operator: &str, tls: Option<StreamTls>) -> StreamConfig {
    StreamConfig {
        operator: operator.to_owned(),
        node: "node-1".to_owned(),
        gateways: vec![],
        tls,
        connect_timeout: Duration::from_secs(2),
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
    }
}

async fn proxy(operator: &str, tls: Option<StreamTls>) -> Client {
    let options = ProxyOptions {
        reject_unbindable: true,
        drain_timeout: Duration::from_secs(2),
        ..ProxyOptions::default()
    };
    client::start(stream_config(operator, tls), options, None)
        .await
        .unwrap()
}

/// Waits until the proxy's stream status satisfies `f`.
async fn until(client: &Client, what: &str, f: impl Fn(&StreamStatus) -> bool) -> StreamStatus {
    let mut status = client.status();
    let result = tokio::time::timeout(WAIT, status.wait_for(|s| f(s))).await;
    match result {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("{what}: not reached; status {:?}", client.status().borrow()),
    }
}

/// An operator serving v1 (listener "a" of default/gw) in plaintext, and a proxy that
/// applied it.
async fn serving_v1(echo: &EchoBackend) -> (Operator, Client) {
    let v1 = config("v1", &[("a", 0, "default/gw")], echo.addr());
    let operator = Operator::start("127.0.0.1:0".parse().unwrap(), None, v1).await;
    let client = proxy(&format!("http://{}", operator.addr), None).await;
    until(&client, "v1 applied", |s| {
        s.applied.as_deref() == Some("v1")
    })
    .await;
    (operator, client)
}

async fn get_ok(addr: SocketAddr) {
    let http = HttpClient::http1(addr);
    let (status, _, _) = eventually(WAIT, || http.get(Some("example.com"), "/"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn config_arrives_traffic_flows_and_the_ack_is_recorded() {
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let (operator, client) = serving_v1(&echo).await;
    get_ok(client.bound_addrs()["a"]).await;

    let records = operator.records.clone();
    let record = eventually(WAIT, || async {
        records
            .get("node-1")
            .filter(|r| r.acked.as_deref() == Some("v1"))
    })
    .await
    .unwrap();
    assert!(record.connected);
    assert_eq!(record.pushed.as_deref(), Some("v1"));
    assert_eq!(operator.metrics.pushes.get(), 1);
    assert_eq!(operator.metrics.acks.get(), 1);
    assert_eq!(operator.metrics.push_latency.get_sample_count(), 1);
    assert_eq!(operator.metrics.connected.get(), 1);

    // A newer config replaces it; an unchanged one is not pushed again.
    operator.publish(config(
        "v2",
        &[("a", 0, "default/gw"), ("b", 0, "default/gw")],
        echo.addr(),
    ));
    until(&client, "v2 applied", |s| {
        s.applied.as_deref() == Some("v2")
    })
    .await;
    get_ok(client.bound_addrs()["b"]).await;
    operator.publish(config(
        "v2",
        &[("a", 0, "default/gw"), ("b", 0, "default/gw")],
        echo.addr(),
    ));
    operator.publish(config("v3", &[("b", 0, "default/gw")], echo.addr()));
    until(&client, "v3 applied", |s| {
        s.applied.as_deref() == Some("v3")
    })
    .await;
    assert_eq!(operator.metrics.pushes.get(), 3);
    assert_eq!(client.bound_addrs().keys().collect::<Vec<_>>(), ["b"]);

    client.shutdown().await;
    eventually(WAIT, || async { (records.connected() == 0).then_some(()) })
        .await
        .unwrap();
    operator.stop().await;
}

#[tokio::test]
async fn a_config_with_a_port_taken_is_nacked_and_the_old_one_keeps_serving() {
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let (operator, client) = serving_v1(&echo).await;
    let a = client.bound_addrs()["a"];

    // Another process holds the port that v2 wants for Gateway other.
    let occupier = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupier.local_addr().unwrap().port();
    let v2 = [("a", 0, "default/gw"), ("b", taken, "default/other")];
    operator.publish(config("v2", &v2, echo.addr()));

    let status = until(&client, "v2 rejected", |s| s.nacks == 1).await;
    let error = status.last_nack.unwrap();
    assert!(error.contains("cannot bind"), "{error}");
    // Nothing of v2 was applied: v1 serves, and only its listener is bound.
    assert_eq!(client.version(), "v1");
    assert_eq!(client.bound_addrs().keys().collect::<Vec<_>>(), ["a"]);
    get_ok(a).await;

    // The NACK reached the operator with the reason and the Gateway it concerns.
    let records = operator.records.clone();
    let record = eventually(WAIT, || async {
        records.get("node-1").filter(|r| r.nack.is_some())
    })
    .await
    .unwrap();
    let nack = record.nack.clone().unwrap();
    assert_eq!(nack.version, "v2");
    assert_eq!(nack.listener, "b");
    assert!(nack.error.contains(&taken.to_string()), "{}", nack.error);
    assert_eq!(nack.gateways, BTreeSet::from(["default/other".to_owned()]));
    assert_eq!(record.acked.as_deref(), Some("v1"));
    assert_eq!(operator.metrics.nacks.get(), 1);

    // ... and becomes Programmed=False, Invalid on that Gateway's status only.
    let mut statuses = Statuses::default();
    for gw in ["gw", "other"] {
        statuses.gateways.insert(
            ObjectRef::new("default", gw),
            GatewayStatus {
                conditions: vec![Condition {
                    type_: condition::PROGRAMMED.to_owned(),
                    status: ConditionStatus::True,
                    reason: reason::PROGRAMMED.to_owned(),
                    message: String::new(),
                    observed_generation: Some(1),
                }],
                ..GatewayStatus::default()
            },
        );
    }
    let rejected = status::rejections(&records.subscribe().borrow());
    status::apply(&mut statuses, &rejected, &Default::default());
    let programmed =
        |gw: &str| statuses.gateways[&ObjectRef::new("default", gw)].conditions[0].clone();
    assert_eq!(programmed("gw").status, ConditionStatus::True);
    let other = programmed("other");
    assert_eq!(
        (other.status, other.reason.as_str()),
        (ConditionStatus::False, reason::INVALID)
    );
    assert!(
        other.message.contains("node-1") && other.message.contains("cannot bind"),
        "{}",
        other.message
    );

    // The port is freed and the next version is accepted; the NACK is cleared.
    drop(occupier);
    operator.publish(config("v3", &v2, echo.addr()));
    until(&client, "v3 applied", |s| {
        s.applied.as_deref() == Some("v3")
    })
    .await;
    get_ok(client.bound_addrs()["b"]).await;
    eventually(WAIT, || async {
        records
            .get("node-1")
            .filter(|r| r.nack.is_none() && r.acked.as_deref() == Some("v3"))
    })
    .await
    .unwrap();

    client.shutdown().await;
    operator.stop().await;
}

#[tokio::test]
async fn traffic_survives_the_operator_and_the_proxy_catches_up_when_it_returns() {
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let (operator, client) = serving_v1(&echo).await;
    let addr = operator.addr;
    let a = client.bound_addrs()["a"];
    get_ok(a).await;

    operator.stop().await;
    until(&client, "disconnected", |s| !s.connected).await;
    // The proxy keeps serving its last good config while the operator is away, through
    // several failed reconnects.
    for _ in 0..3 {
        get_ok(a).await;
    }
    assert_eq!(client.version(), "v1");

    // The operator returns on the same address with a newer config.
    let operator = Operator::start(
        addr,
        None,
        config(
            "v2",
            &[("a", 0, "default/gw"), ("b", 0, "default/gw")],
            echo.addr(),
        ),
    )
    .await;
    let status = until(&client, "v2 applied after reconnect", |s| {
        s.applied.as_deref() == Some("v2")
    })
    .await;
    assert_eq!(status.streams, 2);
    get_ok(client.bound_addrs()["b"]).await;
    // The listener that stayed was never rebound.
    assert_eq!(client.bound_addrs()["a"], a);

    client.shutdown().await;
    operator.stop().await;
}

#[tokio::test]
async fn a_reconnecting_proxy_that_runs_the_current_version_gets_no_push() {
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let (operator, client) = serving_v1(&echo).await;
    let addr = operator.addr;
    operator.stop().await;

    let v1 = config("v1", &[("a", 0, "default/gw")], echo.addr());
    let operator = Operator::start(addr, None, v1).await;
    until(&client, "reconnected", |s| s.streams == 2 && s.connected).await;
    let records = operator.records.clone();
    eventually(WAIT, || async {
        records
            .get("node-1")
            .filter(|r| r.acked.as_deref() == Some("v1"))
    })
    .await
    .unwrap();
    assert_eq!(operator.metrics.pushes.get(), 0);
    assert_eq!(client.status().borrow().acks, 1);

    client.shutdown().await;
    operator.stop().await;
}

// --- TLS -------------------------------------------------------------------------------

const SERVER_NAME: &str = "portico-operator.portico-system.svc";

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `name`, signed by this CA.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn server_tls(dir: &tempfile::TempDir, pki: &Pki, client_ca: Option<&Pki>) -> ServerTls {
    let (cert, key) = pki.leaf(SERVER_NAME);
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    ServerTls {
        cert: write("tls.crt", &cert),
        key: write("tls.key", &key),
        client_ca: client_ca.map(|ca| write("client-ca.crt", &ca.ca_pem)),
    }
}

fn client_tls(ca: &Pki, identity: Option<(String, String)>) -> StreamTls {
    StreamTls {
        ca_pem: ca.ca_pem.clone().into_bytes(),
        identity: identity.map(|(c, k)| (c.into_bytes(), k.into_bytes())),
        server_name: Some(SERVER_NAME.to_owned()),
    }
}

#[tokio::test]
async fn the_stream_is_tls_and_the_proxy_verifies_the_operator() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let operator = Operator::start(
        "127.0.0.1:0".parse().unwrap(),
        Some(server_tls(&dir, &pki, None)),
        config("v1", &[("a", 0, "default/gw")], echo.addr()),
    )
    .await;
    let url = format!("https://{}", operator.addr);

    let trusted = proxy(&url, Some(client_tls(&pki, None))).await;
    until(&trusted, "v1 over TLS", |s| {
        s.applied.as_deref() == Some("v1")
    })
    .await;
    get_ok(trusted.bound_addrs()["a"]).await;

    // A proxy that trusts another CA never gets a config.
    let stranger = proxy(&url, Some(client_tls(&Pki::new(), None))).await;
    let status = until(&stranger, "handshake refused", |s| s.last_error.is_some()).await;
    assert!(!status.connected && status.applied.is_none(), "{status:?}");
    // Plaintext against the TLS port fails too.
    let plain = proxy(&format!("http://{}", operator.addr), None).await;
    until(&plain, "plaintext refused", |s| s.last_error.is_some()).await;
    assert!(plain.status().borrow().applied.is_none());

    trusted.shutdown().await;
    stranger.shutdown().await;
    plain.shutdown().await;
    operator.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_the_operator_requires_proxy_certificates() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let echo = EchoBackend::start("echo-0", "default", "echo")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_pki, proxy_pki) = (Pki::new(), Pki::new());
    let operator = Operator::start(
        "127.0.0.1:0".parse().unwrap(),
        Some(server_tls(&dir, &server_pki, Some(&proxy_pki))),
        config("v1", &[("a", 0, "default/gw")], echo.addr()),
    )
    .await;
    let url = format!("https://{}", operator.addr);

    let identity = proxy_pki.leaf("node-1");
    let with_cert = proxy(&url, Some(client_tls(&server_pki, Some(identity)))).await;
    until(&with_cert, "v1 over mTLS", |s| {
        s.applied.as_deref() == Some("v1")
    })
    .await;

    let without = proxy(&url, Some(client_tls(&server_pki, None))).await;
    until(&without, "no client certificate refused", |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(without.status().borrow().applied.is_none());

    with_cert.shutdown().await;
    without.shutdown().await;
    operator.stop().await;
}
