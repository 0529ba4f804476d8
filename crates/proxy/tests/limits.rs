//! Size and connection limits, and a proxy that stays up when backends do not: slow
//! and dead backends, connect timeouts, passive ejection, connect-failure retries.
//! docs/security.md has the rules and defaults.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use http::StatusCode;
use portico_api::config::v1 as pb;
use portico_proxy::{ProxyHandle, ProxyOptions};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const READ_BOUND: Duration = Duration::from_secs(20);

async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(READ_BOUND, s.read_to_end(&mut buf))
        .await
        .expect("the proxy neither answered nor closed");
    String::from_utf8_lossy(&buf).into_owned()
}

async fn proxy_with(
    options: ProxyOptions,
    routes: Vec<pb::Route>,
    clusters: Vec<pb::Cluster>,
) -> (ProxyHandle, SocketAddr) {
    let proxy = portico_proxy::start(
        options,
        config(
            "v1",
            vec![listener("http", vec![any_host(routes)])],
            clusters,
        ),
    )
    .await
    .unwrap();
    let addr = proxy.bound_addrs()["http"];
    (proxy, addr)
}

fn all_to(cluster: &str) -> Vec<pb::Route> {
    vec![prefix_route("r", "/", vec![to(cluster, 1)])]
}

#[tokio::test]
async fn oversized_heads_and_targets_get_431_and_414() {
    let a = Echo::start("a").await;
    let (proxy, addr) = proxy_with(
        ProxyOptions {
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 1024,
            ..options()
        },
        all_to("a"),
        vec![cluster("a", &[&a])],
    )
    .await;

    let long_path = format!("/{}", "p".repeat(2000));
    let text = send_raw(
        addr,
        format!("GET {long_path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 414"), "{text:?}");

    // Over the limit but within hyper's buffer: the proxy's own check.
    let big = "v".repeat(12 * 1024);
    let text = send_raw(
        addr,
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: {big}\r\nX-B: {big}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    // Far over it: hyper's buffer fills before the head ends.
    let huge = "v".repeat(200 * 1024);
    let text = send_raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: {huge}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    // Very many small headers.
    let many: String = (0..2000).map(|i| format!("X-{i}: v\r\n")).collect();
    let text = send_raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");

    // HTTP/2: the same limits, the same answers.
    let h2 = TestClient::h2c();
    assert_eq!(
        h2.get(addr, "h", &long_path).await.status,
        StatusCode::URI_TOO_LONG
    );
    let reply = h2
        .send(
            addr,
            "h",
            "/",
            &[("x-a", big.as_str()), ("x-b", big.as_str())],
        )
        .await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    assert_eq!(a.received(), 0);
    // Within the limits, served.
    assert_eq!(
        TestClient::http1().get(addr, "h", "/ok").await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn default_limits_are_generous_but_finite() {
    let a = Echo::start("a").await;
    let (proxy, addr) = proxy_with(options(), all_to("a"), vec![cluster("a", &[&a])]).await;
    let defaults = ProxyOptions::default();
    // A head of 32 KiB is fine by default...
    let fine = "v".repeat(32 * 1024);
    let reply = TestClient::http1()
        .send(addr, "h", "/", &[("x-a", fine.as_str())])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // ...one over the default limit is not.
    let over = "v".repeat(defaults.max_header_bytes + 1);
    let text = send_raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: {over}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "{:?}",
        &text[..text.len().min(100)]
    );
    let path = format!("/{}", "p".repeat(defaults.max_uri_bytes));
    let text = send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 414"),
        "{:?}",
        &text[..text.len().min(100)]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let a = Echo::start("a").await;
    let (proxy, addr) = proxy_with(
        ProxyOptions {
            max_request_body_bytes: Some(1000),
            ..options()
        },
        all_to("a"),
        vec![cluster("a", &[&a])],
    )
    .await;
    let client = TestClient::http1();

    // Declared too large: refused before anything is forwarded.
    let reply = client
        .request("POST", addr, "h", "/", &[], vec![b'x'; 2000])
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.received(), 0);

    // Streamed (chunked) past the limit: cut where it passes it.
    let chunk = "x".repeat(500);
    let chunks: String = (0..4).map(|_| format!("1f4\r\n{chunk}\r\n")).collect();
    let text = send_raw(
        addr,
        format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");

    // At the limit: forwarded whole.
    let reply = client
        .request("POST", addr, "h", "/", &[], vec![b'x'; 1000])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["body"].as_str().unwrap().len(), 1000);
    proxy.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_accept() {
    let a = Echo::start("a").await;
    let (proxy, addr) = proxy_with(
        ProxyOptions {
            max_connections: 2,
            ..options()
        },
        all_to("a"),
        vec![cluster("a", &[&a])],
    )
    .await;
    // Two connections that are served (a request each proves the proxy took them).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(READ_BOUND, s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    // The third is closed without an answer.
    let text = send_raw(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(text, "");
    assert_eq!(a.received(), 2);
    // A slot freed is a slot for the next client.
    drop(held.pop());
    let client = TestClient::http1();
    eventually(Duration::from_secs(30), || async {
        let text = send_raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await;
        text.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    drop(client);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_stuck_backend_does_not_block_others() {
    let fast = Echo::start("fast").await;
    let stuck = BlackHole::start().await;
    let (proxy, addr) = proxy_with(
        options(),
        vec![
            prefix_route("stuck", "/stuck", vec![to("stuck", 1)]),
            prefix_route("fast", "/", vec![to("fast", 1)]),
        ],
        vec![cluster("fast", &[&fast]), stuck.cluster("stuck")],
    )
    .await;
    // Many requests hang at the stuck backend...
    let mut hanging = Vec::new();
    for _ in 0..32 {
        hanging.push(tokio::spawn(async move {
            TestClient::http1().try_send(addr, "h", "/stuck", &[]).await
        }));
    }
    eventually(Duration::from_secs(30), || async {
        (stuck.accepted() >= 32).then_some(())
    })
    .await;
    // ...while the other backend is served.
    let client = TestClient::http1();
    for _ in 0..10 {
        assert_eq!(client.get(addr, "h", "/").await.server(), "fast");
    }
    for h in hanging {
        h.abort();
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_answers_503() {
    // Fill the accept queue of a listener that never accepts (backlog 1): further
    // connects get no SYN-ACK and hang.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = sock.listen(1).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(full_addr)).await
        {
            fillers.push(s);
        }
    }
    let hung = pb::Cluster {
        name: "hung".to_owned(),
        endpoints: vec![pb::Endpoint {
            address: "127.0.0.1".to_owned(),
            port: u32::from(full_addr.port()),
            ready: true,
            pod: String::new(),
        }],
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: None,
    };
    let (proxy, addr) = proxy_with(
        ProxyOptions {
            connect_timeout: Duration::from_millis(300),
            ..options()
        },
        all_to("hung"),
        vec![hung],
    )
    .await;
    let reply = TestClient::http1().get(addr, "h", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        proxy.metrics_text().lines().any(|l| l
            .starts_with("portico_proxy_upstream_connect_errors_total")
            && !l.ends_with(" 0")),
        "{}",
        proxy.metrics_text()
    );
    drop(fillers);
    proxy.shutdown().await;
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn connect_errors(proxy: &ProxyHandle) -> u64 {
    proxy
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("portico_proxy_upstream_connect_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn dead_endpoints_are_retried_around_and_ejected() {
    let alive = Echo::start("alive").await;
    let mut mixed = cluster("mixed", &[&alive]);
    mixed.endpoints.push(pb::Endpoint {
        address: "127.0.0.1".to_owned(),
        port: u32::from(closed_port()),
        ready: true,
        pod: String::new(),
    });
    let (proxy, addr) = proxy_with(options(), all_to("mixed"), vec![mixed]).await;
    let client = TestClient::http1();
    // No retry policy on the route: an idempotent request whose connect failed goes to
    // the other endpoint, every time.
    for _ in 0..40 {
        let reply = client.get(addr, "h", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.server(), "alive");
    }
    // Round robin alone would have tried the dead one 20 times; ejected after 3
    // consecutive failures, it is left alone (6: one more ejection, on a machine slow
    // enough for the first to expire).
    let errors = connect_errors(&proxy);
    assert!((3..=6).contains(&errors), "{errors} connect errors");

    // A non-idempotent request is not resent: with only the dead endpoint, 503.
    let dead_only = pb::Cluster {
        name: "dead".to_owned(),
        endpoints: vec![pb::Endpoint {
            address: "127.0.0.1".to_owned(),
            port: u32::from(closed_port()),
            ready: true,
            pod: String::new(),
        }],
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: None,
    };
    let (proxy2, addr2) = proxy_with(options(), all_to("dead"), vec![dead_only]).await;
    let reply = client.request("POST", addr2, "h", "/", &[], "x").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(connect_errors(&proxy2), 1);
    proxy2.shutdown().await;
    proxy.shutdown().await;
}
