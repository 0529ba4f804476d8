//! Hostile HTTP against the proxy, over raw sockets where a well-behaved client would
//! refuse to send the bytes: request smuggling, path tricks against PathPrefix, Host
//! headers with ports and case, CRLF in filter values, forwarding headers a client
//! makes up, slow clients, and HTTP/2 stream floods. docs/security.md has the rules.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use portico_api::config::v1 as pb;
use portico_proxy::ProxyOptions;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Generous bound on any single socket read in these tests: a hang fails, a slow
/// machine does not.
const READ_BOUND: Duration = Duration::from_secs(20);

/// Writes `bytes`, then reads until the server closes (bounded).
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    // A reset after the answer is a close too.
    let _ = tokio::time::timeout(READ_BOUND, s.read_to_end(&mut buf))
        .await
        .expect("the proxy neither answered nor closed");
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status codes of the responses in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

async fn one_route_proxy(echo: &Echo) -> (portico_proxy::ProxyHandle, SocketAddr) {
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
        )],
        vec![cluster("a", &[echo])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    (proxy, addr)
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;

    for (what, head) in [
        (
            "two different Content-Lengths",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nbody",
        ),
        (
            "a Content-Length list",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 40\r\n\r\nbody",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "obs-fold of Transfer-Encoding",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\nbody",
        ),
        (
            "bare CR in a value",
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        ),
        ("bare CR as a line end", "GET / HTTP/1.1\rHost: h\r\n\r\n"),
        (
            "Transfer-Encoding not ending in chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nbody",
        ),
        (
            "Transfer-Encoding chunked then gzip",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a bad chunk size",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbody\r\n0\r\n\r\n",
        ),
    ] {
        let text = send_raw(addr, format!("{head}{SMUGGLED}").as_bytes()).await;
        let got = statuses(&text);
        // "a bad chunk size" is found while the body streams, after the request went to
        // the backend: the exchange fails (400 before a response, else a cut).
        assert!(
            got.first() == Some(&400) || (what == "a bad chunk size" && got.len() <= 1),
            "{what}: {text:?}"
        );
        assert!(got.len() <= 1, "{what}: a second answer: {text:?}");
    }
    // Nothing but the bad-chunk request (refused mid-body) reached the backend, and
    // the smuggled request never did.
    assert!(a.received() <= 1, "{:?}", a.seen());
    assert!(a.seen().iter().all(|s| s["path"] != "/smuggled"));
    proxy.shutdown().await;
}

/// Content-Length with Transfer-Encoding (RFC 9112 section 6.1: a server "MAY reject
/// such a message") gets 400 and the connection is closed, in either order of the two
/// fields, first on its connection or after a request that was served; nothing of it
/// reaches the backend.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;
    let served = "GET /first HTTP/1.1\r\nHost: h\r\n\r\n";
    for (what, head) in [
        (
            "Content-Length first",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding first",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
        ),
        (
            "field names in other cases, LF line ends",
            "POST / HTTP/1.1\nHost: h\ntransfer-encoding: gzip, chunked\nCONTENT-LENGTH: 0\n\n0\r\n\r\n",
        ),
    ] {
        let text = send_raw(addr, format!("{head}{SMUGGLED}").as_bytes()).await;
        assert_eq!(statuses(&text), [400], "{what}: {text:?}");
        let text = send_raw(addr, format!("{served}{head}{SMUGGLED}").as_bytes()).await;
        assert_eq!(
            statuses(&text),
            [200, 400],
            "{what} after a request: {text:?}"
        );
    }
    // send_raw read to the end: every connection was closed by the proxy. Only the
    // requests before the conflicting ones reached the backend.
    assert_eq!(a.received(), 3, "{:?}", a.seen());
    assert!(
        a.seen().iter().all(|s| s["path"] == "/first"),
        "{:?}",
        a.seen()
    );
    proxy.shutdown().await;
}

/// The framing guard follows bodies: a body whose bytes look like a conflicting head is
/// a body, and the requests around it are served.
#[tokio::test]
async fn a_body_that_looks_like_a_conflicting_head_is_a_body() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;
    let inner = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunked: String = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    let stream = format!(
        "POST /length HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{inner}\
         POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}\
         GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        inner.len()
    );
    let text = send_raw(addr, stream.as_bytes()).await;
    assert_eq!(statuses(&text), [200, 200, 200], "{text:?}");
    let paths: Vec<_> = a.seen().iter().map(|s| s["path"].clone()).collect();
    assert_eq!(paths, ["/length", "/chunked", "/last"]);
    assert!(
        a.seen()[..2].iter().all(|s| s["body"] == inner),
        "{:?}",
        a.seen()
    );
    proxy.shutdown().await;
}

/// A route for `prefix` to its own echo server.
fn to_echo(prefix: &str, cluster: &str) -> pb::Route {
    prefix_route(cluster, prefix, vec![to(cluster, 1)])
}

#[tokio::test]
async fn path_tricks_cannot_bypass_prefix_routes() {
    let admin = Echo::start("admin").await;
    let public = Echo::start("public").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![
                to_echo("/admin", "admin"),
                to_echo("/public", "public"),
            ])],
        )],
        vec![cluster("admin", &[&admin]), cluster("public", &[&public])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];

    // (target sent, server that must answer, path it must see)
    for (target, server, path) in [
        ("//admin", "admin", "/admin"),
        ("/./admin", "admin", "/admin"),
        ("/public/../admin", "admin", "/admin"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("/public/%2E%2E/admin/x?q=/../", "admin", "/admin/x?q=/../"),
        ("/public/.%2e/admin", "admin", "/admin"),
        ("/public//../admin", "admin", "/admin"),
        ("/%61dmin", "admin", "/admin"),
        ("/../../admin", "admin", "/admin"),
        ("/public/./x", "public", "/public/x"),
        // An encoded slash is not a separator: this stays under /public, as sent.
        ("/public/..%2Fadmin", "public", "/public/..%2Fadmin"),
    ] {
        let text = send_raw(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(statuses(&text), [200], "{target}: {text:?}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let seen: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(seen["server"], server, "{target}");
        assert_eq!(seen["path"], path, "{target}");
    }
    // One segment `public%2F..%2Fadmin`: neither under /public nor /admin, so 404.
    let text = send_raw(
        addr,
        b"GET /public%2F..%2Fadmin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), [404], "{text:?}");
    assert!(
        public
            .seen()
            .iter()
            .all(|s| !s["path"].as_str().unwrap().starts_with("/admin"))
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn host_with_port_and_mixed_case_routes_to_its_virtual_host() {
    let app = Echo::start("app").await;
    let other = Echo::start("other").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![
                vhost("test/gw/app", "app.example.com", vec![to_echo("/", "app")]),
                vhost("test/gw/any", "", vec![to_echo("/", "other")]),
            ],
        )],
        vec![cluster("app", &[&app]), cluster("other", &[&other])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    for host in [
        "app.example.com",
        "APP.Example.COM",
        "app.example.com:8080",
        "App.Example.Com:80",
    ] {
        let text = send_raw(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(text.contains("x-echo-server: app"), "{host}: {text:?}");
    }
    // Two Host headers are refused (RFC 9112 section 3.2: 400), never routed by one.
    let text = send_raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: app.example.com\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), [400], "{text:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn crlf_in_a_filter_value_is_a_config_error() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;
    for value in [
        "x\r\nX-Injected: 1",
        "x\nX-Injected: 1",
        "x\rX-Injected: 1",
        "x\0",
    ] {
        let route = pb::Route {
            filters: vec![pb::Filter {
                kind: Some(pb::filter::Kind::RequestHeaderModifier(
                    pb::HeaderModifier {
                        set: vec![pb::Header {
                            name: "x-set".to_owned(),
                            value: value.to_owned(),
                        }],
                        ..Default::default()
                    },
                )),
            }],
            ..prefix_route("r", "/", vec![to("a", 1)])
        };
        let bad = config(
            "v2",
            vec![listener("http", vec![any_host(vec![route])])],
            vec![cluster("a", &[&a])],
        );
        assert!(proxy.update(bad).await.is_err(), "{value:?} accepted");
    }
    // The running config stays and serves, untouched.
    let reply = TestClient::http1().get(addr, "h", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.seen_header("x-set").is_empty());
    assert!(reply.seen_header("x-injected").is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn client_forwarding_headers_are_not_trusted_by_default() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;
    let reply = TestClient::http1()
        .send(
            addr,
            "h",
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=6.6.6.6;proto=https"),
            ],
        )
        .await;
    assert_eq!(reply.seen_header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(reply.seen_header("x-forwarded-proto"), ["http"]);
    assert!(reply.seen_header("forwarded").is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn trusted_hops_take_the_client_from_x_forwarded_for() {
    let a = Echo::start("a").await;
    let proxy = portico_proxy::start(
        ProxyOptions {
            xff_num_trusted_hops: 1,
            ..options()
        },
        config(
            "v1",
            vec![listener(
                "http",
                vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
            )],
            vec![cluster("a", &[&a])],
        ),
    )
    .await
    .unwrap();
    let addr = proxy.bound_addrs()["http"];
    // The one trusted proxy in front appended the client (1.2.3.4) to what the client
    // made up (6.6.6.6): the made-up part is dropped, the peer appended.
    let reply = TestClient::http1()
        .send(
            addr,
            "h",
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(reply.seen_header("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(reply.seen_header("x-forwarded-proto"), ["https"]);
    proxy.shutdown().await;
}

async fn slow_proxy(
    echo: &Echo,
    header_timeout: Duration,
) -> (portico_proxy::ProxyHandle, SocketAddr) {
    let proxy = portico_proxy::start(
        ProxyOptions {
            request_header_timeout: header_timeout,
            ..options()
        },
        config(
            "v1",
            vec![listener(
                "http",
                vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
            )],
            vec![cluster("a", &[echo])],
        ),
    )
    .await
    .unwrap();
    let addr = proxy.bound_addrs()["http"];
    (proxy, addr)
}

#[tokio::test]
async fn slowloris_clients_are_closed_and_do_not_block_others() {
    let a = Echo::start("a").await;
    let (proxy, addr) = slow_proxy(&a, Duration::from_secs(1)).await;

    // Many clients that start a request head and never finish it.
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // One that dribbles a byte every 100 ms: the timeout bounds the whole head, not
    // the gap between bytes.
    let mut dribble = TcpStream::connect(addr).await.unwrap();
    dribble
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n")
        .await
        .unwrap();

    // Others are served meanwhile.
    let client = TestClient::http1();
    for _ in 0..5 {
        assert_eq!(client.get(addr, "h", "/").await.status, StatusCode::OK);
    }

    // The dribbler is cut: bounded loop, each write far apart from the timeout.
    let mut cut = false;
    for _ in 0..200 {
        if dribble.write_all(b"X-A: b\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), dribble.read(&mut buf)).await {
            // Closed, or answered (408) and closed.
            Ok(Ok(0) | Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "a client dribbling its head for 20 s was never cut");

    // And every silent one is closed (408 or a plain close), none answered otherwise.
    for mut s in slow {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(READ_BOUND, s.read_to_end(&mut buf))
            .await
            .expect("a slow client was kept open");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text:?}"
        );
    }
    assert!(
        a.seen()
            .iter()
            .all(|s| s["headers"].get("x-slow").is_none())
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let a = Echo::start("a").await;
    let (proxy, addr) = slow_proxy(&a, Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // Read the whole first response (its length is in its head), then go idle.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let answered = loop {
        let n = tokio::time::timeout(READ_BOUND, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break false;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                break true;
            }
        }
    };
    assert!(answered, "{:?}", String::from_utf8_lossy(&buf));
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    // Idle past the timeout: the proxy closes it (bounded wait, no exact timing).
    let mut rest = Vec::new();
    tokio::time::timeout(READ_BOUND, s.read_to_end(&mut rest))
        .await
        .expect("an idle keep-alive connection was kept open")
        .unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    proxy.shutdown().await;
}

/// A body that never ends (nor sends anything): a stream held open.
struct Forever;

impl hyper::body::Body for Forever {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// An HTTP/2 client on a fresh connection to `addr`.
async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test]
async fn h2_rapid_reset_does_not_stop_other_clients() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;

    // Open a stream and reset it at once, over and over (CVE-2023-44487): dropping the
    // response future before it resolves resets the stream (CANCEL). Bounded: at most
    // 20,000 streams, or until the proxy ends the connection (GOAWAY).
    let flood = tokio::spawn(async move {
        let mut client = h2_client::<http_body_util::Empty<Bytes>>(addr).await;
        let mut sent = 0u32;
        for _ in 0..20_000 {
            if client.ready().await.is_err() {
                break;
            }
            let req = http::Request::get("http://h/?sleep_ms=50")
                .body(http_body_util::Empty::new())
                .unwrap();
            let mut response = std::pin::pin!(client.send_request(req));
            // Poll once so that HEADERS go out, then drop: RST_STREAM follows.
            let _ = futures::poll!(response.as_mut());
            sent += 1;
        }
        sent
    });

    // A normal client keeps being served while the flood runs.
    let normal = TestClient::h2c();
    for _ in 0..10 {
        assert_eq!(normal.get(addr, "h", "/").await.status, StatusCode::OK);
    }
    let sent = tokio::time::timeout(Duration::from_secs(120), flood)
        .await
        .expect("the flood never ended")
        .unwrap();
    assert!(sent > 0);
    assert_eq!(normal.get(addr, "h", "/").await.status, StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2_stream_flood_is_bounded_per_connection() {
    let a = Echo::start("a").await;
    let (proxy, addr) = one_route_proxy(&a).await;
    let limit = ProxyOptions::default().h2_max_concurrent_streams as usize;

    // Half again as many streams as the proxy allows on one connection, none of them
    // ever ending (the request body stays open). The proxy holds `limit` of them open,
    // each a request at the backend; the rest wait for a free stream.
    let mut client = h2_client::<Forever>(addr).await;
    let mut open = Vec::new();
    for _ in 0..limit * 3 / 2 {
        client.ready().await.unwrap();
        let req = http::Request::post("http://h/").body(Forever).unwrap();
        open.push(tokio::spawn(client.send_request(req)));
    }
    eventually(Duration::from_secs(30), || async {
        (a.received() >= limit).then_some(())
    })
    .await;

    // Another connection is served as usual while the flood holds its streams.
    let normal = TestClient::h2c();
    assert_eq!(normal.get(addr, "h", "/").await.status, StatusCode::OK);
    // The flood got no more than the limit through (the normal request is the one more).
    assert_eq!(a.received(), limit + 1);
    for task in open {
        task.abort();
    }
    proxy.shutdown().await;
}
