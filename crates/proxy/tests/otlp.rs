//! OTLP export (`--otlp-endpoint`): a collector played by a small HTTP server on
//! loopback receives `POST /v1/traces` after a request with a sampled `traceparent`,
//! and the span in it carries the client's trace id, the client's span as its parent,
//! and the span id the backend saw as its parent. Unsampled requests are not exported.

#![allow(clippy::unwrap_used)]

mod observe;
mod support;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use observe::{CLIENT_PARENT, CLIENT_TRACE, traceparent};
use portico_proxy::ProxyOptions;
use serde_json::Value;
use support::{
    Echo, TestClient, any_host, cluster, config, eventually, listener, prefix_route, to,
};
use tokio::net::TcpListener;

const WITHIN: Duration = Duration::from_secs(10);

/// What the collector received: (method, path, content-type, JSON body) per request.
type Received = Arc<Mutex<Vec<(String, String, String, Value)>>>;

/// A collector on 127.0.0.1:0 answering 200 to everything and keeping what it got.
async fn collector() -> (SocketAddr, Received) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let received = Received::default();
    let keep = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_owned();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        keep.lock()
                            .unwrap()
                            .push((method, path, content_type, json));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// Every span in what the collector received.
fn spans(received: &Received) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, _, _, body)| {
            body["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
                .flat_map(|s| s["spans"].as_array().into_iter().flatten())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_sampled_request_is_exported_with_the_clients_trace_id() {
    let (collector, received) = collector().await;
    let echo = Echo::start("echo").await;
    let options = ProxyOptions {
        otlp_endpoint: Some(format!("http://{collector}").parse().unwrap()),
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
        let spans = spans(&received);
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await;
    assert_eq!(exported.len(), 1, "only the sampled request: {exported:?}");
    let span = &exported[0];
    assert_eq!(span["traceId"], CLIENT_TRACE, "{span}");
    assert_eq!(span["parentSpanId"], CLIENT_PARENT, "{span}");
    assert_eq!(
        span["spanId"],
        backend_saw[2].as_str(),
        "the proxy's span is the parent the backend saw"
    );
    assert_eq!(span["kind"], 2, "SERVER");
    assert_eq!(span["name"], "GET test/route");
    let attribute = |key: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"]["stringValue"].clone())
    };
    assert_eq!(attribute("url.path"), Some("/traced".into()));
    assert_eq!(attribute("http.response.status_code"), Some("200".into()));
    assert_eq!(attribute("portico.backend"), Some("test/echo:80".into()));

    let requests = received.lock().unwrap().clone();
    let (method, path, content_type, _) = &requests[0];
    assert_eq!(
        (method.as_str(), path.as_str(), content_type.as_str()),
        ("POST", "/v1/traces", "application/json")
    );
    handle.shutdown().await;
}
