//! cert-sync against the test API server, with the production code and a kube client
//! pointed at it: copies appear, follow rotation, honour ReferenceGrants, go away with
//! their Gateway, leave foreign Secrets alone; problems become Events and metrics.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use portico_api::k8s::{ObjectMeta, Secret};
use portico_api::k8s_openapi::ByteString;
use portico_api::k8s_openapi::api::events::v1::Event;
use portico_api::names;
use portico_cert_sync::{CertSync, Config, start};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const SECRETS: &str = "portico-secrets";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api/crds/standard")
}

fn apply(server: &TestApiServer, yaml: &str) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, yaml).unwrap();
    server.apply_file(&path).unwrap();
}

/// Namespaces `apps`, `certs` and the secrets namespace, our GatewayClass, and Gateway
/// `apps/web` whose HTTPS listener refers to `web-cert` (same namespace) and
/// `certs/shared` (another namespace).
const SCENARIO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Namespace
metadata: {name: certs}
---
apiVersion: v1
kind: Namespace
metadata: {name: portico-secrets}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: apps}
spec:
  gatewayClassName: portico
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: web.example.com
    tls:
      certificateRefs:
      - name: web-cert
  - name: shared
    port: 8443
    protocol: HTTPS
    hostname: shared.example.com
    tls:
      certificateRefs:
      - name: shared
        namespace: certs
"#;

const GRANT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways-from-apps, namespace: certs}
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: Gateway, namespace: apps}
  to:
  - {group: "", kind: Secret}
"#;

struct Harness {
    server: TestApiServer,
    client: Client,
    cert_sync: Option<CertSync>,
    shutdown: CancellationToken,
    metrics: SocketAddr,
}

impl Harness {
    async fn start() -> Self {
        let server = TestApiServer::start().await.unwrap();
        server.apply_crds_from(crds_dir()).unwrap();
        apply(&server, SCENARIO);
        let client = server.client().unwrap();
        let mut config = Config::new("test-replica");
        config.lease_namespace = "default".into();
        config.lease_duration = Duration::from_secs(2);
        config.lease_retry_period = Duration::from_millis(200);
        config.metrics_listen = "127.0.0.1:0".parse().unwrap();
        config.debounce = Duration::from_millis(20);
        config.resync = Duration::from_secs(1);
        let shutdown = CancellationToken::new();
        let cert_sync = start(client.clone(), config, shutdown.clone())
            .await
            .unwrap();
        let metrics = cert_sync.metrics_addr;
        Self {
            server,
            client,
            cert_sync: Some(cert_sync),
            shutdown,
            metrics,
        }
    }

    fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn put_secret(&self, secret: Secret) {
        let ns = secret.metadata.namespace.clone().unwrap();
        let name = secret.metadata.name.clone().unwrap();
        let api = self.secrets(&ns);
        match api.get_opt(&name).await.unwrap() {
            None => drop(api.create(&PostParams::default(), &secret).await.unwrap()),
            Some(current) => {
                let mut secret = secret;
                secret.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        }
    }

    /// The copy in the secrets namespace once its data is `data`.
    async fn copy_with(&self, name: &str, data: &BTreeMap<String, ByteString>) -> Secret {
        let api = self.secrets(SECRETS);
        eventually(WAIT, || async {
            let copy = api.get_opt(name).await.ok()??;
            (copy.data.as_ref() == Some(data)).then_some(copy)
        })
        .await
        .unwrap()
    }

    /// The note of the first Event on Gateway `apps/web` with `reason` whose note
    /// contains `needle`.
    async fn event(&self, reason: &str, needle: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "apps");
        eventually(WAIT, || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                let about_web = e.regarding.as_ref()?.name.as_deref() == Some("web");
                let note = e.note.unwrap_or_default();
                (about_web && e.reason.as_deref() == Some(reason) && note.contains(needle))
                    .then_some(note)
            })
        })
        .await
        .unwrap()
    }

    async fn metrics_text(&self) -> String {
        let (_, _, body) = portico_testkit::get(self.metrics, None, "/metrics")
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.cert_sync.take() {
            c.wait().await;
        }
        self.server.shutdown().await;
    }
}

/// A self-signed certificate for `host` expiring at `not_after` (Unix seconds), with
/// its key, as `kubernetes.io/tls` Secret data.
fn tls_data(host: &str, not_after: i64) -> BTreeMap<String, ByteString> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after =
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(u64::try_from(not_after).unwrap());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    BTreeMap::from([
        ("tls.crt".to_owned(), ByteString(cert.pem().into_bytes())),
        (
            "tls.key".to_owned(),
            ByteString(key.serialize_pem().into_bytes()),
        ),
    ])
}

fn tls_secret(ns: &str, name: &str, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn in_days(days: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap() + days * 86_400
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_created_after_its_gateway_is_copied_and_follows_rotation() {
    let h = Harness::start().await;
    let not_after = in_days(90);
    let data = tls_data("web.example.com", not_after);
    h.put_secret(tls_secret("apps", "web-cert", data.clone()))
        .await;

    let copy = h.copy_with("apps-web-cert", &data).await;
    let labels = copy.metadata.labels.unwrap();
    assert_eq!(labels[names::MANAGED_BY_LABEL], names::CERT_SYNC_MANAGER);
    assert_eq!(labels[names::SOURCE_NAMESPACE_LABEL], "apps");
    assert_eq!(labels[names::SOURCE_NAME_LABEL], "web-cert");
    assert_eq!(copy.type_.as_deref(), Some("kubernetes.io/tls"));

    // The expiry gauge carries the certificate's notAfter.
    let series = format!(
        r#"portico_certificate_expiry_timestamp_seconds{{gateway="apps/web",name="web-cert",namespace="apps"}} {not_after}"#
    );
    let text = eventually(WAIT, || async {
        let text = h.metrics_text().await;
        text.contains(&series).then_some(text)
    })
    .await
    .unwrap();
    assert!(text.contains("portico_cert_sync_leader 1"), "{text}");
    // Every series of cert-sync is documented, with its type and labels.
    portico_testkit::metrics::check_documented("cert-sync", &text).unwrap();

    // Rotation: the copy follows the source, and so does the gauge.
    let rotated_after = in_days(180);
    let rotated = tls_data("web.example.com", rotated_after);
    h.put_secret(tls_secret("apps", "web-cert", rotated.clone()))
        .await;
    h.copy_with("apps-web-cert", &rotated).await;
    let series = format!(
        r#"portico_certificate_expiry_timestamp_seconds{{gateway="apps/web",name="web-cert",namespace="apps"}} {rotated_after}"#
    );
    eventually(WAIT, || async {
        h.metrics_text().await.contains(&series).then_some(())
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_ref_is_copied_only_once_a_grant_allows_it() {
    let h = Harness::start().await;
    let data = tls_data("shared.example.com", in_days(90));
    h.put_secret(tls_secret("certs", "shared", data.clone()))
        .await;

    // The pass that reports the ref as not permitted has run, and copied nothing.
    let note = h
        .event(names::event::REF_NOT_PERMITTED, "certs/shared")
        .await;
    assert!(note.contains("ReferenceGrant"), "{note}");
    assert!(
        h.secrets(SECRETS)
            .get_opt("certs-shared")
            .await
            .unwrap()
            .is_none()
    );

    apply(&h.server, GRANT);
    h.copy_with("certs-shared", &data).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_gateway_removes_its_copies_and_foreign_secrets_are_untouched() {
    let h = Harness::start().await;
    // Someone else's Secrets in the secrets namespace: one squatting on the plain name
    // of the copy, one unrelated.
    let theirs = tls_data("theirs.example.com", in_days(30));
    h.put_secret(tls_secret(SECRETS, "apps-web-cert", theirs.clone()))
        .await;
    h.put_secret(tls_secret(SECRETS, "unrelated", theirs.clone()))
        .await;
    let before: Vec<Secret> = {
        let api = h.secrets(SECRETS);
        vec![
            api.get("apps-web-cert").await.unwrap(),
            api.get("unrelated").await.unwrap(),
        ]
    };

    let data = tls_data("web.example.com", in_days(90));
    h.put_secret(tls_secret("apps", "web-cert", data.clone()))
        .await;
    // The plain name is taken: the copy gets a hashed one, found by its labels.
    let api = h.secrets(SECRETS);
    let copy_name = eventually(WAIT, || async {
        let list = api.list(&Default::default()).await.ok()?;
        list.items.into_iter().find_map(|s| {
            let labels = s.metadata.labels.as_ref()?;
            (labels.get(names::SOURCE_NAME_LABEL).map(String::as_str) == Some("web-cert")
                && s.data.as_ref() == Some(&data))
            .then(|| s.metadata.name.clone())
            .flatten()
        })
    })
    .await
    .unwrap();
    assert!(copy_name.starts_with("apps-web-cert-"), "{copy_name}");

    let gateways: Api<portico_api::gateway::Gateway> = Api::namespaced(h.client.clone(), "apps");
    gateways
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        api.get_opt(&copy_name).await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    for s in before {
        let now = api.get(s.metadata.name.as_deref().unwrap()).await.unwrap();
        assert_eq!(now.metadata.resource_version, s.metadata.resource_version);
        assert_eq!(now.data, s.data);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_certificate_produces_an_event_and_the_metric() {
    let h = Harness::start().await;
    // The certificate of one key pair with the key of another.
    let mut data = tls_data("web.example.com", in_days(90));
    let other = tls_data("other.example.com", in_days(90));
    data.insert("tls.key".into(), other["tls.key"].clone());
    h.put_secret(tls_secret("apps", "web-cert", data)).await;

    // (Before the Secret existed, an Event said it was missing: that one is not it.)
    let note = h
        .event(
            names::event::INVALID_CERTIFICATE_REF,
            "do not make a certificate",
        )
        .await;
    assert!(note.contains("Secret apps/web-cert"), "{note}");
    let series =
        r#"portico_certificate_invalid{gateway="apps/web",name="web-cert",namespace="apps"} 1"#;
    eventually(WAIT, || async {
        h.metrics_text().await.contains(series).then_some(())
    })
    .await
    .unwrap();
    h.stop().await;
}
