//! OTLP export (`--otlp-endpoint`): a collector played by a small HTTP server on
//! loopback receives `POST /v1/traces` after a request with a sampled `traceparent`,
//! and the span in it carries the client's trace id, the client's span as its parent,
//! and the span id the backend saw as its parent. Unsampled requests are not exported.

#![allow(clippy::unwrap_used)]

mod observe;
mod support;

use std::time::Duration;

use observe::{CLIENT_PARENT, CLIENT_TRACE, traceparent};
use portico_proxy::ProxyOptions;
use portico_testkit::otlp::{Collector, attribute};
use support::{
    Echo, TestClient, any_host, cluster, config, eventually, listener, prefix_route, to,
};

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_sampled_request_is_exported_with_the_clients_trace_id() {
    let collector = Collector::start().await.unwrap();
    let echo = Echo::start("echo").await;
    let options = ProxyOptions {
        otlp_endpoint: Some(collector.endpoint().parse().unwrap()),
        ..support::options()
    };
    let mut route = prefix_route(
        "test/route/rule/0/match/0",
        "/",
        vec![to("test/echo:80", 1)],
    );
    route.route = "test/route".to_owned();
    let handle = portico_proxy::start(
        options,
        config(
            "v1",
            vec![listener("http", vec![any_host(vec![route])])],
            vec![cluster("test/echo:80", &[&echo])],
        ),
    )
    .await
    .unwrap();
    let addr = handle.bound_addrs()["http"];
    let client = TestClient::http1();

    // Not sampled (no traceparent: the proxy starts an unsampled trace). Its span would
    // be queued when its response is counted, before the sampled request below starts.
    assert_eq!(client.get(addr, "example.com", "/").await.status, 200);
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

    let exported = eventually(WITHIN, || {
        let spans = collector.spans();
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await;
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
