//! The proxy against local echo backends over real sockets: routing, local replies,
//! filters, forwarding headers, HTTP/2 prior knowledge, malformed requests.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use portico_api::config::v1 as pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn routes_by_host_and_path_and_404s_the_rest() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![
                vhost(
                    "test/gw/foo",
                    "foo.example.com",
                    vec![prefix_route("foo", "/", vec![to("a", 1)])],
                ),
                vhost(
                    "test/gw/wild",
                    "*.example.com",
                    vec![prefix_route("wild", "/api", vec![to("b", 1)])],
                ),
            ],
        )],
        vec![cluster("a", &[&a]), cluster("b", &[&b])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    let client = TestClient::http1();

    assert_eq!(
        client.get(addr, "foo.example.com", "/x").await.server(),
        "a"
    );
    assert_eq!(
        client.get(addr, "Foo.Example.com:8080", "/").await.server(),
        "a"
    );
    assert_eq!(
        client
            .get(addr, "bar.example.com", "/api/v1")
            .await
            .server(),
        "b"
    );
    // Wildcard vhost has no route for this path; the exact vhost's routes are not
    // consulted for another host.
    assert_eq!(
        client.get(addr, "bar.example.com", "/other").await.status,
        StatusCode::NOT_FOUND
    );
    // No vhost for this host at all.
    assert_eq!(
        client.get(addr, "example.org", "/").await.status,
        StatusCode::NOT_FOUND
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn local_replies_for_unusable_backends() {
    let a = Echo::start("a").await;
    // A port that nothing listens on: bind, note it, close.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut not_ready = cluster("not-ready", &[&a]);
    not_ready.endpoints[0].ready = false;
    let refused = pb::Cluster {
        name: "refused".to_owned(),
        endpoints: vec![pb::Endpoint {
            address: "127.0.0.1".to_owned(),
            port: u32::from(closed_port),
            ready: true,
            pod: String::new(),
        }],
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: None,
    };
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![
                prefix_route(
                    "invalid",
                    "/invalid",
                    vec![invalid(1, "BackendNotFound: test/missing")],
                ),
                prefix_route("none", "/none", vec![]),
                prefix_route("zero", "/zero", vec![to("a", 0)]),
                prefix_route("empty", "/empty", vec![to("empty", 1)]),
                prefix_route("not-ready", "/not-ready", vec![to("not-ready", 1)]),
                prefix_route("refused", "/refused", vec![to("refused", 1)]),
                prefix_route("ok", "/ok", vec![to("a", 1)]),
            ])],
        )],
        vec![
            cluster("a", &[&a]),
            cluster("empty", &[]),
            not_ready,
            refused,
        ],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    let client = TestClient::http1();
    let cases = [
        ("/invalid", StatusCode::INTERNAL_SERVER_ERROR),
        ("/none", StatusCode::INTERNAL_SERVER_ERROR),
        ("/zero", StatusCode::INTERNAL_SERVER_ERROR),
        ("/empty", StatusCode::SERVICE_UNAVAILABLE),
        ("/not-ready", StatusCode::SERVICE_UNAVAILABLE),
        ("/refused", StatusCode::SERVICE_UNAVAILABLE),
        ("/nowhere", StatusCode::NOT_FOUND),
        ("/ok", StatusCode::OK),
    ];
    for (path, want) in cases {
        let reply = client.get(addr, "h", path).await;
        assert_eq!(reply.status, want, "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn header_modifiers_apply_to_request_and_response() {
    let a = Echo::start("a").await;
    let header = |n: &str, v: &str| pb::Header {
        name: n.to_owned(),
        value: v.to_owned(),
    };
    let mut route = prefix_route("r", "/", vec![to("a", 1)]);
    route.filters = vec![
        pb::Filter {
            kind: Some(pb::filter::Kind::RequestHeaderModifier(
                pb::HeaderModifier {
                    set: vec![header("X-Set", "set-by-proxy")],
                    add: vec![header("x-add", "added")],
                    remove: vec!["X-Remove".to_owned()],
                },
            )),
        },
        pb::Filter {
            kind: Some(pb::filter::Kind::ResponseHeaderModifier(
                pb::HeaderModifier {
                    set: vec![header("x-echo-server", "hidden")],
                    add: vec![header("x-resp-add", "yes")],
                    remove: vec!["content-type".to_owned()],
                },
            )),
        },
    ];
    let proxy = start(config(
        "v1",
        vec![listener("http", vec![any_host(vec![route])])],
        vec![cluster("a", &[&a])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    let reply = TestClient::http1()
        .send(
            addr,
            "h",
            "/",
            &[
                ("x-set", "from-client"),
                ("x-add", "from-client"),
                ("x-remove", "bye"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen_header("x-set"), ["set-by-proxy"]);
    assert_eq!(reply.seen_header("x-add"), ["from-client", "added"]);
    assert!(reply.seen_header("x-remove").is_empty());
    assert_eq!(reply.headers["x-echo-server"], "hidden");
    assert_eq!(reply.headers["x-resp-add"], "yes");
    assert!(reply.headers.get("content-type").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_and_host() {
    let a = Echo::start("a").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
        )],
        vec![cluster("a", &[&a])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    let client = TestClient::http1();

    let reply = client
        .send(
            addr,
            "app.example.com:8080",
            "/path?q=1",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "req-42"),
                ("connection", "x-hop"),
                ("x-hop", "must not pass"),
            ],
        )
        .await;
    let seen = reply.json();
    assert_eq!(seen["path"], "/path?q=1");
    assert_eq!(reply.seen_header("host"), ["app.example.com:8080"]);
    // Not trusted by default (xff_num_trusted_hops 0): the peer address replaces it.
    assert_eq!(reply.seen_header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(reply.seen_header("x-forwarded-proto"), ["http"]);
    assert_eq!(reply.seen_header("x-request-id"), ["req-42"]);
    assert!(reply.seen_header("x-hop").is_empty());

    // Without an incoming id, the proxy makes one.
    let reply = client.get(addr, "h", "/").await;
    let ids = reply.seen_header("x-request-id");
    assert_eq!(ids.len(), 1);
    assert!(uuid_like(&ids[0]), "{ids:?}");
    assert_eq!(reply.seen_header("x-forwarded-for"), ["127.0.0.1"]);
    proxy.shutdown().await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn h2c_prior_knowledge_downstream_and_upstream() {
    let a = Echo::start("a").await;
    let mut h2_cluster = cluster("a-h2c", &[&a]);
    h2_cluster.protocol = pb::ClusterProtocol::H2c as i32;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![
                prefix_route("h1", "/h1", vec![to("a", 1)]),
                prefix_route("h2", "/h2", vec![to("a-h2c", 1)]),
            ])],
        )],
        vec![cluster("a", &[&a]), h2_cluster],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];

    // HTTP/2 client to the proxy, HTTP/1.1 to the backend.
    let h2 = TestClient::h2c();
    let reply = h2.get(addr, "", "/h1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["version"], "HTTP/1.1");
    // The :authority the client sent is forwarded as the Host.
    assert_eq!(reply.seen_header("host"), [addr.to_string()]);

    // HTTP/2 on both sides; the client's :authority is forwarded as :authority.
    let reply = h2.get(addr, "", "/h2").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["version"], "HTTP/2.0");
    assert_eq!(reply.json()["authority"], addr.to_string());

    // And HTTP/1.1 client to the h2c cluster: the Host header becomes :authority (RFC
    // 9113 section 8.3.1), which is where HTTP/2 servers read the host from, and no
    // Host header goes along with it.
    let reply = TestClient::http1().get(addr, "h", "/h2").await;
    assert_eq!(reply.json()["version"], "HTTP/2.0");
    assert_eq!(reply.json()["authority"], "h");
    assert!(reply.seen_header("host").is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn malformed_request_gets_400_and_proxy_keeps_serving() {
    let a = Echo::start("a").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
        )],
        vec![cluster("a", &[&a])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];

    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n"[..],
        b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http at all\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut buf = Vec::new();
        // The server answers and closes; bounded so that a hang fails the test.
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 400"), "{garbage:?} -> {text:?}");
    }
    assert_eq!(
        TestClient::http1().get(addr, "h", "/").await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}
