//! Helpers shared by the integration tests: manifests as text, and a folder to write
//! them in.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};

use portico_api::gateway::HttpRoute;
use portico_api::kube::Resource;

/// Writes `text` to `root/rel`, creating directories on the way.
pub fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, text).unwrap();
    path
}

/// `namespace/name` or `name` of every object, in order.
pub fn names<K: Resource>(objs: &[K]) -> Vec<String> {
    objs.iter()
        .map(|o| match o.meta().namespace.as_deref() {
            Some(ns) => format!("{ns}/{}", o.meta().name.as_deref().unwrap_or("")),
            None => o.meta().name.clone().unwrap_or_default(),
        })
        .collect()
}

pub fn gateway_class(name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\n\
         kind: GatewayClass\n\
         metadata:\n  name: {name}\n\
         spec:\n  controllerName: portico.dev/gateway-controller\n"
    )
}

pub fn gateway(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\n\
         kind: Gateway\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  gatewayClassName: portico\n  listeners:\n  - name: http\n    protocol: HTTP\n    port: 80\n"
    )
}

/// An HTTPRoute with no namespace (so `default`), attached to `infra/gw`, sending to
/// Service `backend`.
pub fn route(name: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\n\
         kind: HTTPRoute\n\
         metadata:\n  name: {name}\n\
         spec:\n  parentRefs:\n  - name: gw\n    namespace: infra\n  \
         rules:\n  - backendRefs:\n    - name: {backend}\n      port: 8080\n"
    )
}

pub fn service(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Service\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  ports:\n  - port: 8080\n"
    )
}

/// The Service name of every route's first backend: tells which version of a route is
/// loaded.
pub fn first_backends(routes: &[HttpRoute]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            r.spec
                .rules
                .as_ref()
                .and_then(|rules| rules.first())
                .and_then(|rule| rule.backend_refs.as_ref())
                .and_then(|refs| refs.first())
                .map(|b| b.name.clone())
                .unwrap_or_default()
        })
        .collect()
}
