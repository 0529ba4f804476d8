//! Certificate rotation through the real `portico standalone` process (issue 4,
//! acceptance): an HTTPS listener serves the certificate of a `kubernetes.io/tls` Secret
//! file; replacing the Secret's content changes what new handshakes get, while an
//! HTTP/2 connection opened before keeps working.
//!
//! ```text
//!   test CA (ECDSA) ──signs──> v1: RSA,   CN "echo.example rotation v1"
//!                    └─signs──> v2: ECDSA, CN "echo.example rotation v2"
//!
//!   folder: gateway.yaml (HTTPS listener, certificateRefs: echo-tls)
//!           backend.yaml (Service + EndpointSlice -> in-process echo)
//!           secret.yaml  (echo-tls: v1, then replaced atomically by v2)
//!
//!   curl -v --cacert CA --resolve echo.example:PORT:127.0.0.1 https://echo.example:PORT/
//!        "subject:" / "issuer:" lines: v1, then (eventually) v2
//!   h2 client (hyper + rustls), one connection opened while v1 is served:
//!        requests before and after the rotation, all on the same connection
//! ```
//!
//! Needs `curl` on the PATH (the test says so and fails when it is missing): the issue's
//! acceptance is written as a curl command, so the test runs exactly that.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod echoes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use echoes::backend_yaml;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_testkit::{EchoBackend, Process, eventually, free_port, write_file};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(20);
const HOST: &str = "echo.example";
const CA_NAME: &str = "Portico rotation test CA";
const SUBJECT_V1: &str = "echo.example rotation v1";
const SUBJECT_V2: &str = "echo.example rotation v2";

/// An RSA key: ring signs with RSA keys but cannot generate them, so the proxy's tests
/// keep one (test data, never used outside tests).
const RSA_KEY: &str = include_str!("../../proxy/tests/data/rsa-2048.key");

/// A CA that signs the served certificates; the clients trust only it.
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

    /// A server certificate for [`HOST`] with `common_name` as its subject, its key made
    /// with `alg`: `(certificate PEM, key PEM)`.
    fn issue(
        &self,
        common_name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (String, String) {
        let key = if alg == &rcgen::PKCS_RSA_SHA256 {
            KeyPair::from_pem_and_sign_algo(RSA_KEY, alg).unwrap()
        } else {
            KeyPair::generate_for(alg).unwrap()
        };
        let mut params = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A `kubernetes.io/tls` Secret as the folder holds it (`stringData`, as `kubectl apply`
/// accepts it).
fn secret_yaml(cert_pem: &str, key_pem: &str) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: echo-tls\n  namespace: apps\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert_pem),
        indent(key_pem)
    )
}

fn gateway_yaml(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: apps
spec:
  gatewayClassName: portico
  addresses:
    - type: IPAddress
      value: 127.0.0.1
  listeners:
    - name: https
      protocol: HTTPS
      port: {port}
      hostname: {HOST}
      tls:
        mode: Terminate
        certificateRefs:
          - name: echo-tls
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
  namespace: apps
spec:
  parentRefs:
    - name: gw
  rules:
    - backendRefs:
        - name: echo
          port: 80
"#
    )
}

/// What `curl -v` printed about the server certificate of one new handshake.
#[derive(Debug)]
struct CurlSaw {
    subject: String,
    issuer: String,
}

/// Runs the issue's curl command once: `Err` when curl failed or printed no
/// certificate lines.
async fn curl(ca_file: &Path, port: u16) -> Result<CurlSaw, String> {
    let output = tokio::process::Command::new("curl")
        .arg("-v")
        .arg("--silent")
        .arg("--max-time")
        .arg("5")
        .arg("--cacert")
        .arg(ca_file)
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .arg(format!("https://{HOST}:{port}/"))
        .output()
        .await
        .map_err(|e| format!("running curl: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("curl exited with {}:\n{stderr}", output.status));
    }
    let line = |label: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim_start_matches('*').trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no {label:?} line in curl's output:\n{stderr}"))
    };
    let body: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("curl's body is not the echo's JSON: {e}"))?;
    if body["service"] != "echo" {
        return Err(format!("answered by {body}, not the echo Service"));
    }
    Ok(CurlSaw {
        subject: line("subject:")?,
        issuer: line("issuer:")?,
    })
}

/// An HTTP/2 connection over TLS to the gateway, trusting only `ca_pem`: the request
/// handle and the certificate (DER) the handshake got.
async fn h2_connect(
    addr: SocketAddr,
    ca_pem: &str,
) -> (SendRequest<Empty<Bytes>>, CertificateDer<'static>) {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN did not pick h2"
    );
    let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    (sender, leaf)
}

/// The DER of a PEM certificate.
fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// One GET on the open HTTP/2 connection; the echo's JSON.
async fn h2_get(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> Value {
    sender.ready().await.expect("the HTTP/2 connection closed");
    let request = Request::get(format!("https://{HOST}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_secret_serves_new_handshakes_and_open_h2_connections_keep_working() {
    let version = std::process::Command::new("curl").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "this test runs curl (the issue's acceptance command): install curl"
    );

    let ca = TestCa::new();
    let (v1_cert, v1_key) = ca.issue(SUBJECT_V1, &rcgen::PKCS_RSA_SHA256);
    let (v2_cert, v2_key) = ca.issue(SUBJECT_V2, &rcgen::PKCS_ECDSA_P256_SHA256);

    let backend = EchoBackend::start("echo-6b7c9-qrstu", "apps", "echo")
        .await
        .unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_file(dir.path(), "ca.pem", &ca.pem).unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    write_file(&manifests, "gateway.yaml", gateway_yaml(port)).unwrap();
    write_file(&manifests, "backend.yaml", backend_yaml(&backend)).unwrap();
    write_file(&manifests, "secret.yaml", secret_yaml(&v1_cert, &v1_key)).unwrap();

    let portico = Process::spawn(
        env!("CARGO_BIN_EXE_portico"),
        [
            "standalone".as_ref(),
            manifests.as_os_str(),
            "--debounce".as_ref(),
            "50ms".as_ref(),
        ],
    )
    .unwrap();
    portico
        .wait_for_line(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap_or_else(|e| panic!("no listener line: {e}\n{}", portico.output()));
    let gateway = SocketAddr::from(([127, 0, 0, 1], port));

    // curl shows the Secret's certificate: its subject and its issuer.
    let first = eventually(WAIT, || curl(&ca_file, port))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", portico.output()));
    assert!(first.subject.contains(SUBJECT_V1), "{first:?}");
    assert!(first.issuer.contains(CA_NAME), "{first:?}");

    // An HTTP/2 connection, opened while v1 is served, and used.
    let (mut h2, h2_leaf) = h2_connect(gateway, &ca.pem).await;
    assert_eq!(
        h2_leaf,
        der(&v1_cert),
        "the HTTP/2 handshake did not get v1"
    );
    let before = h2_get(&mut h2, "/before").await;
    assert_eq!(before["path"], "/before");
    assert_eq!(before["service"], "echo");

    // The Secret's content is replaced (a new file renamed over the old one, as a
    // Secret volume or `kubectl apply` would change it).
    write_file(&manifests, "secret.yaml", secret_yaml(&v2_cert, &v2_key)).unwrap();

    // New handshakes get the new certificate...
    let rotated = eventually(WAIT, || async {
        let saw = curl(&ca_file, port).await?;
        if saw.subject.contains(SUBJECT_V2) {
            Ok(saw)
        } else {
            Err(format!("still served: {saw:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portico.output()));
    assert!(rotated.issuer.contains(CA_NAME), "{rotated:?}");

    // ...while the connection opened before keeps serving requests, several of them,
    // without a reconnect: `h2` is bound to that one connection.
    for i in 0..5 {
        let path = format!("/after/{i}");
        let after = h2_get(&mut h2, &path).await;
        assert_eq!(after["path"], path.as_str());
    }
    assert!(!h2.is_closed(), "the HTTP/2 connection was closed");

    // A new HTTP/2 connection sees v2 too.
    let (mut fresh, fresh_leaf) = h2_connect(gateway, &ca.pem).await;
    assert_eq!(
        fresh_leaf,
        der(&v2_cert),
        "a new HTTP/2 handshake did not get v2"
    );
    h2_get(&mut fresh, "/fresh").await;

    drop((h2, fresh));
    portico.interrupt().unwrap();
    let output = portico.output();
    let status = portico.stop(WAIT).await.unwrap();
    assert!(status.success(), "portico exited with {status}\n{output}");
    drop(backend);
}
