//! `--secrets-namespace` against the test API server: the operator reads listeners'
//! certificates only from portico-cert-sync's copies in the secrets namespace, each
//! standing in for the Secret its `portico.dev/source` annotation names, so that the
//! Helm chart can deny it Secrets everywhere else.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube_common::*;
use portico_api::config::v1::Certificate;
use portico_api::gateway::Gateway;
use portico_api::gateway::gateways::GatewayStatusListeners;
use portico_api::k8s::{Secret, Service};
use portico_api::names::{self, condition, reason};
use portico_operator::kube::Snapshot;
use portico_operator::{Operator, start};
use portico_testkit::eventually;
use rcgen::{CertificateParams, KeyPair};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const SECRETS_NAMESPACE: &str = "portico-secrets";

/// A self-signed certificate for `name` and its key, in PEM.
fn certificate(name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `bytes` in base64, as Secret `data` holds them (k8s-openapi's `ByteString` encodes).
fn base64(bytes: &[u8]) -> String {
    let json = serde_json::to_value(portico_api::k8s_openapi::ByteString(bytes.to_vec())).unwrap();
    json.as_str().unwrap().to_owned()
}

/// A kubernetes.io/tls Secret with `metadata` lines (indented by two) added.
fn tls_secret(
    ns: &str,
    name: &str,
    extra_metadata: &str,
    (cert, key): &(String, String),
) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n{extra_metadata}type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        base64(cert.as_bytes()),
        base64(key.as_bytes())
    )
}

/// What cert-sync puts on a copy of `source` (`<namespace>/<name>`).
fn copy_metadata(source: &str) -> String {
    format!(
        "  labels:\n    {}: {}\n  annotations:\n    {}: {source}\n",
        names::MANAGED_BY_LABEL,
        names::CERT_SYNC_MANAGER,
        names::SOURCE_ANNOTATION
    )
}

/// Gateway `secure` in `apps` with an HTTPS listener whose certificate is `apps/cert`.
const GATEWAY: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: portico-secrets
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
"#;

async fn https_listener(client: &kube::Client) -> Option<GatewayStatusListeners> {
    let api: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    api.get_status("secure")
        .await
        .ok()?
        .status?
        .listeners?
        .into_iter()
        .find(|l| l.name == "https")
}

/// The listener's condition `type_` once its status is `status`.
async fn listener_condition(
    client: &kube::Client,
    type_: &str,
    status: &str,
) -> Option<(String, String, Option<i64>)> {
    let l = https_listener(client).await?;
    let c = condition(&l.conditions, type_)?;
    (c.0 == status).then_some(c)
}

async fn latest(operator: &Operator) -> Option<Arc<Snapshot>> {
    operator.snapshots.borrow().clone()
}

/// The certificates the config gives the proxy for the listeners' TLS termination.
fn pushed_certificates(snapshot: &Snapshot) -> Vec<Certificate> {
    snapshot
        .output
        .config
        .listeners
        .iter()
        .flat_map(|l| &l.virtual_hosts)
        .filter_map(|v| v.tls.as_ref())
        .flat_map(|t| t.certificates.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_come_from_cert_sync_copies_in_the_secrets_namespace() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, GATEWAY);
    // The source and its copy differ, so the config shows which one was read.
    let source = certificate("secure.example.com");
    let copied = certificate("secure.example.com");
    apply(&server, &tls_secret("apps", "cert", "", &source));
    // In the secrets namespace but not a copy (no source annotation): ignored.
    let stray = certificate("stray.example.com");
    let unannotated = format!(
        "  labels:\n    {}: {}\n",
        names::MANAGED_BY_LABEL,
        names::CERT_SYNC_MANAGER
    );
    apply(
        &server,
        &tls_secret(SECRETS_NAMESPACE, "stray", &unannotated, &stray),
    );

    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let mut config = config("solo");
    config.secrets_namespace = Some(SECRETS_NAMESPACE.into());
    let operator = start(client.clone(), config, shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    // A load balancer gives the Gateway's Service an address, so that the Gateway can be
    // programmed and its listeners reach the config.
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        services
            .get_opt("portico-gateway-secure")
            .await
            .ok()
            .flatten()
    })
    .await
    .unwrap();
    services
        .patch_status(
            "portico-gateway-secure",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.9.8.7"}]}}})),
        )
        .await
        .unwrap();

    // No copy yet: the source in `apps` is not read, so the reference does not resolve.
    // Gateway API (GatewayTLSConfig certificateRefs): a reference to a Secret that does
    // not exist sets ResolvedRefs False with reason InvalidCertificateRef.
    let unresolved = eventually(WAIT, || {
        listener_condition(&client, condition::RESOLVED_REFS, "False")
    })
    .await
    .unwrap();
    assert_eq!(unresolved.1, reason::INVALID_CERTIFICATE_REF);
    let snapshot = latest(&operator).await.unwrap();
    assert!(
        snapshot.inputs.secrets.is_empty(),
        "{:?}",
        snapshot.inputs.secrets
    );
    assert!(pushed_certificates(&snapshot).is_empty());

    // cert-sync's copy appears: it stands in for apps/cert.
    apply(
        &server,
        &tls_secret(
            SECRETS_NAMESPACE,
            "apps-cert-0123abcd",
            &copy_metadata("apps/cert"),
            &copied,
        ),
    );
    let resolved = eventually(WAIT, || {
        listener_condition(&client, condition::RESOLVED_REFS, "True")
    })
    .await
    .unwrap();
    assert_eq!(resolved.1, reason::RESOLVED_REFS);
    let programmed = eventually(WAIT, || {
        listener_condition(&client, condition::PROGRAMMED, "True")
    })
    .await
    .unwrap();
    assert_eq!(programmed.1, reason::PROGRAMMED);

    let certificates = eventually(WAIT, || async {
        let snapshot = latest(&operator).await?;
        let certificates = pushed_certificates(&snapshot);
        (!certificates.is_empty()).then_some(certificates)
    })
    .await
    .unwrap();
    assert_eq!(certificates.len(), 1);
    assert_eq!(certificates[0].name, "apps/cert");
    assert_eq!(certificates[0].cert_chain_pem, copied.0.as_bytes());
    assert_eq!(certificates[0].private_key_pem, copied.1.as_bytes());
    let snapshot = latest(&operator).await.unwrap();
    let keys: Vec<(Option<&str>, Option<&str>)> = snapshot
        .inputs
        .secrets
        .iter()
        .map(|s| (s.metadata.namespace.as_deref(), s.metadata.name.as_deref()))
        .collect();
    assert_eq!(keys, [(Some("apps"), Some("cert"))]);

    // The copy goes (cert-sync deleted it as stale): so does the certificate.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SECRETS_NAMESPACE);
    secrets
        .delete("apps-cert-0123abcd", &DeleteParams::default())
        .await
        .unwrap();
    let gone = eventually(WAIT, || {
        listener_condition(&client, condition::RESOLVED_REFS, "False")
    })
    .await
    .unwrap();
    assert_eq!(gone.1, reason::INVALID_CERTIFICATE_REF);

    shutdown.cancel();
    operator.wait().await;
}
