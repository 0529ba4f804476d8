//! Shared by the observability tests (tests/observability.rs, tests/access_log.rs): a
//! proxy with a live and a dead backend, and the traceparent a backend saw.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use portico_api::config::v1 as pb;
use portico_proxy::ProxyHandle;

use crate::support::{self, Echo, Reply, any_host, cluster, config, listener, prefix_route, to};

pub(crate) const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(crate) const CLIENT_PARENT: &str = "00f067aa0ba902b7";

/// A route `/` to an echo backend and a route `/dead` to a cluster whose only endpoint
/// refuses connections.
pub(crate) async fn proxy(echo: &Echo, dead: SocketAddr) -> (ProxyHandle, SocketAddr) {
    let mut dead_route = prefix_route(
        "test/dead/rule/0/match/0",
        "/dead",
        vec![to("test/dead:80", 1)],
    );
    dead_route.route = "test/dead".to_owned();
    let routes = vec![
        dead_route,
        prefix_route(
            "test/route/rule/0/match/0",
            "/",
            vec![to("test/echo:80", 1)],
        ),
    ];
    let dead_cluster = pb::Cluster {
        name: "test/dead:80".to_owned(),
        endpoints: vec![pb::Endpoint {
            address: dead.ip().to_string(),
            port: u32::from(dead.port()),
            ready: true,
            ..Default::default()
        }],
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: None,
    };
    let handle = support::start(config(
        "v1",
        vec![listener("http", vec![any_host(routes)])],
        vec![cluster("test/echo:80", &[echo]), dead_cluster],
    ))
    .await;
    let addr = handle.bound_addrs()["http"];
    (handle, addr)
}

/// A port nobody listens on: bound, then released.
pub(crate) async fn dead_port() -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

pub(crate) fn traceparent(reply: &Reply) -> Vec<String> {
    let seen = reply.seen_header("traceparent");
    assert_eq!(seen.len(), 1, "one traceparent: {seen:?}");
    seen[0].split('-').map(str::to_owned).collect()
}
