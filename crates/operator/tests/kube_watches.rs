//! What the Kubernetes provider watches beyond the route kinds, against the test API
//! server: BackendTLSPolicies and only the ConfigMaps they name as CA bundles (reaching
//! the translator as the Cluster's UpstreamTls), and TLS Secrets of listeners in other
//! namespaces, usable once a ReferenceGrant allows them.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube_common::*;
use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::gateways::GatewayStatusListeners;
use portico_api::names::{self, condition, reason};
use portico_operator::kube::Snapshot;
use portico_operator::{Operator, start};
use portico_testkit::eventually;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A self-signed certificate (a CA, so that it can be a trust anchor) and its key, in
/// PEM.
fn certificate(name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Indents `pem` for a YAML block scalar at `spaces`.
fn indent(pem: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    pem.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn config_map(name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: apps\ndata:\n  ca.crt: |\n{}",
        indent(ca_pem, 4)
    )
}

/// A BackendTLSPolicy on Service `echo` trusting the CA in ConfigMap `echo-ca`.
const POLICY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata:
  name: echo-tls
  namespace: apps
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: echo
  validation:
    hostname: echo.example.com
    caCertificateRefs:
    - group: ""
      kind: ConfigMap
      name: echo-ca
"#;

async fn latest(operator: &Operator) -> Option<Arc<Snapshot>> {
    operator.snapshots.borrow().clone()
}

/// The CA the translator gave the Cluster of `echo:8080`, once it has TLS.
fn upstream_ca(snapshot: &Snapshot) -> Option<Vec<u8>> {
    snapshot
        .output
        .config
        .clusters
        .iter()
        .find(|c| c.name == "apps/echo:8080")?
        .tls
        .as_ref()
        .map(|t| t.ca_pem.clone())
}

fn config_map_names(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .inputs
        .config_maps
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{}/{}",
                c.metadata.namespace.as_deref()?,
                c.metadata.name.as_deref()?
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policies_and_their_ca_config_maps_reach_the_translator() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let (ca, _) = certificate("echo.example.com");
    // A ConfigMap nobody names: never watched.
    apply(&server, &config_map("unrelated", &ca));
    // The policy comes before its CA.
    apply(&server, POLICY);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    // A load balancer gives the Gateway's Service an address: the Gateway is programmed
    // and its config has listeners.
    let services: Api<portico_api::k8s::Service> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        services.get_opt("portico-gateway-web").await.ok().flatten()
    })
    .await
    .unwrap();
    services
        .patch_status(
            "portico-gateway-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.9.8.7"}]}}})),
        )
        .await
        .unwrap();

    let first = eventually(WAIT, || async {
        let s = latest(&operator).await?;
        let programmed = !s.output.config.listeners.is_empty();
        (programmed && s.inputs.backend_tls_policies.len() == 1).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(config_map_names(&first), Vec::<String>::new());
    assert_eq!(upstream_ca(&first), None, "no TLS without its CA");

    // The CA arrives: the Cluster speaks TLS with it, the policy is accepted.
    apply(&server, &config_map("echo-ca", &ca));
    let watched = eventually(WAIT, || async {
        let s = latest(&operator).await?;
        (!s.inputs.config_maps.is_empty()).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(config_map_names(&watched), ["apps/echo-ca"]);
    let with_ca = eventually(WAIT, || async {
        let s = latest(&operator).await?;
        upstream_ca(&s).is_some().then_some(s)
    })
    .await
    .unwrap_or_else(|_| panic!("no UpstreamTls: {:?}", watched.output.config.clusters));
    let pem = String::from_utf8(upstream_ca(&with_ca).unwrap()).unwrap();
    assert!(pem.contains(ca.trim()), "{pem}");

    let policies: Api<BackendTlsPolicy> = Api::namespaced(client.clone(), "apps");
    let ancestors = eventually(WAIT, || async {
        let p = policies.get_status("echo-tls").await.ok()?;
        let ours: Vec<_> = p
            .status?
            .ancestors
            .into_iter()
            .filter(|a| a.controller_name == names::CONTROLLER_NAME)
            .collect();
        ours.iter()
            .all(|a| condition(&a.conditions, condition::ACCEPTED).is_some_and(|c| c.0 == "True"))
            .then_some(ours)
            .filter(|o| !o.is_empty())
    })
    .await
    .unwrap();
    assert_eq!(ancestors[0].ancestor_ref.name, "web");
    assert_eq!(
        condition(&ancestors[0].conditions, condition::ACCEPTED),
        Some(("True".into(), reason::ACCEPTED.into(), Some(1)))
    );

    // The policy goes: its ConfigMap is no longer watched nor held.
    policies
        .delete("echo-tls", &DeleteParams::default())
        .await
        .unwrap();
    let without = eventually(WAIT, || async {
        let s = latest(&operator).await?;
        s.inputs.backend_tls_policies.is_empty().then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(config_map_names(&without), Vec::<String>::new());
    assert_eq!(upstream_ca(&without), None);

    shutdown.cancel();
    operator.wait().await;
}

/// `bytes` in base64, as Secret `data` holds them (k8s-openapi's `ByteString` encodes).
fn base64(bytes: &[u8]) -> String {
    let json = serde_json::to_value(portico_api::k8s_openapi::ByteString(bytes.to_vec())).unwrap();
    json.as_str().unwrap().to_owned()
}

/// Gateway `secure` in `apps` with an HTTPS listener whose certificate is the Secret
/// `cert` of namespace `certs`.
fn secure_gateway(cert: &str, key: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: certs
---
apiVersion: v1
kind: Secret
metadata:
  name: cert
  namespace: certs
type: kubernetes.io/tls
data:
  tls.crt: {}
  tls.key: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: secure
  namespace: apps
spec:
  gatewayClassName: portico
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example.com
    tls:
      mode: Terminate
      certificateRefs:
      - name: cert
        namespace: certs
"#,
        base64(cert.as_bytes()),
        base64(key.as_bytes())
    )
}

const GRANT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: gateways-from-apps
  namespace: certs
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: Gateway
    namespace: apps
  to:
  - group: ""
    kind: Secret
"#;

async fn https_listener(client: &kube::Client) -> Option<GatewayStatusListeners> {
    let api: Api<portico_api::gateway::Gateway> = Api::namespaced(client.clone(), "apps");
    api.get_status("secure")
        .await
        .ok()?
        .status?
        .listeners?
        .into_iter()
        .find(|l| l.name == "https")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_in_another_namespace_needs_a_reference_grant() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let (cert, key) = certificate("secure.example.com");
    apply(&server, &secure_gateway(&cert, &key));
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    // Gateway API (GatewayTLSConfig certificateRefs): "A single CertificateRef to a
    // Kubernetes Secret [...] in a different namespace [...] requires a ReferenceGrant";
    // without one the listener's ResolvedRefs is False with reason RefNotPermitted.
    let refused = eventually(WAIT, || async {
        let l = https_listener(&client).await?;
        let c = condition(&l.conditions, condition::RESOLVED_REFS)?;
        (c.0 == "False").then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(refused.1, reason::REF_NOT_PERMITTED);

    apply(&server, GRANT);
    let resolved = eventually(WAIT, || async {
        let l = https_listener(&client).await?;
        let c = condition(&l.conditions, condition::RESOLVED_REFS)?;
        (c.0 == "True").then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(resolved.1, reason::RESOLVED_REFS);

    // Only certificates are watched: an Opaque Secret never reaches the store.
    let secrets: Api<portico_api::k8s::Secret> = Api::namespaced(client.clone(), "certs");
    secrets
        .patch(
            "opaque",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "opaque", "namespace": "certs"},
                "type": "Opaque", "stringData": {"password": "hunter2"}
            })),
        )
        .await
        .unwrap();
    apply(
        &server,
        "apiVersion: v1\nkind: Service\nmetadata: {name: after-opaque, namespace: apps}\nspec:\n  ports: [{port: 1}]\n",
    );
    let snapshot = eventually(WAIT, || async {
        let s = latest(&operator).await?;
        s.inputs
            .services
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("after-opaque"))
            .then_some(s)
    })
    .await
    .unwrap();
    let names: Vec<Option<&str>> = snapshot
        .inputs
        .secrets
        .iter()
        .map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, [Some("cert")]);

    shutdown.cancel();
    operator.wait().await;
}
