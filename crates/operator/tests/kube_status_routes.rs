//! The status writer on every route kind beyond HTTPRoute (GRPCRoute, TLSRoute,
//! TCPRoute, UDPRoute), against the test API server: each gets our parent entry with
//! Accepted and ResolvedRefs (observedGeneration set), another controller's parent entry
//! on the same route survives, and a snapshot that changes no status patches nothing.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use kube_common::*;
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::names::{self, condition, reason};
use portico_operator::start;
use portico_testkit::eventually;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A Gateway with HTTP (for gRPC: [`SCENARIO`]'s Gateway `web` has an HTTPRoute for
/// every hostname already), TLS (passthrough), TCP and UDP listeners, a UDP Service, and
/// one route of each kind.
const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: streams
  namespace: apps
spec:
  gatewayClassName: portico
  listeners:
  - name: grpc
    port: 8081
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Same
  - name: tls
    port: 8443
    protocol: TLS
    hostname: "*.example.com"
    tls:
      mode: Passthrough
    allowedRoutes:
      namespaces:
        from: Same
  - name: tcp
    port: 9000
    protocol: TCP
    allowedRoutes:
      namespaces:
        from: Same
  - name: udp
    port: 5353
    protocol: UDP
    allowedRoutes:
      namespaces:
        from: Same
---
apiVersion: v1
kind: Service
metadata:
  name: dns
  namespace: apps
spec:
  selector:
    app: dns
  ports:
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: grpc
  namespace: apps
spec:
  parentRefs:
  - name: streams
    sectionName: grpc
  rules:
  - backendRefs:
    - name: echo
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: tls
  namespace: apps
spec:
  parentRefs:
  - name: streams
    sectionName: tls
  hostnames:
  - tls.example.com
  rules:
  - backendRefs:
    - name: echo
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata:
  name: tcp
  namespace: apps
spec:
  parentRefs:
  - name: streams
    sectionName: tcp
  rules:
  - backendRefs:
    - name: echo
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata:
  name: udp
  namespace: apps
spec:
  parentRefs:
  - name: streams
    sectionName: udp
  rules:
  - backendRefs:
    - name: dns
      port: 53
"#;

const OTHER_CONTROLLER: &str = "example.com/other-controller";

/// The routes of [`ROUTES`]: their kind's API resource and name.
fn routes() -> [(ApiResource, &'static str); 4] {
    [
        (ApiResource::erase::<GrpcRoute>(&()), "grpc"),
        (ApiResource::erase::<TlsRoute>(&()), "tls"),
        (ApiResource::erase::<TcpRoute>(&()), "tcp"),
        (ApiResource::erase::<UdpRoute>(&()), "udp"),
    ]
}

/// Another controller's parent entry, on its own Gateway `theirs`.
fn foreign_parent() -> Value {
    json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
        "controllerName": OTHER_CONTROLLER,
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
            "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1
        }]
    })
}

fn api(client: &Client, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "apps", resource)
}

/// The route's `status.parents`, as JSON.
async fn parents(client: &Client, resource: &ApiResource, name: &str) -> Vec<Value> {
    let Ok(route) = api(client, resource).get_status(name).await else {
        return Vec::new();
    };
    route.data["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn parent_of<'a>(parents: &'a [Value], controller: &str) -> Option<&'a Value> {
    parents.iter().find(|p| p["controllerName"] == controller)
}

/// `(status, reason, observedGeneration)` of the condition `type_` of a parent entry.
fn parent_condition(parent: &Value, type_: &str) -> Option<(String, String, i64)> {
    let c = parent["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["observedGeneration"].as_i64()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_kind_gets_our_parent_next_to_the_other_controllers() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, ROUTES);
    let client = server.client().unwrap();

    // Another controller already reports on every route.
    let foreign = foreign_parent();
    for (resource, name) in routes() {
        api(&client, &resource)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"parents": [foreign.clone()]}})),
            )
            .await
            .unwrap();
    }

    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    for (resource, name) in routes() {
        let kind = resource.kind.clone();
        let got = eventually(WAIT, || async {
            let parents = parents(&client, &resource, name).await;
            parent_of(&parents, names::CONTROLLER_NAME)?;
            Some(parents)
        })
        .await
        .unwrap_or_else(|_| panic!("{kind} {name}: no parent entry of ours"));
        assert_eq!(got.len(), 2, "{kind} {name}: {got:?}");
        assert_eq!(
            parent_of(&got, OTHER_CONTROLLER),
            Some(&foreign),
            "{kind} {name}: the other controller's entry changed"
        );
        let ours = parent_of(&got, names::CONTROLLER_NAME).unwrap();
        for (type_, why) in [
            (condition::ACCEPTED, reason::ACCEPTED),
            (condition::RESOLVED_REFS, reason::RESOLVED_REFS),
        ] {
            assert_eq!(
                parent_condition(ours, type_),
                Some(("True".to_owned(), why.to_owned(), 1)),
                "{kind} {name}: {ours}"
            );
        }
    }

    // Converged: a quiet pass. A change that moves no status (an unrelated Service)
    // makes a new snapshot, and its pass patches nothing.
    let counters = operator.status_counters.clone();
    let converged = eventually(WAIT, || async {
        let quiet = counters.last_quiet_generation();
        let latest = operator.snapshots.borrow().as_ref()?.generation;
        (quiet == latest).then_some(latest)
    })
    .await
    .unwrap();
    let patched = counters.patched();
    let unchanged = counters.unchanged();
    apply(
        &server,
        "apiVersion: v1\nkind: Service\nmetadata: {name: unrelated, namespace: apps}\nspec:\n  ports: [{port: 1234}]\n",
    );
    eventually(WAIT, || async {
        (counters.last_quiet_generation() > converged).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(counters.patched(), patched, "{counters:?}");
    assert!(counters.unchanged() > unchanged, "{counters:?}");

    shutdown.cancel();
    operator.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_leaves_our_gateway_loses_only_our_parent() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, ROUTES);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();
    let tcp = ApiResource::erase::<TcpRoute>(&());
    eventually(WAIT, || async {
        parent_of(&parents(&client, &tcp, "tcp").await, names::CONTROLLER_NAME).map(|_| ())
    })
    .await
    .unwrap();

    // The route now names only another controller's Gateway, which reports on it.
    let foreign = foreign_parent();
    let routes = api(&client, &tcp);
    routes
        .patch(
            "tcp",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parentRefs": [{"name": "theirs"}]}})),
        )
        .await
        .unwrap();
    let current = parents(&client, &tcp, "tcp").await;
    let mut with_foreign = current.clone();
    with_foreign.push(foreign.clone());
    routes
        .patch_status(
            "tcp",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"parents": with_foreign}})),
        )
        .await
        .unwrap();

    let left = eventually(WAIT, || async {
        let parents = parents(&client, &tcp, "tcp").await;
        parent_of(&parents, names::CONTROLLER_NAME)
            .is_none()
            .then_some(parents)
    })
    .await
    .unwrap();
    assert_eq!(left, [foreign]);

    shutdown.cancel();
    operator.wait().await;
}
