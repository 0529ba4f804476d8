//! UDP stream routes against real sockets: replies reach the client, every datagram of
//! one client socket goes to one backend (a flow), flows expire when idle, and the flow
//! table is bounded.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use portico_api::config::v1 as pb;
use portico_proxy::{ProxyHandle, ProxyOptions};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(5);

/// Answers each datagram with `<name> <peer port> <payload>`: the peer port is the
/// proxy's flow socket, so a new flow shows as a new port.
async fn backend(name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let payload = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = format!("{name} {} {payload}", peer.port());
            let _ = socket.send_to(reply.as_bytes(), peer).await;
        }
    });
    addr
}

fn cluster(name: &str, endpoint: SocketAddr) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        endpoints: vec![pb::Endpoint {
            address: endpoint.ip().to_string(),
            port: u32::from(endpoint.port()),
            ready: true,
            pod: String::new(),
        }],
        ..Default::default()
    }
}

fn share(cluster: &str, weight: u32) -> pb::WeightedBackend {
    pb::WeightedBackend {
        weight,
        target: Some(pb::weighted_backend::Target::Cluster(cluster.into())),
        filters: vec![],
    }
}

async fn start(
    options: ProxyOptions,
    backends: Vec<pb::WeightedBackend>,
    clusters: Vec<pb::Cluster>,
) -> (ProxyHandle, SocketAddr) {
    let config = pb::Config {
        version: "v1".into(),
        listeners: vec![pb::Listener {
            name: "udp".into(),
            address: "127.0.0.1".into(),
            port: 0,
            protocol: pb::Protocol::Udp as i32,
            virtual_hosts: vec![],
            gateway_port: 0,
            stream_routes: vec![pb::StreamRoute {
                name: "ns/dns/rule/0/udp".into(),
                route: "UDPRoute/ns/dns".into(),
                hostnames: vec![],
                backends,
                terminate: None,
            }],
        }],
        clusters,
    };
    let proxy = portico_proxy::start(options, config).await.unwrap();
    assert!(proxy.listener_errors().is_empty());
    let addr = proxy.bound_addrs()["udp"];
    (proxy, addr)
}

struct Client(UdpSocket);

impl Client {
    async fn new(proxy: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(proxy).await.unwrap();
        Self(socket)
    }

    /// Sends `payload` and waits for the reply, `None` if none comes within `within`.
    async fn ask(&self, payload: &str, within: Duration) -> Option<(String, u16)> {
        self.0.send(payload.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(within, self.0.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        let reply = String::from_utf8(buf[..n].to_vec()).unwrap();
        let mut parts = reply.splitn(3, ' ');
        let (name, port, echoed) = (parts.next()?, parts.next()?, parts.next()?);
        assert_eq!(echoed, payload);
        Some((name.to_owned(), port.parse().ok()?))
    }
}

#[tokio::test]
async fn each_client_keeps_its_backend_and_gets_the_replies() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (_proxy, addr) = start(
        ProxyOptions::default(),
        vec![share("a", 1), share("b", 1)],
        vec![cluster("a", a), cluster("b", b)],
    )
    .await;
    let mut seen = BTreeSet::new();
    for c in 0..20 {
        let client = Client::new(addr).await;
        let first = client.ask(&format!("client {c} #0"), WAIT).await.unwrap();
        for i in 1..5 {
            let again = client.ask(&format!("client {c} #{i}"), WAIT).await.unwrap();
            assert_eq!(again, first, "one flow per client socket");
        }
        seen.insert(first.0);
    }
    // 20 clients at 50/50: both backends have flows (all on one: 2 in a million).
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn an_idle_flow_expires_and_the_next_datagram_opens_a_new_one() {
    let a = backend("a").await;
    let options = ProxyOptions {
        udp_idle_timeout: Duration::from_millis(100),
        ..ProxyOptions::default()
    };
    let (_proxy, addr) = start(options, vec![share("a", 1)], vec![cluster("a", a)]).await;
    let client = Client::new(addr).await;
    let (_, first_port) = client.ask("one", WAIT).await.unwrap();
    // The flow expires 100 ms after its last datagram: wait twice that between
    // datagrams (waiting for idleness is the point, so this sleeps); bounded tries in
    // case a loaded machine delays the expiry timer.
    let mut new_port = None;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, port) = client.ask("again", WAIT).await.unwrap();
        if port != first_port {
            new_port = Some(port);
            break;
        }
    }
    assert!(new_port.is_some(), "the flow never expired");
}

#[tokio::test]
async fn the_flow_table_is_bounded() {
    let a = backend("a").await;
    let options = ProxyOptions {
        max_udp_flows: 1,
        ..ProxyOptions::default()
    };
    let (_proxy, addr) = start(options, vec![share("a", 1)], vec![cluster("a", a)]).await;
    let first = Client::new(addr).await;
    assert!(first.ask("hi", WAIT).await.is_some());
    let second = Client::new(addr).await;
    assert!(
        second.ask("hi", Duration::from_millis(300)).await.is_none(),
        "a second flow does not fit"
    );
    assert!(
        first.ask("still", WAIT).await.is_some(),
        "the first flow still works"
    );
}

#[tokio::test]
async fn datagrams_for_an_invalid_backend_are_dropped() {
    let invalid = pb::WeightedBackend {
        weight: 1,
        target: Some(pb::weighted_backend::Target::Invalid(
            "BackendNotFound".into(),
        )),
        filters: vec![],
    };
    let a = backend("a").await;
    let (proxy, addr) = start(ProxyOptions::default(), vec![invalid], vec![]).await;
    let client = Client::new(addr).await;
    assert!(client.ask("x", Duration::from_millis(300)).await.is_none());
    // A config update fixes the route: new flows go to the backend.
    let mut fixed = pb::Config {
        version: "v2".into(),
        listeners: vec![],
        clusters: vec![cluster("a", a)],
    };
    let mut l = pb::Listener {
        name: "udp".into(),
        address: "127.0.0.1".into(),
        port: 0,
        protocol: pb::Protocol::Udp as i32,
        ..Default::default()
    };
    l.stream_routes.push(pb::StreamRoute {
        name: "ns/dns/rule/0/udp".into(),
        backends: vec![share("a", 1)],
        ..Default::default()
    });
    fixed.listeners.push(l);
    proxy.update(fixed).await.unwrap();
    assert_eq!(proxy.bound_addrs()["udp"], addr);
    assert_eq!(client.ask("y", WAIT).await.unwrap().0, "a");
}
