//! EndpointSlice churn under load (issue 10, Faults). Endpoints of the route's Service
//! are removed and added again and again while a load client runs:
//!
//! - graceful removal, as Kubernetes does it for a pod being deleted: the endpoint is
//!   first `ready: false, terminating: true`, the pod keeps running until the proxy has
//!   stopped sending to it, then the endpoint goes and the pod stops: no request fails;
//! - abrupt removal: the pod is killed (its sockets close at once, slow requests in
//!   flight on it included) and its endpoint is removed only later, as when a node
//!   dies: only requests in flight on it fail; new requests that meet the dead endpoint
//!   are retried on another one after the failed connect (idempotent), so the load
//!   sees at most a couple of failures while the proxy counts more connect errors.
//!
//! Whole binaries, as in fault_restart.rs; the pods are echo servers on extra
//! addresses of the node.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use binaries::node::Pod;
use binaries::{Cluster, Load, Node, WAIT, proxy_with, scenario};
use hyper::StatusCode;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_common::wait_programmed;
use portico_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use portico_testkit::HttpClient;
use serde_json::json;

/// Pods behind the Service at once.
const PODS: u8 = 3;
/// Slow requests in flight when a pod is killed; the killed one has about a third.
const SLOW_REQUESTS: usize = 6;
/// The load's failures allowed around the kill: a fast request in flight on the pod at
/// that instant.
const MAX_LOAD_FAILURES: usize = 2;
/// Bound on the spans of traffic waited for one change to show.
const SPANS: usize = 100;

/// One endpoint of the slice.
#[derive(Debug, Clone)]
struct Endpoint {
    pod: String,
    ip: Ipv4Addr,
    /// `false`: terminating (not ready, not serving).
    ready: bool,
}

fn pod_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, 10 + i)
}

/// Writes `endpoints` as the Service's only slice (`echo-abc`, the scenario's).
async fn publish(client: &kube::Client, endpoints: &[Endpoint]) {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.ip.to_string()],
                "conditions": {"ready": e.ready, "serving": e.ready, "terminating": !e.ready},
                "targetRef": {"kind": "Pod", "namespace": "apps", "name": e.pod},
            })
        })
        .collect();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "apps");
    slices
        .patch(
            "echo-abc",
            &PatchParams::default(),
            &Patch::Merge(json!({ "endpoints": endpoints })),
        )
        .await
        .unwrap();
}

/// Answers from `pod` so far.
fn answers(load: &Load, pod: &str) -> u64 {
    load.report().pods.get(pod).copied().unwrap_or(0)
}

/// Waits until a span of traffic gets no answer from `pod`: the proxy stopped sending
/// to it.
async fn drained(load: &mut Load, pod: &str) {
    for _ in 0..SPANS {
        let before = answers(load, pod);
        load.succeeded(20).await;
        if answers(load, pod) == before {
            return;
        }
    }
    panic!("{pod} still gets requests: {:?}", load.report());
}

/// Waits until `pod` answers.
async fn serving(load: &mut Load, pod: &str) {
    for _ in 0..SPANS {
        if answers(load, pod) > 0 {
            return;
        }
        load.succeeded(10).await;
    }
    panic!("{pod} never answered: {:?}", load.report());
}

/// The proxy's `portico_proxy_upstream_connect_errors_total`, over every backend.
async fn connect_errors(admin: SocketAddr) -> f64 {
    let (status, _, body) = HttpClient::http1(admin)
        .get(None, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("portico_proxy_upstream_connect_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_removals_lose_nothing_and_a_killed_pod_only_its_requests() {
    let Some(node) = Node::new("fault_endpoints") else {
        return;
    };
    let cluster = Cluster::start().await;
    cluster.apply(&scenario(&node));
    let mut pods: Vec<Option<Pod>> = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..PODS {
        let name = format!("echo-{i}-g0");
        node.add_address(pod_ip(i));
        pods.push(Some(node.echo_on(pod_ip(i), &name, "apps", "echo")));
        endpoints.push(Endpoint {
            pod: name,
            ip: pod_ip(i),
            ready: true,
        });
    }
    publish(&cluster.client, &endpoints).await;

    let operator = cluster
        .operator("operator-a", (node.host_ip, 0).into())
        .await;
    let admin = SocketAddr::from((node.node_ip, 9902));
    let _proxy = proxy_with(
        &node,
        "node-1",
        operator.config_addr,
        &admin.to_string(),
        Duration::from_secs(1),
    );
    let port = cluster.proxy_port("web", 80).await;
    let target = SocketAddr::from((node.node_ip, port));
    wait_programmed(&cluster.client, "apps", "web", WAIT).await;
    let mut load = Load::start(target, Duration::from_millis(10));
    for e in &endpoints {
        serving(&mut load, &e.pod).await;
    }

    // Graceful churn: each pod in turn is marked terminating, drained, removed, stopped,
    // and replaced by a new one on its address.
    for generation in 1..=2 {
        for i in 0..usize::from(PODS) {
            let old = endpoints[i].pod.clone();
            endpoints[i].ready = false;
            publish(&cluster.client, &endpoints).await;
            drained(&mut load, &old).await;
            endpoints.remove(i);
            publish(&cluster.client, &endpoints).await;
            load.succeeded(10).await;
            drop(pods[i].take());

            let ip = pod_ip(u8::try_from(i).unwrap());
            let new = format!("echo-{i}-g{generation}");
            pods[i] = Some(node.echo_on(ip, &new, "apps", "echo"));
            endpoints.insert(
                i,
                Endpoint {
                    pod: new.clone(),
                    ip,
                    ready: true,
                },
            );
            publish(&cluster.client, &endpoints).await;
            serving(&mut load, &new).await;
        }
    }
    let graceful = load.report();
    assert!(
        graceful.failures.is_empty(),
        "requests failed during graceful churn: {:?}",
        graceful.failures
    );

    // Abrupt: slow requests in flight on every pod, then pod 0 dies; its endpoint
    // stays published for a while, as when nobody has noticed yet.
    let slow: Vec<_> = (0..SLOW_REQUESTS)
        .map(|_| {
            tokio::spawn(async move {
                HttpClient::http1(target)
                    .with_timeout(Duration::from_secs(15))
                    .get(Some("web.example.com"), "/slow?delay=2s")
                    .await
            })
        })
        .collect();
    load.succeeded(20).await;
    let errors_before = connect_errors(admin).await;
    let killed = endpoints[0].pod.clone();
    pods[0].take().unwrap().kill();
    load.succeeded(50).await;
    endpoints.remove(0);
    publish(&cluster.client, &endpoints).await;
    load.succeeded(50).await;

    let mut slow_ok = 0;
    let mut slow_failed = Vec::new();
    for task in slow {
        match task.await.unwrap() {
            Ok((StatusCode::OK, _, body)) => {
                let report: portico_echo::EchoReport = serde_json::from_slice(&body).unwrap();
                assert_ne!(report.pod, killed, "an answer from the killed pod");
                slow_ok += 1;
            }
            Ok((status, _, body)) => {
                slow_failed.push(format!("{status}: {}", String::from_utf8_lossy(&body)))
            }
            Err(e) => slow_failed.push(e.to_string()),
        }
    }
    let connect_errors = connect_errors(admin).await - errors_before;
    let report = load.finish().await;
    let load_failures = &report.failures[graceful.failures.len()..];
    eprintln!(
        "endpoint churn: {} answers; killed {killed}: {} of {SLOW_REQUESTS} slow requests \
         failed ({slow_failed:?}), {} load failures ({load_failures:?}), {connect_errors} \
         connect errors retried or reported",
        report.ok,
        slow_failed.len(),
        load_failures.len()
    );
    // Slow requests fail only on the killed pod: round robin sends it at most half.
    assert!(
        slow_failed.len() <= SLOW_REQUESTS / 2,
        "{} slow requests failed ({slow_ok} answered): {slow_failed:?}",
        slow_failed.len()
    );
    assert!(
        load_failures.len() <= MAX_LOAD_FAILURES,
        "load failures after the kill: {load_failures:?}"
    );
    // The load did meet the dead endpoint, and the retries absorbed most of it.
    assert!(connect_errors >= 1.0, "the dead endpoint was never tried");
    assert!(
        (load_failures.len() as f64) < connect_errors,
        "{} load failures for {connect_errors} connect errors: retries absorbed none",
        load_failures.len()
    );
}
