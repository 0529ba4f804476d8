//! OTLP export (`--otlp-endpoint`) and head sampling (`trace_sample_ratio`), with a
//! collector played by a small HTTP server on loopback that receives `POST /v1/traces`.
//! - A request with a sampled `traceparent` is exported: the span carries the client's
//!   trace id, the client's span as its parent, and the span id the backend saw as its
//!   parent. Unsampled requests are not exported.
//! - A request without a `traceparent` gets a new trace: at ratio 1 the backend sees it
//!   sampled (flag 01) and its span reaches the collector; at ratio 0 it is forwarded
//!   unsampled (flag 00) and nothing is exported for it.

#![allow(clippy::unwrap_used)]

mod observe;
mod support;

use std::time::Duration;

use observe::{CLIENT_PARENT, CLIENT_TRACE, traceparent};
use portico_proxy::{ProxyHandle, ProxyOptions};
use portico_testkit::otlp::{Collector, attribute};
use serde_json::Value;
use support::{
    Echo, TestClient, any_host, cluster, config, eventually, listener, prefix_route, to,
};

const WITHIN: Duration = Duration::from_secs(10);

/// A proxy exporting to `collector`, starting traces sampled at `ratio`, with one route
/// (`test/route`) to `echo`.
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

/// The spans of the first export that has any, with their service names.
async fn exported(collector: &Collector) -> Vec<(String, Value)> {
    eventually(WITHIN, || {
        let spans = collector.spans();
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await
}

#[tokio::test]
async fn a_sampled_request_is_exported_with_the_clients_trace_id() {
    let collector = Collector::start().await.unwrap();
    let echo = Echo::start("echo").await;
    let handle = proxy(&collector, &echo, 0.0).await;
    let addr = handle.bound_addrs()["http"];
    let client = TestClient::http1();

    // Not sampled (no traceparent, ratio 0: the proxy starts an unsampled trace). Its span
    // would be queued when its response is counted, before the sampled request below starts.
    let reply = client.get(addr, "example.com", "/").await;
    assert_eq!(reply.status, 200);
    let unsampled = traceparent(&reply);
    assert_eq!(unsampled[3], "00", "not sampled: {unsampled:?}");
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
    let backend_saw = traceparent(&reply);

    let exported = exported(&collector).await;
    assert_eq!(exported.len(), 1, "only the sampled request: {exported:?}");
    let (service, span) = &exported[0];
    assert_eq!(service, "portico-proxy");
    assert_eq!(span["traceId"], CLIENT_TRACE, "{span}");
    assert_eq!(span["parentSpanId"], CLIENT_PARENT, "{span}");
    assert_eq!(
        span["spanId"],
        backend_saw[2].as_str(),
        "the proxy's span is the parent the backend saw"
    );
    assert_eq!(span["kind"], 2, "SERVER");
    assert_eq!(span["name"], "GET test/route");
    assert_eq!(attribute(span, "url.path"), Some("/traced".into()));
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some("200".into())
    );
    assert_eq!(
        attribute(span, "portico.backend"),
        Some("test/echo:80".into())
    );

    let export = &collector.exports()[0];
    assert_eq!(
        (
            export.method.as_str(),
            export.path.as_str(),
            export.content_type.as_str()
        ),
        ("POST", "/v1/traces", "application/json")
    );
    handle.shutdown().await;
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

    let exported = exported(&collector).await;
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
