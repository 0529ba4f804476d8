//! Echo backends for the `portico standalone` tests, and the objects that make each one
//! a Service: a Service named after the backend's service (port 80) and an
//! EndpointSlice with the backend's address on loopback and its pod.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use portico_testkit::EchoBackend;

/// Two echo backends, Services `apps/alpha` and `apps/beta`.
pub async fn alpha_beta() -> (EchoBackend, EchoBackend) {
    let alpha = EchoBackend::start("alpha-7d4f9-abcde", "apps", "alpha")
        .await
        .unwrap();
    let beta = EchoBackend::start("beta-5c8b6-fghij", "apps", "beta")
        .await
        .unwrap();
    (alpha, beta)
}

/// The Service and EndpointSlice of `backend`, in its namespace, as YAML documents.
pub fn backend_yaml(backend: &EchoBackend) -> String {
    let service = backend.service();
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {namespace}
spec:
  ports:
    - name: http
      port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-1
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
ports:
  - name: http
    port: {port}
endpoints:
  - addresses: ["127.0.0.1"]
    conditions:
      ready: true
    targetRef:
      kind: Pod
      name: {pod}
"#,
        namespace = backend.namespace(),
        port = backend.addr().port(),
        pod = backend.pod(),
    )
}
