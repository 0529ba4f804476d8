//! Times [`translate`] on the control-plane bench's shape: one Gateway, one Service and
//! N HTTPRoutes (crates/bench `route_json`), then one new route added, as
//! `portico standalone` translates after a file is written.
//!
//! `cargo run --release -p portico-translate --example scale -- 5000 5`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use portico_translate::{Inputs, Options, Translator, translate};
use serde_json::json;

const NS: &str = "bench";

fn route(i: usize) -> portico_api::gateway::HttpRoute {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": format!("r{i}"), "namespace": NS, "generation": 1},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [format!("r{i}.bench.test")],
            "rules": [{
                "matches": [{
                    "path": {"type": "PathPrefix", "value": format!("/p{i}/")},
                    "headers": [{"name": "x-route", "value": format!("r{i}")}],
                }],
                "backendRefs": [{"name": "be", "port": 80}],
            }],
        },
    }))
    .unwrap()
}

fn base() -> Inputs {
    Inputs {
        gateway_classes: vec![
            serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "portico"},
                "spec": {"controllerName": "portico.dev/gateway-controller"},
            }))
            .unwrap(),
        ],
        gateways: vec![
            serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": NS, "generation": 1},
                "spec": {"gatewayClassName": "portico",
                    "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 18090}]},
            }))
            .unwrap(),
        ],
        namespaces: vec![
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS}}))
            .unwrap(),
        ],
        services: vec![
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "be", "namespace": NS},
                "spec": {"ports": [{"name": "http", "port": 80}]}}))
            .unwrap(),
        ],
        endpoint_slices: vec![
            serde_json::from_value(json!({"apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "be-1", "namespace": NS,
                    "labels": {"kubernetes.io/service-name": "be"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}))
            .unwrap(),
        ],
        ..Inputs::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(5000, |a| a.parse().expect("route count"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let mut inputs = base();
    inputs.http_routes = (0..n).map(route).collect();
    let options = Options::default();

    let started = Instant::now();
    let first = translate(&inputs, &options);
    println!(
        "{n} routes: first translation {:.1} ms, {} listeners",
        started.elapsed().as_secs_f64() * 1e3,
        first.config.listeners.len()
    );
    let mut full = Vec::new();
    let mut incremental = Vec::new();
    let mut translator = Translator::new();
    let _ = translator.translate(&inputs, &options);
    for j in 0..rounds {
        inputs.http_routes.push(route(1_000_000 + j));
        let started = Instant::now();
        let from_scratch = translate(&inputs, &options);
        full.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let reused = translator.translate(&inputs, &options);
        incremental.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(reused == from_scratch);
        assert!(reused.statuses.http_routes.len() == n + j + 1);
    }
    for (what, times) in [("full", &mut full), ("incremental", &mut incremental)] {
        times.sort_by(f64::total_cmp);
        println!(
            "new route, {what}: median {:.1} ms, min {:.1} ms, max {:.1} ms ({rounds} rounds)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}
