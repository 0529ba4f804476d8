//! The operator's spans (`--otlp-endpoint`): `portico-operator` as a process against the
//! test API server, a collector played by a small HTTP server on loopback, and a proxy
//! played by the test on the config stream (hello, then an ACK of the first push). The
//! collector gets a "reconcile" span with the generation and the counts of what was
//! translated, a "config push" span naming the proxy, the version and the ACK, and a
//! "status write" span, all as service portico-operator; then a push the proxy NACKs
//! is a "config push" span with status ERROR and the proxy's error.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use binaries::{Cluster, POOL, WAIT};
use kube::Api;
use portico_api::config::v1::{
    Ack, Hello, Nack, ProxyMessage, config_discovery_client::ConfigDiscoveryClient, proxy_message,
};
use portico_api::gateway::{Gateway, HttpRoute};
use portico_api::k8s_openapi::NamespaceResourceScope;
use portico_testkit::eventually;
use portico_testkit::otlp::{Collector, attribute};
use serde_json::Value;

const PROXY: &str = "otlp-proxy";

/// The first span named `name` that `accept` takes.
fn find(spans: &[(String, Value)], name: &str, accept: impl Fn(&Value) -> bool) -> Option<Value> {
    spans
        .iter()
        .find(|(_, span)| span["name"] == name && accept(span))
        .map(|(_, span)| span.clone())
}

/// How many objects of kind `K` there are, as the attributes say it.
async fn count<K>(client: &kube::Client) -> String
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .len()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_config_pushes_and_status_writes_are_exported_as_spans() {
    let collector = Collector::start().await.unwrap();
    let cluster = Cluster::start().await;
    // With an address pool, the Gateway gets an address and a config to push.
    cluster.apply(&format!("{}\n---\n{POOL}", kube_common::SCENARIO));
    let endpoint = collector.endpoint();
    let operator = cluster
        .operator_with(
            "otlp",
            ([127, 0, 0, 1], 0).into(),
            &["--otlp-endpoint", &endpoint],
        )
        .await;

    // The proxy's side of the config stream: hello, the first push, its ACK.
    let mut client = ConfigDiscoveryClient::connect(format!("http://{}", operator.config_addr))
        .await
        .unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let send = |kind| {
        tx.unbounded_send(ProxyMessage { kind: Some(kind) })
            .unwrap()
    };
    send(proxy_message::Kind::Hello(Hello {
        node: PROXY.to_owned(),
        ..Hello::default()
    }));
    let mut pushes = client.stream_config(rx).await.unwrap().into_inner();
    let push = tokio::time::timeout(WAIT, pushes.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    send(proxy_message::Kind::Ack(Ack {
        nonce: push.nonce,
        version: push.version.clone(),
    }));

    let gateways = count::<Gateway>(&cluster.client).await;
    let routes = count::<HttpRoute>(&cluster.client).await;
    let (reconcile, config_push, status_write) = eventually(WAIT, || {
        let spans = collector.spans();
        let found = (
            find(&spans, "reconcile", |s| {
                attribute(s, "portico.gateways") == Some(gateways.as_str().into())
                    && attribute(s, "portico.routes") == Some(routes.as_str().into())
            }),
            find(&spans, "config push", |s| {
                attribute(s, "portico.version") == Some(push.version.as_str().into())
            }),
            find(&spans, "status write", |_| true),
        );
        let seen: Vec<String> = spans
            .iter()
            .map(|(service, span)| format!("{service}: {span}"))
            .collect();
        async move {
            assert!(
                seen.iter().all(|s| s.starts_with("portico-operator: ")),
                "{seen:?}"
            );
            match found {
                (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
                _ => Err(format!("not every span yet: {seen:?}")),
            }
        }
    })
    .await
    .unwrap();

    let generation: u64 = attribute(&reconcile, "portico.generation")
        .and_then(|g| g.as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("a published reconcile has a generation: {reconcile}"));
    assert!(generation >= 1, "{reconcile}");

    assert_eq!(attribute(&config_push, "portico.proxy"), Some(PROXY.into()));
    assert_eq!(
        attribute(&config_push, "portico.result"),
        Some("ACK".into()),
        "{config_push}"
    );
    assert!(config_push.get("status").is_none(), "{config_push}");

    assert!(
        attribute(&status_write, "portico.generation").is_some(),
        "{status_write}"
    );
    assert!(
        attribute(&status_write, "portico.patched").is_some(),
        "{status_write}"
    );

    for span in [&reconcile, &config_push, &status_write] {
        let trace = span["traceId"].as_str().unwrap();
        assert_eq!(trace.len(), 32, "{span}");
        assert_ne!(trace, "0".repeat(32), "{span}");
        assert!(
            span.get("parentSpanId").is_none(),
            "each is a trace of its own: {span}"
        );
        let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start <= end, "{span}");
    }
    // A changed route makes a new version (if the first push had not seen the address
    // yet, that makes one too); the proxy rejects the next push.
    cluster.apply(&kube_common::tagged_route("X-Tag", "nack"));
    let rejected = tokio::time::timeout(WAIT, pushes.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(rejected.version, push.version);
    send(proxy_message::Kind::Nack(Nack {
        nonce: rejected.nonce,
        version: rejected.version.clone(),
        error: "listener 0.0.0.0:80: cannot bind".to_owned(),
        listener: String::new(),
        running_version: push.version.clone(),
    }));
    let nacked = eventually(WAIT, || {
        let spans = collector.spans();
        let found = find(&spans, "config push", |s| {
            attribute(s, "portico.version") == Some(rejected.version.as_str().into())
        });
        async move { found }
    })
    .await
    .unwrap();
    assert_eq!(
        attribute(&nacked, "portico.result"),
        Some("NACK".into()),
        "{nacked}"
    );
    assert_eq!(
        attribute(&nacked, "error"),
        Some("listener 0.0.0.0:80: cannot bind".into())
    );
    assert_eq!(nacked["status"]["code"], 2, "ERROR: {nacked}");

    let export = &collector.exports()[0];
    assert_eq!(
        (export.method.as_str(), export.path.as_str()),
        ("POST", "/v1/traces")
    );
    drop(tx);
}
