//! Issue 7's acceptance with every process real: the test API server stands in for the
//! cluster, and `portico-cert-sync`, `portico-operator --secrets-namespace` and
//! `portico-proxy` run as they do in a cluster. The test only writes objects and talks
//! to the proxy with `curl --cacert`, as a user would.
//!
//! ```text
//!   test ─kube::Client─> TestApiServer (127.0.0.1) <─┬─ portico-cert-sync: Secrets ──copies──> portico-secrets
//!     │                                              └─ portico-operator --secrets-namespace portico-secrets
//!     │                                                   (LB-IPAM, config server on the pod network's host address)
//!     │ curl --cacert CA --resolve web.example.com:P:<proxy pod>                     │ config stream
//!     └──> pod network (netns, 10.244.K.0/24): portico-proxy (0.0.0.0:P) <────────────┘
//!                                               └──> portico-echo pod :3000 (EndpointSlice)
//! ```
//!
//! Privileged: the pods need a network namespace (root, CI); elsewhere each test says
//! SKIPPED loudly and passes. Needs `curl` (the acceptance is written as a curl command).
//! The binaries are taken from the folder of this package's `portico-cert-sync` (a
//! workspace build or test puts `portico-operator`, `portico-proxy` and `portico-echo`
//! there too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use portico_api::gateway::Gateway;
use portico_api::k8s::{ObjectMeta, Secret, Service};
use portico_api::k8s_openapi::ByteString;
use portico_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use portico_api::names::{self, condition, reason};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{PodNetwork, Process, eventually};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on every wait for the processes to do something ("within seconds", with room
/// for a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);
const SECRETS: &str = names::DEFAULT_SECRETS_NAMESPACE;
const HOST: &str = "web.example.com";
const ECHO_PORT: u16 = 3000;
const PROXY_ADMIN_PORT: u16 = 9902;
const CA_NAME: &str = "Portico cert-sync e2e CA";

/// A CA that signs the served certificates; curl trusts only it.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// `kubernetes.io/tls` data for [`HOST`] with `common_name` as its subject.
    fn issue(&self, common_name: &str) -> BTreeMap<String, ByteString> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(cert.pem().into_bytes())),
            (
                "tls.key".to_owned(),
                ByteString(key.serialize_pem().into_bytes()),
            ),
        ])
    }
}

fn tls_secret(
    ns: &str,
    name: &str,
    annotations: &[(&str, &str)],
    data: BTreeMap<String, ByteString>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Namespaces, our class, an address pool, and Service `apps/echo` whose one endpoint is
/// the echo pod at `echo_ip`, with HTTPRoute `apps/echo` to it from Gateway `web`.
fn base(echo_ip: Ipv4Addr) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: certs}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {SECRETS}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portico}}
spec: {{controllerName: {controller}}}
---
apiVersion: portico.dev/v1alpha1
kind: LoadBalancerIPPool
metadata: {{name: test}}
spec:
  blocks:
  - {{start: 198.51.100.10, stop: 198.51.100.20}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: apps}}
spec:
  ports:
  - {{name: http, port: 8080, targetPort: {ECHO_PORT}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-pod
  namespace: apps
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints:
- addresses: ["{echo_ip}"]
  conditions: {{ready: true}}
ports:
- {{name: http, port: {ECHO_PORT}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: echo, namespace: apps}}
spec:
  parentRefs:
  - name: web
  hostnames: ["{HOST}"]
  rules:
  - backendRefs:
    - {{name: echo, port: 8080}}
"#,
        controller = names::CONTROLLER_NAME,
    )
}

/// Gateway `apps/web`: one HTTPS listener `https` on 443 for [`HOST`] whose certificate
/// is Secret `cert_ns/cert_name` (`cert_ns` `None`: the Gateway's own namespace), with
/// `annotations` (`key: value` lines).
fn gateway(cert_ns: Option<&str>, cert_name: &str, annotations: &str) -> String {
    let namespace = cert_ns.map_or(String::new(), |ns| format!(", namespace: {ns}"));
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: apps
  annotations: {{{annotations}}}
spec:
  gatewayClassName: portico
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: {HOST}
    tls:
      mode: Terminate
      certificateRefs:
      - {{name: {cert_name}{namespace}}}
"#
    )
}

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

/// A condition of the Gateway's listener `https`: (status, reason, message).
type ListenerCondition = (String, String, String);

/// Everything running, and what the test needs to reach it.
struct Cluster {
    server: TestApiServer,
    client: Client,
    network: Arc<PodNetwork>,
    proxy_ip: Ipv4Addr,
    /// Stopped before the API server (their output is shown when a wait fails).
    processes: Vec<(&'static str, Process)>,
    ca: TestCa,
    dir: TempDir,
}

/// Why this test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = PodNetwork::unavailable() {
        return Some(format!("needs root for its pod network ({why})"));
    }
    for bin in ["portico-operator", "portico-proxy", "portico-echo"] {
        if !bin_dir().join(bin).is_file() {
            return Some(format!(
                "{} missing: `cargo build --bin portico-operator --bin portico-proxy --bin portico-echo` first",
                bin_dir().join(bin).display()
            ));
        }
    }
    None
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_portico-cert-sync"))
        .parent()
        .unwrap()
        .to_owned()
}

fn crds() -> [PathBuf; 2] {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../../shared/gateway-api/crds/standard"),
        manifest.join("../api/crds"),
    ]
}

/// The value of `name=` in a plain (NO_COLOR) tracing line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"').to_owned())
}

impl Cluster {
    /// Starts the API server with the base objects, the echo pod, cert-sync, the
    /// operator and the proxy; `None` (after saying why) where it cannot run.
    async fn start(test: &str) -> Option<Self> {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {test}: {why}");
            return None;
        }
        assert!(
            std::process::Command::new("curl")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{test} needs curl on the PATH"
        );
        let network = Arc::new(PodNetwork::create().unwrap());
        let server = TestApiServer::start().await.unwrap();
        for dir in crds() {
            server.apply_crds_from(dir).unwrap();
        }
        let dir = TempDir::new().unwrap();
        let kubeconfig = server.kubeconfig(dir.path().join("kubeconfig")).unwrap();
        let client = server.client().unwrap();
        let mut cluster = Self {
            server,
            client,
            proxy_ip: network.allocate().unwrap(),
            network: network.clone(),
            processes: Vec::new(),
            ca: TestCa::new(),
            dir,
        };

        let echo_ip = network.allocate().unwrap();
        cluster.apply(&base(echo_ip));
        let mut echo = network.command(bin_dir().join("portico-echo"));
        echo.arg("--listen")
            .arg(SocketAddr::from((echo_ip, ECHO_PORT)).to_string())
            .args([
                "--pod",
                "echo-pod",
                "--namespace",
                "apps",
                "--service",
                "echo",
            ]);
        cluster.spawn("portico-echo", echo, "listening on").await;

        let mut cert_sync = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico-cert-sync"));
        cert_sync
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--identity", "e2e", "--lease-namespace", "default"])
            .args(["--lease-duration", "3s", "--lease-retry-period", "500ms"])
            .args(["--secrets-namespace", SECRETS])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--debounce", "20ms", "--resync", "2s", "--log", "info"]);
        cluster
            .spawn(
                "portico-cert-sync",
                cert_sync,
                "metrics and health listening",
            )
            .await;

        let mut operator = tokio::process::Command::new(bin_dir().join("portico-operator"));
        operator
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--identity", "e2e", "--lease-namespace", "default"])
            .args(["--lease-duration", "3s", "--lease-retry-period", "500ms"])
            .args(["--secrets-namespace", SECRETS, "--lb-ipam", "--insecure"])
            .args(["--debounce", "20ms", "--metrics-listen", "127.0.0.1:0"])
            .arg("--config-listen")
            .arg(format!("{}:0", network.host_ip()))
            .args(["--log", "info"]);
        let line = cluster
            .spawn("portico-operator", operator, "config server listening")
            .await;
        let config_addr = field(&line, "addr").unwrap();

        let mut proxy = network.command(bin_dir().join("portico-proxy"));
        proxy
            .arg("--operator")
            .arg(format!("http://{config_addr}"))
            .args(["--insecure", "--node", "e2e", "--admin"])
            .arg(SocketAddr::from((cluster.proxy_ip, PROXY_ADMIN_PORT)).to_string())
            .args(["--log", "info"]);
        cluster
            .spawn("portico-proxy", proxy, "admin endpoint listening")
            .await;
        Some(cluster)
    }

    /// Spawns `command` (plain log lines) and waits for a line containing `ready`.
    async fn spawn(
        &mut self,
        name: &'static str,
        mut command: tokio::process::Command,
        ready: &str,
    ) -> String {
        command.env("NO_COLOR", "1");
        let process = Process::spawn_command(command).unwrap();
        let line = process.wait_for_line(ready, WAIT).await;
        self.processes.push((name, process));
        match line {
            Ok(line) => line,
            Err(e) => panic!("{name} did not start: {e}\n{}", self.logs()),
        }
    }

    /// The output of every process, for failure messages.
    fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|(name, p)| format!("--- {name}\n{}", p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `what` once `f` gives it, or a failure with everyone's output.
    async fn wait<F, Fut, R>(&self, what: &str, f: F) -> R
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, String>>,
    {
        match eventually(WAIT, f).await {
            Ok(r) => r,
            Err(e) => panic!("{what}: {e}\n{}", self.logs()),
        }
    }

    fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.server.apply_file(&path).unwrap();
    }

    fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn create_secret(&self, secret: Secret) {
        let ns = secret.metadata.namespace.clone().unwrap();
        self.secrets(&ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    async fn replace_secret(&self, mut secret: Secret) {
        let ns = secret.metadata.namespace.clone().unwrap();
        let name = secret.metadata.name.clone().unwrap();
        let api = self.secrets(&ns);
        secret.metadata.resource_version = api.get(&name).await.unwrap().metadata.resource_version;
        api.replace(&name, &PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// cert-sync's copies of Secret `ns/name` in the secrets namespace (found by its
    /// annotation, as consumers find them).
    async fn copies_of(&self, ns: &str, name: &str) -> Vec<Secret> {
        let source = format!("{ns}/{name}");
        let selector = format!("{}={}", names::MANAGED_BY_LABEL, names::CERT_SYNC_MANAGER);
        self.secrets(SECRETS)
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(names::SOURCE_ANNOTATION))
                    == Some(&source)
            })
            .collect()
    }

    /// The listener `https` condition `type_` of Gateway `apps/web`.
    async fn listener_condition(&self, type_: &str) -> Result<ListenerCondition, String> {
        let api: Api<Gateway> = Api::namespaced(self.client.clone(), "apps");
        let gateway = api.get_status("web").await.map_err(|e| e.to_string())?;
        let listener = gateway
            .status
            .and_then(|s| s.listeners)
            .unwrap_or_default()
            .into_iter()
            .find(|l| l.name == "https")
            .ok_or("no status for listener https yet")?;
        listener
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            .ok_or_else(|| format!("listener https has no {type_} condition"))
    }

    /// The listener's `type_` condition once its status is `status`.
    async fn listener_until(&self, type_: &str, status: &str) -> ListenerCondition {
        self.wait(&format!("listener https {type_}={status}"), || async {
            let c = self.listener_condition(type_).await?;
            if c.0 == status {
                Ok(c)
            } else {
                Err(format!("{type_} is {c:?}"))
            }
        })
        .await
    }

    /// The proxy port serving Gateway `apps/web`'s port 443 (its Service's targetPort).
    async fn proxy_port(&self) -> u16 {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "apps");
        self.wait("the Gateway's Service", || async {
            let service = services
                .get("portico-gateway-web")
                .await
                .map_err(|e| e.to_string())?;
            let target = service
                .spec
                .and_then(|s| s.ports)
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.port == 443)
                .and_then(|p| p.target_port);
            match target {
                Some(IntOrString::Int(p)) => u16::try_from(p).map_err(|e| e.to_string()),
                other => Err(format!("port 443: targetPort {other:?}")),
            }
        })
        .await
    }

    /// `curl -v --cacert CA --resolve HOST:P:<proxy> https://HOST:P/`: Ok with curl's
    /// verbose output when it got a 200, Err with the output otherwise.
    async fn curl(&self, port: u16) -> Result<String, String> {
        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&ca, &self.ca.pem).unwrap();
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "-v", "--fail", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:{}", self.proxy_ip))
            .arg(format!("https://{HOST}:{port}/"))
            .output()
            .await
            .map_err(|e| format!("running curl: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() && text.contains("\"pod\"") {
            Ok(text)
        } else {
            Err(format!("curl: {}\n{text}", output.status))
        }
    }

    /// curl's output once the certificate it was served has subject CN `subject`.
    async fn curl_until_subject(&self, port: u16, subject: &str) -> String {
        self.wait(&format!("curl served CN={subject}"), || async {
            let out = self.curl(port).await?;
            if out.contains(&format!("CN={subject}")) {
                Ok(out)
            } else {
                Err(format!("not yet CN={subject}:\n{out}"))
            }
        })
        .await
    }

    async fn delete_gateway(&self) {
        let api: Api<Gateway> = Api::namespaced(self.client.clone(), "apps");
        api.delete("web", &DeleteParams::default()).await.unwrap();
    }

    async fn stop(mut self) {
        while let Some((name, process)) = self.processes.pop() {
            if let Err(e) = process.stop(Duration::from_secs(10)).await {
                eprintln!("stopping {name}: {e}");
            }
        }
        self.server.shutdown().await;
        drop(self.network);
    }
}

/// A Secret created after its Gateway, plain or as cert-manager writes it: first the
/// listener says why it is not programmed, then it is, and curl gets an answer, with no
/// step in between; deleting the Gateway removes the copy.
async fn secret_after_gateway(test: &str, cert_manager: bool) {
    let Some(cluster) = Cluster::start(test).await else {
        return;
    };
    let annotations = if cert_manager {
        "cert-manager.io/cluster-issuer: letsencrypt"
    } else {
        ""
    };
    cluster.apply(&gateway(None, "web-cert", annotations));

    // Not programmed, and saying why: the Secret does not exist (yet).
    let missing = "Secret apps/web-cert does not exist";
    let (resolved, programmed) = cluster
        .wait("the listener reports the missing Secret", || async {
            let resolved = cluster.listener_condition(condition::RESOLVED_REFS).await?;
            let programmed = cluster.listener_condition(condition::PROGRAMMED).await?;
            if resolved.2.contains(missing) && programmed.2.contains(missing) {
                Ok((resolved, programmed))
            } else {
                Err(format!(
                    "ResolvedRefs {resolved:?}, Programmed {programmed:?}"
                ))
            }
        })
        .await;
    assert_eq!(resolved.0, "False", "{resolved:?}");
    assert_eq!(resolved.1, reason::INVALID_CERTIFICATE_REF, "{resolved:?}");
    assert_eq!(programmed.0, "False", "{programmed:?}");
    assert!(cluster.copies_of("apps", "web-cert").await.is_empty());

    let data = cluster.ca.issue("web.example.com v1");
    let secret = if cert_manager {
        // cert-manager cannot run here: the test plays its part. Its gateway-shim
        // would see the annotation, create Certificate `web-cert` for the listener's
        // hostname and, once issued, write this Secret (with these annotations) into
        // the Gateway's namespace. Nothing else is done by hand.
        tls_secret(
            "apps",
            "web-cert",
            &[
                ("cert-manager.io/certificate-name", "web-cert"),
                ("cert-manager.io/issuer-name", "letsencrypt"),
                ("cert-manager.io/issuer-kind", "ClusterIssuer"),
                ("cert-manager.io/issuer-group", "cert-manager.io"),
                ("cert-manager.io/common-name", HOST),
                ("cert-manager.io/alt-names", HOST),
            ],
            data.clone(),
        )
    } else {
        tls_secret("apps", "web-cert", &[], data.clone())
    };
    cluster.create_secret(secret).await;

    let programmed = cluster.listener_until(condition::PROGRAMMED, "True").await;
    assert_eq!(programmed.1, reason::PROGRAMMED, "{programmed:?}");
    let resolved = cluster.listener_condition(condition::RESOLVED_REFS).await;
    assert_eq!(resolved.unwrap().0, "True");
    let port = cluster.proxy_port().await;
    let out = cluster.curl_until_subject(port, "web.example.com v1").await;
    assert!(out.contains(CA_NAME), "issuer is the test CA:\n{out}");
    let copies = cluster.copies_of("apps", "web-cert").await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].data.as_ref(), Some(&data));

    cluster.delete_gateway().await;
    cluster
        .wait("the Gateway's copy deleted", || async {
            let left = cluster.copies_of("apps", "web-cert").await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} copies left", left.len()))
            }
        })
        .await;
    // The source is the user's (or cert-manager's): it stays.
    assert!(
        cluster
            .secrets("apps")
            .get_opt("web-cert")
            .await
            .unwrap()
            .is_some()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_created_after_its_gateway_is_served_within_seconds() {
    secret_after_gateway(
        "a_secret_created_after_its_gateway_is_served_within_seconds",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_annotated_gateway_is_served_once_its_secret_is_issued() {
    secret_after_gateway(
        "cert_manager_annotated_gateway_is_served_once_its_secret_is_issued",
        true,
    )
    .await;
}

/// An HTTP/1.1 connection over TLS to the proxy, trusting the test CA only.
async fn open_connection(cluster: &Cluster, port: u16) -> SendRequest<Empty<Bytes>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cluster.ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect((cluster.proxy_ip, port)).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// One GET on `sender`'s connection: the echo pod's name.
async fn get_pod(sender: &mut SendRequest<Empty<Bytes>>, port: u16) -> String {
    sender.ready().await.unwrap();
    let request = hyper::Request::get("/")
        .header(hyper::header::HOST, format!("{HOST}:{port}"))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("an answer on the open connection")
        .unwrap();
    assert_eq!(response.status(), hyper::StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["pod"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reaches_new_handshakes_and_open_connections_keep_working() {
    let Some(cluster) =
        Cluster::start("rotation_reaches_new_handshakes_and_open_connections_keep_working").await
    else {
        return;
    };
    cluster
        .create_secret(tls_secret(
            "apps",
            "web-cert",
            &[],
            cluster.ca.issue("web.example.com v1"),
        ))
        .await;
    cluster.apply(&gateway(None, "web-cert", ""));
    cluster.listener_until(condition::PROGRAMMED, "True").await;
    let port = cluster.proxy_port().await;
    cluster.curl_until_subject(port, "web.example.com v1").await;

    let mut open = open_connection(&cluster, port).await;
    assert_eq!(get_pod(&mut open, port).await, "echo-pod");

    let rotated = cluster.ca.issue("web.example.com v2");
    cluster
        .replace_secret(tls_secret("apps", "web-cert", &[], rotated.clone()))
        .await;
    let out = cluster.curl_until_subject(port, "web.example.com v2").await;
    assert!(!out.contains("CN=web.example.com v1"), "{out}");
    let copies = cluster.copies_of("apps", "web-cert").await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].data.as_ref(), Some(&rotated));

    // The connection opened on v1 is still served.
    assert_eq!(get_pod(&mut open, port).await, "echo-pod");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_ref_needs_a_reference_grant_for_the_copy_and_the_listener() {
    let Some(cluster) = Cluster::start(
        "a_cross_namespace_ref_needs_a_reference_grant_for_the_copy_and_the_listener",
    )
    .await
    else {
        return;
    };
    let data = cluster.ca.issue("web.example.com shared");
    cluster
        .create_secret(tls_secret("certs", "shared", &[], data.clone()))
        .await;
    cluster.apply(&gateway(Some("certs"), "shared", ""));

    let resolved = cluster
        .listener_until(condition::RESOLVED_REFS, "False")
        .await;
    assert_eq!(resolved.1, reason::REF_NOT_PERMITTED, "{resolved:?}");
    assert!(resolved.2.contains("ReferenceGrant"), "{resolved:?}");
    let programmed = cluster.listener_condition(condition::PROGRAMMED).await;
    assert_eq!(programmed.unwrap().0, "False");
    // cert-sync has judged the reference (its Event says so) and copied nothing.
    cluster
        .wait("cert-sync's RefNotPermitted Event", || async {
            let events: Api<portico_api::k8s_openapi::api::events::v1::Event> =
                Api::namespaced(cluster.client.clone(), "apps");
            let list = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some(names::event::REF_NOT_PERMITTED))
                .then_some(())
                .ok_or_else(|| "no RefNotPermitted Event yet".to_owned())
        })
        .await;
    assert!(cluster.copies_of("certs", "shared").await.is_empty());

    cluster.apply(GRANT);
    let programmed = cluster.listener_until(condition::PROGRAMMED, "True").await;
    assert_eq!(programmed.1, reason::PROGRAMMED);
    let copies = cluster.copies_of("certs", "shared").await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].data.as_ref(), Some(&data));
    let port = cluster.proxy_port().await;
    cluster
        .curl_until_subject(port, "web.example.com shared")
        .await;
    cluster.stop().await;
}
