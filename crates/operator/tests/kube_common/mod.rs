//! Helpers for the tests that run the operator against the test API server: the Gateway
//! API CRDs, manifests of a small scenario, and the operator's configuration.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use kube::{Api, Client};
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute};
use portico_api::k8s::Condition;
use portico_operator::Config;
use portico_testkit::apiserver::TestApiServer;
use tempfile::TempDir;

/// The standard-channel Gateway API CRDs, from `../shared` beside the repository.
pub fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api/crds/standard")
}

/// A server with the Gateway API CRDs installed.
pub async fn server_with_crds() -> TestApiServer {
    let server = TestApiServer::start().await.unwrap();
    server.apply_crds_from(crds_dir()).unwrap();
    server
}

/// Applies `yaml` (one or more documents) to the server.
pub fn apply(server: &TestApiServer, yaml: &str) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, yaml).unwrap();
    server.apply_file(&path).unwrap();
}

/// The operator's configuration for tests: a short Lease in `default`, quick debounce.
pub fn config(identity: &str) -> Config {
    let mut config = Config::new(identity);
    config.lease_namespace = "default".into();
    config.lease_name = "portico-test".into();
    config.lease_duration = Duration::from_secs(2);
    config.lease_retry_period = Duration::from_millis(200);
    config.debounce = Duration::from_millis(20);
    config
}

/// Namespace `apps` with GatewayClass `portico`, Gateway `web` (listener `http` on 80,
/// infrastructure labels and annotations), HTTPRoute `echo` to Service `echo`, and the
/// Service's EndpointSlice at 10.1.2.3.
pub const SCENARIO: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: someone-else
spec:
  controllerName: example.com/other-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: apps
spec:
  gatewayClassName: portico
  infrastructure:
    labels:
      team: web
    annotations:
      service.beta.kubernetes.io/aws-load-balancer-scheme: internet-facing
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Same
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
  namespace: apps
spec:
  parentRefs:
  - name: web
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: echo
      port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: apps
spec:
  selector:
    app: echo
  ports:
  - name: http
    port: 8080
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-abc
  namespace: apps
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
endpoints:
- addresses: ["10.1.2.3"]
  conditions:
    ready: true
ports:
- name: http
  port: 8080
  protocol: TCP
"#;

/// The document of [`SCENARIO`] that declares `kind` (the first one).
pub fn scenario_doc(kind: &str) -> String {
    let header = format!("kind: {kind}\n");
    SCENARIO
        .split("\n---\n")
        .find(|d| d.contains(&header))
        .unwrap()
        .to_owned()
}

/// The condition of `type_` in `conditions`, as `(status, reason, observedGeneration)`.
pub fn condition(conditions: &[Condition], type_: &str) -> Option<(String, String, Option<i64>)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation))
}

/// The Gateway's conditions, once it has a status.
pub async fn gateway_conditions(client: &Client, ns: &str, name: &str) -> Option<Vec<Condition>> {
    let api: Api<Gateway> = Api::namespaced(client.clone(), ns);
    api.get_status(name).await.ok()?.status?.conditions
}

/// The GatewayClass's conditions, once it has a status.
pub async fn class_conditions(client: &Client, name: &str) -> Option<Vec<Condition>> {
    let api: Api<GatewayClass> = Api::all(client.clone());
    api.get_status(name).await.ok()?.status?.conditions
}

/// The route's status, once it has one.
pub async fn route(client: &Client, ns: &str, name: &str) -> Option<HttpRoute> {
    let api: Api<HttpRoute> = Api::namespaced(client.clone(), ns);
    api.get_status(name).await.ok()
}

/// The scenario's route with a filter that adds `header: value` to every request: a
/// change the proxy can only learn from the operator.
pub fn tagged_route(header: &str, value: &str) -> String {
    scenario_doc("HTTPRoute").replace(
        "    backendRefs:\n",
        &format!(
            "    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        \
             add:\n        - name: {header}\n          value: {value}\n    backendRefs:\n"
        ),
    )
}

/// The scenario route's Accepted condition for parent `web`, as (status,
/// observedGeneration).
pub async fn route_accepted(client: &Client) -> Option<(String, Option<i64>)> {
    let conditions = route(client, "apps", "echo")
        .await?
        .status?
        .parents
        .into_iter()
        .find(|p| p.parent_ref.name == "web")?
        .conditions;
    let (status, _, generation) = condition(&conditions, portico_api::names::condition::ACCEPTED)?;
    Some((status, generation))
}

/// Waits until Gateway `ns/name` is Programmed; panics after `within`.
pub async fn wait_programmed(client: &Client, ns: &str, name: &str, within: Duration) {
    portico_testkit::eventually(within, || async {
        let c = gateway_conditions(client, ns, name).await?;
        (condition(&c, portico_api::names::condition::PROGRAMMED)?.0 == "True").then_some(())
    })
    .await
    .unwrap();
}
