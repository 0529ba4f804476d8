//! The TLS client of `scheme: https` requests: it trusts only what the case names (a
//! Secret's `tls.crt`, or a ConfigMap key holding a CA), sends the case's server name
//! as SNI, and checks the certificate like upstream's Go client does.
//!
//! ```text
//!   trust {secret | configmap} ──(API server objects)──> PEM ──> RootCertStore
//!   verify: chain, validity, usage by webpki against those roots;
//!           the name by webpki, or, where webpki refuses a name Go accepts, by Go's rule
//! ```
//!
//! Why the second name rule: webpki (like NSS) refuses a wildcard over a single label
//! (`*.org`), and upstream's own certificates rely on one (the HTTPS listener test
//! trusts a certificate for `*`, `*.org`, `*.wildcard.org` and asks for `example.org`).
//! Go's crypto/x509 `matchHostnames` accepts it: a `*` first label matches any one
//! label, the rest must be equal, case-insensitively.
//!
//! And one chain rule: Go's `Certificate.Verify` accepts a certificate that is itself in
//! the root pool, CA or not, as a chain of one, while webpki wants the end-entity issued
//! by a trust anchor. Upstream's TLSRoute tests
//! trust the leaf `tls-checks-certificate` (signed by a CA the client is not given) and
//! expect the backend serving it to be reached through a passthrough listener; so an
//! end-entity byte-identical to a trusted certificate is accepted when it is within its
//! validity period and valid for the name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use serde_json::Value;

use super::base64;
use super::case::{ClientTls, Trust};
use super::cluster::{Cluster, Key};

/// What a request needs to speak TLS: the client config and the name to send.
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// The client for a case's `tls`, trusting what it names in the API server.
pub(crate) fn client(cluster: &Cluster, tls: &ClientTls) -> Result<TlsClient, String> {
    let pem = trusted_pem(cluster, &tls.trust)?;
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("trusted certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("trusted certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("the trusted object holds no PEM certificate".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS verifier: {e}"))?;
    let trusted = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let verifier = Arc::new(GoNames {
        webpki,
        provider: provider.clone(),
        trusted,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("server name {:?}: {e}", tls.server_name))?;
    Ok(TlsClient {
        config: Arc::new(config),
        server_name,
    })
}

/// The PEM text a trust reference points at.
fn trusted_pem(cluster: &Cluster, trust: &Trust) -> Result<String, String> {
    match trust {
        Trust::Secret(nn) => {
            let key = Key::new("Secret", &nn.namespace, &nn.name);
            let secret = cluster
                .get(&key)
                .ok_or_else(|| format!("trust: {key} not found"))?;
            let data = secret
                .pointer("/data/tls.crt")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("trust: {key} has no data tls.crt"))?;
            let bytes = base64::decode(data).map_err(|e| format!("trust: {key} tls.crt: {e}"))?;
            String::from_utf8(bytes).map_err(|_| format!("trust: {key} tls.crt is not PEM"))
        }
        Trust::Configmap(c) => {
            let key = Key::new("ConfigMap", &c.namespace, &c.name);
            let map = cluster
                .get(&key)
                .ok_or_else(|| format!("trust: {key} not found"))?;
            map.get("data")
                .and_then(|d| d.get(&c.key))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("trust: {key} has no data {}", c.key))
        }
    }
}

/// webpki's verification, with Go's name rule and Go's trusted-leaf rule where
/// webpki's are stricter.
#[derive(Debug)]
struct GoNames {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    /// The trusted certificates as given (the root store keeps only their anchors).
    trusted: Vec<CertificateDer<'static>>,
}

impl GoNames {
    /// Go's rule for a certificate in the root pool: it is its own chain; its validity
    /// period and name are still checked.
    fn verify_trusted_leaf(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let now = i64::try_from(now.as_secs())
            .ok()
            .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !cert.validity().is_valid_at(now) {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        let host = server_name.to_str();
        let names = dns_names(end_entity.as_ref());
        if names.iter().any(|pattern| go_matches(pattern, &host)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(format!(
                "certificate for {names:?} is not valid for {host}"
            )))
        }
    }
}

impl ServerCertVerifier for GoNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                // The chain was verified before the name (webpki checks the name last).
                let host = server_name.to_str();
                let names = dns_names(end_entity.as_ref());
                if names.iter().any(|pattern| go_matches(pattern, &host)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::General(format!(
                        "certificate for {names:?} is not valid for {host}"
                    )))
                }
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self
                    .trusted
                    .iter()
                    .any(|t| t.as_ref() == end_entity.as_ref()) =>
            {
                self.verify_trusted_leaf(end_entity, server_name, now)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Go's `matchHostnames`: equal label counts, a `*` first label matches any label.
fn go_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}

/// The DNS names of a certificate's subjectAltName extension (DER).
///
/// A small walk rather than an X.509 library: find the extension by its OID
/// (2.5.29.17), skip the optional `critical` flag, and read the `dNSName` entries
/// (context tag 2) of the GeneralNames sequence inside its OCTET STRING.
fn dns_names(der: &[u8]) -> Vec<String> {
    const SAN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
    let Some(at) = der.windows(SAN_OID.len()).position(|w| w == SAN_OID) else {
        return Vec::new();
    };
    let mut rest = &der[at + SAN_OID.len()..];
    // critical BOOLEAN, if present.
    if rest.first() == Some(&0x01)
        && let Some((_, after)) = tlv(rest)
    {
        rest = after;
    }
    // extnValue OCTET STRING, holding the GeneralNames SEQUENCE.
    if rest.first() != Some(&0x04) {
        return Vec::new();
    }
    let Some((octets, _)) = tlv(rest) else {
        return Vec::new();
    };
    if octets.first() != Some(&0x30) {
        return Vec::new();
    }
    let Some((names, _)) = tlv(octets) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut entries = names;
    while !entries.is_empty() {
        let tag = entries[0];
        let Some((value, after)) = tlv(entries) else {
            break;
        };
        if tag == 0x82
            && let Ok(name) = std::str::from_utf8(value)
        {
            out.push(name.to_owned());
        }
        entries = after;
    }
    out
}

/// One DER tag-length-value: (value, what follows). Definite lengths only, as DER has.
fn tlv(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let value = input.get(header..header + len)?;
    Some((value, &input[header + len..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_hostname_rules() {
        assert!(go_matches("*.org", "example.org"));
        assert!(go_matches("*.wildcard.org", "Third.Wildcard.org."));
        assert!(go_matches("example.org", "example.org"));
        assert!(!go_matches("*.org", "a.example.org"));
        assert!(!go_matches("*", "example.org"));
        assert!(!go_matches("a.*.org", "a.b.org"));
    }

    #[test]
    fn dns_names_come_out_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![
            "*".to_owned(),
            "*.org".to_owned(),
            "abc.example.com".to_owned(),
        ])
        .unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(dns_names(cert.der()), ["*", "*.org", "abc.example.com"]);
        assert!(dns_names(b"\x30\x00").is_empty());
    }

    /// A TLS server with a certificate from the runner's generator, answering every
    /// request with 200 and the SNI it saw.
    async fn tls_server(cluster: &mut Cluster) -> std::net::SocketAddr {
        tls_server_of(
            cluster,
            &["{kind: Secret, namespace: n, name: cert, type: self-signed TLS, hosts: ['*', '*.org']}"],
        )
        .await
    }

    /// A TLS server (as [`tls_server`]) serving the Secret of the last of `specs`
    /// (generated objects, generated and applied in order).
    async fn tls_server_of(cluster: &mut Cluster, specs: &[&str]) -> std::net::SocketAddr {
        use rustls::pki_types::PrivateKeyDer;
        let mut authorities = crate::conformance::certs::Authorities::default();
        let mut key = None;
        for spec in specs {
            let spec: crate::conformance::case::GeneratedObject =
                serde_yaml_ng::from_str(spec).unwrap();
            let object = authorities.generate(&spec).unwrap();
            key = Some(
                cluster
                    .apply(object, crate::conformance::cluster::Owner::Case)
                    .unwrap()
                    .0,
            );
        }
        let key = key.unwrap();
        let data = |name: &str| {
            let text = cluster.get(&key).unwrap()["data"][name]
                .as_str()
                .unwrap()
                .to_owned();
            base64::decode(&text).unwrap()
        };
        let cert = CertificateDer::pem_slice_iter(&data("tls.crt"))
            .next()
            .unwrap()
            .unwrap();
        let private = PrivateKeyDer::from_pem_slice(&data("tls.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                    let service = hyper::service::service_fn(move |_req| {
                        let sni = sni.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(sni)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn https_requests_trust_only_the_named_certificate() {
        use crate::conformance::case::NsName;
        use crate::conformance::http::{Outgoing, send};
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path().to_owned(), Default::default());
        let addr = tls_server(&mut cluster).await;
        let request = |server_name: &str| -> Result<Outgoing, String> {
            let tls = ClientTls {
                server_name: server_name.to_owned(),
                trust: Trust::Secret(NsName {
                    namespace: "n".into(),
                    name: "cert".into(),
                }),
            };
            Ok(Outgoing {
                addr,
                method: "GET".into(),
                host: server_name.into(),
                path: "/".into(),
                headers: vec![],
                tls: Some(client(&cluster, &tls)?),
            })
        };
        let timeout = std::time::Duration::from_secs(5);
        // `*.org` covers example.org by Go's rule, which webpki alone refuses.
        let ok = send(&request("example.org").unwrap(), timeout)
            .await
            .unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body, "example.org");
        assert!(
            request("example.org")
                .unwrap()
                .describe()
                .contains("https://")
        );

        let err = send(&request("example.com").unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(
            err.contains("TLS handshake") && err.contains("not valid for example.com"),
            "{err}"
        );

        let missing = ClientTls {
            server_name: "x".into(),
            trust: Trust::Secret(NsName {
                namespace: "n".into(),
                name: "absent".into(),
            }),
        };
        assert!(
            client(&cluster, &missing)
                .unwrap_err()
                .contains("not found")
        );
    }

    /// Upstream's TLSRoute tests trust the leaf a backend serves, which a CA signed: Go
    /// accepts a leaf found in the roots, and so does the runner.
    #[tokio::test]
    async fn a_trusted_leaf_is_its_own_chain() {
        use crate::conformance::case::NsName;
        use crate::conformance::http::{Outgoing, send};
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path().to_owned(), Default::default());
        let addr = tls_server_of(
            &mut cluster,
            &[
                "{kind: ConfigMap, namespace: n, name: ca, type: CA, key: ca.crt}",
                "{kind: Secret, namespace: n, name: leaf, type: CA-signed TLS, hosts: [abc.example.com], \
                 signed_by: {namespace: n, name: ca}}",
            ],
        )
        .await;
        let request = |server_name: &str| -> Outgoing {
            let tls = ClientTls {
                server_name: server_name.to_owned(),
                trust: Trust::Secret(NsName {
                    namespace: "n".into(),
                    name: "leaf".into(),
                }),
            };
            Outgoing {
                addr,
                method: "GET".into(),
                host: server_name.into(),
                path: "/".into(),
                headers: vec![],
                tls: Some(client(&cluster, &tls).unwrap()),
            }
        };
        let timeout = std::time::Duration::from_secs(5);
        let ok = send(&request("abc.example.com"), timeout).await.unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body, "abc.example.com");
        // The leaf is trusted as itself, not for names it does not carry.
        let err = send(&request("other.example.com"), timeout)
            .await
            .unwrap_err();
        assert!(err.contains("not valid for other.example.com"), "{err}");
    }
}
