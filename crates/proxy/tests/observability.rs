//! The proxy's observability against real sockets: the Prometheus series move with the
//! traffic, and W3C trace context reaches the backend. The access log has a test binary
//! of its own (tests/access_log.rs).

#![allow(clippy::unwrap_used)]

mod observe;
mod support;

use std::{net::SocketAddr, time::Duration};

use observe::{CLIENT_PARENT, CLIENT_TRACE, dead_port, proxy, traceparent};
use portico_proxy::client::{StreamConfig, start as start_client};
use support::{Echo, TestClient, cluster, config, eventually};
const WITHIN: Duration = Duration::from_secs(10);

/// The value of the series `name{labels}` (labels in the encoder's sorted order), 0 when
/// absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const OK_SERIES: &str = r#"portico_proxy_requests_total{backend="test/echo:80",code="2xx",gateway="test/gw",route="test/route"}"#;
const DURATION_COUNT: &str =
    r#"portico_proxy_request_duration_seconds_count{gateway="test/gw",route="test/route"}"#;
const CONNECT_ERRORS: &str =
    r#"portico_proxy_upstream_connect_errors_total{backend="test/dead:80"}"#;
const DEAD_5XX: &str = r#"portico_proxy_requests_total{backend="test/dead:80",code="5xx",gateway="test/gw",route="test/dead"}"#;

#[tokio::test]
async fn metrics_series_exist_and_move_with_traffic() {
    let echo = Echo::start("echo").await;
    let (handle, addr) = proxy(&echo, dead_port().await).await;
    let before = handle.metrics_text();
    // Resolved on a route's first request (crate::metrics): a configured route that
    // has not served has no series yet, so that thousands of idle routes cost little.
    assert!(!before.contains(OK_SERIES), "{before}");
    assert!(!before.contains(DURATION_COUNT), "{before}");
    assert_eq!(
        sample(&before, r#"portico_proxy_config_info{version="v1"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &before,
            r#"portico_proxy_config_updates_total{outcome="ok"}"#
        ),
        1.0
    );

    let client = TestClient::http1();
    for _ in 0..3 {
        assert_eq!(client.get(addr, "example.com", "/").await.status, 200);
    }
    let dead = client.get(addr, "example.com", "/dead").await;
    assert_eq!(dead.status, 503);

    // Recorded when each response body is done, which may trail the client by a moment.
    let after = eventually(WITHIN, || {
        let text = handle.metrics_text();
        async move {
            (sample(&text, OK_SERIES) == 3.0 && sample(&text, DEAD_5XX) == 1.0).then_some(text)
        }
    })
    .await;
    assert_eq!(sample(&after, DURATION_COUNT), 3.0, "{after}");
    assert!(sample(&after, CONNECT_ERRORS) >= 1.0, "{after}");
    // Every series of the proxy is documented, with its type and labels.
    portico_testkit::metrics::check_documented("proxy", &after).unwrap();
    // The keep-alive connection of the client is still open.
    assert!(
        sample(
            &after,
            r#"portico_proxy_downstream_connections_active{listener="http"}"#
        ) >= 1.0,
        "{after}"
    );

    // A rejected config counts and leaves the version alone.
    let mut broken = config("v2", vec![], vec![]);
    broken.clusters = vec![cluster("dup", &[&echo]), cluster("dup", &[&echo])];
    assert!(handle.update(broken).await.is_err());
    let text = handle.metrics_text();
    assert_eq!(
        sample(
            &text,
            r#"portico_proxy_config_updates_total{outcome="rejected"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"portico_proxy_config_info{version="v1"}"#),
        1.0
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn admin_endpoint_serves_metrics() {
    // No operator answers: the proxy keeps trying, the admin port serves meanwhile.
    let stream = StreamConfig {
        operator: format!("http://{}", dead_port().await),
        node: "node-a".to_owned(),
        gateways: vec![],
        tls: None,
        connect_timeout: Duration::from_millis(200),
        reconnect_initial: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(1),
    };
    let admin: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let client = start_client(stream, support::options(), Some(admin))
        .await
        .unwrap();
    let admin = client.admin_addr().unwrap();
    let reply = TestClient::http1().get(admin, "", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"portico_proxy_config_updates_total{outcome="ok"} 1"#),
        "{text}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn client_traceparent_is_continued_to_the_backend() {
    let echo = Echo::start("echo").await;
    let (handle, addr) = proxy(&echo, dead_port().await).await;
    let client = TestClient::http1();
    let sent = format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01");
    let reply = client
        .send(
            addr,
            "example.com",
            "/",
            &[("traceparent", &sent), ("tracestate", "vendor=opaque")],
        )
        .await;
    let fields = traceparent(&reply);
    assert_eq!(fields[0], "00");
    assert_eq!(fields[1], CLIENT_TRACE, "same trace id");
    assert_ne!(
        fields[2], CLIENT_PARENT,
        "the proxy's own span as the parent"
    );
    assert_eq!(fields[2].len(), 16);
    assert_eq!(fields[3], "01", "flags kept");
    assert_eq!(reply.seen_header("tracestate"), vec!["vendor=opaque"]);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_trace_is_started_when_the_client_sent_none_or_an_invalid_one() {
    let echo = Echo::start("echo").await;
    let (handle, addr) = proxy(&echo, dead_port().await).await;
    let client = TestClient::http1();

    let first = traceparent(&client.get(addr, "example.com", "/").await);
    let second = traceparent(&client.get(addr, "example.com", "/").await);
    for fields in [&first, &second] {
        assert_eq!(fields.len(), 4, "{fields:?}");
        assert_eq!(
            (fields[0].as_str(), fields[1].len(), fields[2].len()),
            ("00", 32, 16)
        );
        assert_ne!(fields[1], "0".repeat(32));
    }
    assert_ne!(first[1], second[1], "each request starts its own trace");

    let invalid = format!("00-{}-{CLIENT_PARENT}-01", "0".repeat(32));
    let reply = client
        .send(
            addr,
            "example.com",
            "/",
            &[("traceparent", &invalid), ("tracestate", "vendor=opaque")],
        )
        .await;
    let fields = traceparent(&reply);
    assert_ne!(fields[1], "0".repeat(32));
    assert!(
        reply.seen_header("tracestate").is_empty(),
        "the tracestate of an unreadable trace is dropped"
    );
    handle.shutdown().await;
}
