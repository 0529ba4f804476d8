//! TCP stream routes against real sockets: weighted backends, half-close, failures that
//! close the client's connection, idle connections, and config updates that leave
//! established connections alone.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use portico_api::config::v1 as pb;
use portico_proxy::{ProxyHandle, ProxyOptions};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

/// A line backend: says its name on connect, then echoes each line; when the client
/// half-closes, it answers "bye" and closes.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                write.write_all(format!("{name}\n").as_bytes()).await?;
                let mut lines = BufReader::new(read).lines();
                while let Some(line) = lines.next_line().await? {
                    write.write_all(format!("{line}\n").as_bytes()).await?;
                }
                write.write_all(b"bye\n").await?;
                write.shutdown().await
            });
        }
    });
    addr
}

fn cluster(name: &str, endpoints: &[SocketAddr]) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        endpoints: endpoints
            .iter()
            .map(|a| pb::Endpoint {
                address: a.ip().to_string(),
                port: u32::from(a.port()),
                ready: true,
                pod: String::new(),
            })
            .collect(),
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

fn tcp_config(
    version: &str,
    backends: Vec<pb::WeightedBackend>,
    clusters: Vec<pb::Cluster>,
) -> pb::Config {
    pb::Config {
        version: version.into(),
        listeners: vec![pb::Listener {
            name: "tcp".into(),
            address: "127.0.0.1".into(),
            port: 0,
            protocol: pb::Protocol::Tcp as i32,
            virtual_hosts: vec![],
            gateway_port: 0,
            stream_routes: vec![pb::StreamRoute {
                name: "ns/r/rule/0/tcp".into(),
                route: "TCPRoute/ns/r".into(),
                hostnames: vec![],
                backends,
                terminate: None,
            }],
        }],
        clusters,
    }
}

async fn start(options: ProxyOptions, config: pb::Config) -> (ProxyHandle, SocketAddr) {
    let proxy = portico_proxy::start(options, config).await.unwrap();
    assert!(
        proxy.listener_errors().is_empty(),
        "{:?}",
        proxy.listener_errors()
    );
    let addr = proxy.bound_addrs()["tcp"];
    (proxy, addr)
}

fn options() -> ProxyOptions {
    ProxyOptions {
        connect_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
        ..ProxyOptions::default()
    }
}

/// Connects and reads the backend's name line.
async fn greet(addr: SocketAddr) -> (BufReader<TcpStream>, String) {
    let socket = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    (reader, line.trim_end().to_owned())
}

/// Reads until the proxy closes the connection; returns what came (an RST counts as
/// closed too).
async fn read_to_close(socket: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the proxy did not close the connection");
    got
}

#[tokio::test]
async fn connections_follow_the_weights() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let config = tcp_config(
        "v1",
        vec![share("a", 3), share("b", 1), share("c", 0)],
        vec![cluster("a", &[a]), cluster("b", &[b]), cluster("c", &[c])],
    );
    let (_proxy, addr) = start(options(), config).await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..400 {
        let (_, name) = greet(addr).await;
        *counts.entry(name).or_default() += 1;
    }
    let share_a = f64::from(counts.get("a").copied().unwrap_or(0)) / 400.0;
    assert!((0.65..=0.85).contains(&share_a), "{counts:?}");
    assert!(counts.get("b").copied().unwrap_or(0) > 0, "{counts:?}");
    assert_eq!(counts.get("c"), None, "weight 0 gets nothing: {counts:?}");
}

#[tokio::test]
async fn half_close_reaches_the_backend_and_the_answer_comes_back() {
    let a = backend("a").await;
    let (_proxy, addr) = start(
        options(),
        tcp_config("v1", vec![share("a", 1)], vec![cluster("a", &[a])]),
    )
    .await;
    let (reader, name) = greet(addr).await;
    assert_eq!(name, "a");
    let mut socket = reader.into_inner();
    socket.write_all(b"ping\n").await.unwrap();
    // Our side is done writing; the backend still answers, then closes.
    socket.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut socket).await, b"ping\nbye\n");
}

#[tokio::test]
async fn invalid_and_unreachable_backends_close_the_connection() {
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let invalid = pb::WeightedBackend {
        weight: 1,
        target: Some(pb::weighted_backend::Target::Invalid(
            "BackendNotFound: ns/missing".into(),
        )),
        filters: vec![],
    };
    for (what, config) in [
        ("invalid backend", tcp_config("v1", vec![invalid], vec![])),
        (
            "refused connect",
            tcp_config(
                "v1",
                vec![share("gone", 1)],
                vec![cluster("gone", &[closed])],
            ),
        ),
        (
            "no endpoint",
            tcp_config("v1", vec![share("empty", 1)], vec![cluster("empty", &[])]),
        ),
    ] {
        let (proxy, addr) = start(options(), config).await;
        let mut socket = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut socket).await.is_empty(), "{what}");
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn an_update_keeps_established_connections_and_routes_new_ones() {
    let (a, b) = (backend("a").await, backend("b").await);
    let clusters = vec![cluster("a", &[a]), cluster("b", &[b])];
    let (proxy, addr) = start(
        options(),
        tcp_config("v1", vec![share("a", 1)], clusters.clone()),
    )
    .await;
    let (mut old, name) = greet(addr).await;
    assert_eq!(name, "a");

    let summary = proxy
        .update(tcp_config("v2", vec![share("b", 1)], clusters))
        .await
        .unwrap();
    assert!(
        summary.removed.is_empty() && summary.added.is_empty(),
        "{summary:?}"
    );
    assert_eq!(proxy.bound_addrs()["tcp"], addr);

    let (_, name) = greet(addr).await;
    assert_eq!(name, "b");
    // The connection from before still talks to a.
    old.get_mut().write_all(b"still there\n").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, old.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "still there\n");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let a = backend("a").await;
    let options = ProxyOptions {
        stream_idle_timeout: Duration::from_millis(200),
        ..options()
    };
    let (_proxy, addr) = start(
        options,
        tcp_config("v1", vec![share("a", 1)], vec![cluster("a", &[a])]),
    )
    .await;
    let (reader, _) = greet(addr).await;
    let mut socket = reader.into_inner();
    // Nothing is sent: the proxy closes both sides; the backend's "bye" may or may not
    // make it before the close, nothing else can come.
    let got = read_to_close(&mut socket).await;
    assert!(got.is_empty() || got == b"bye\n", "{got:?}");
}

#[tokio::test]
async fn removing_the_listener_closes_its_socket() {
    let a = backend("a").await;
    let (proxy, addr) = start(
        options(),
        tcp_config("v1", vec![share("a", 1)], vec![cluster("a", &[a])]),
    )
    .await;
    let summary = proxy
        .update(pb::Config {
            version: "v2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(summary.removed, ["tcp"]);
    assert!(proxy.bound_addrs().is_empty());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the socket is closed"
    );
}
