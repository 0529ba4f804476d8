//! Head sampling of the traces the proxy starts (`trace_sample_ratio`): a request
//! without a `traceparent` gets a new trace; at ratio 1 the backend sees it sampled
//! (flag 01) and its span reaches the collector, at ratio 0 it is forwarded unsampled
//! and nothing is exported for it. A collector played by a small HTTP server on loopback.

#![allow(clippy::unwrap_used)]

mod observe;
mod support;

use std::time::Duration;

use observe::{CLIENT_PARENT, CLIENT_TRACE, traceparent};
use portico_proxy::{ProxyHandle, ProxyOptions};
use portico_testkit::otlp::Collector;
use support::{
    Echo, TestClient, any_host, cluster, config, eventually, listener, prefix_route, to,
};

const WITHIN: Duration = Duration::from_secs(10);

async fn proxy(collector: &Collector, echo: &Echo, ratio: f64) -> ProxyHandle {
    let options = ProxyOptions {
        otlp_endpoint: Some(collector.endpoint().parse().unwrap()),
        trace_sample_ratio: ratio,
        ..support::options()
    };
    let mut route = prefix_route(
        "test/route/rule/0/match/0",
        "/",
        vec![to("test/echo:80", 1)],
    );
    route.route = "test/route".to_owned();
    portico_proxy::start(
        options,
        config(
            "v1",
            vec![listener("http", vec![any_host(vec![route])])],
            vec![cluster("test/echo:80", &[echo])],
        ),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_new_trace_at_ratio_one_is_sampled_and_exported() {
    let collector = Collector::start().await.unwrap();
    let echo = Echo::start("echo").await;
    let handle = proxy(&collector, &echo, 1.0).await;
    let addr = handle.bound_addrs()["http"];

    let reply = TestClient::http1()
        .get(addr, "example.com", "/started")
        .await;
    assert_eq!(reply.status, 200);
    let backend_saw = traceparent(&reply);
    assert_eq!(backend_saw[3], "01", "sampled: {backend_saw:?}");

    let exported = eventually(WITHIN, || {
        let spans = collector.spans();
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await;
    assert_eq!(exported.len(), 1, "{exported:?}");
    let span = &exported[0].1;
    assert_eq!(span["traceId"], backend_saw[1].as_str(), "{span}");
    assert_eq!(span["spanId"], backend_saw[2].as_str(), "{span}");
    assert!(
        span.get("parentSpanId")
            .and_then(|p| p.as_str())
            .is_none_or(str::is_empty),
        "a trace the proxy started has no parent: {span}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_new_trace_at_ratio_zero_is_not_sampled_nor_exported() {
    let collector = Collector::start().await.unwrap();
    let echo = Echo::start("echo").await;
    let handle = proxy(&collector, &echo, 0.0).await;
    let addr = handle.bound_addrs()["http"];
    let client = TestClient::http1();

    let reply = client.get(addr, "example.com", "/started").await;
    assert_eq!(reply.status, 200);
    let unsampled = traceparent(&reply);
    assert_eq!(unsampled[3], "00", "not sampled: {unsampled:?}");

    // Its span would be queued when its response is counted; then a client's sampled
    // trace: once that span is in, the unsampled request's would have been too.
    let counted = r#"portico_proxy_requests_total{backend="test/echo:80",code="2xx",gateway="test/gw",route="test/route"} 1"#;
    eventually(WITHIN, || {
        let done = handle.metrics_text().contains(counted);
        async move { done.then_some(()) }
    })
    .await;
    let sent = format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01");
    let reply = client
        .send(addr, "example.com", "/traced", &[("traceparent", &sent)])
        .await;
    assert_eq!(reply.status, 200);
    let exported = eventually(WITHIN, || {
        let spans = collector.spans();
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await;
    assert_eq!(exported.len(), 1, "only the client's trace: {exported:?}");
    assert_eq!(exported[0].1["traceId"], CLIENT_TRACE);
    handle.shutdown().await;
}
