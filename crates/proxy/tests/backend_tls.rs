//! TLS to backends (config `Cluster.tls`, from BackendTLSPolicy) against a real HTTPS
//! backend: SNI and verification by `server_name`, a wrong name or an untrusted chain
//! answered 502, subjectAltNames (DNS and URI) instead of the name, ALPN h2 for H2C
//! clusters, and no cleartext fallback against a cleartext backend.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use portico_api::config::v1 as pb;
use rustls::{ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;
use support::{Echo, TestClient, any_host, config, listener, prefix_route, start, to};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate it signed.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    key_pem: String,
}

fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "backend CA");
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert.pem())
}

/// The certificate of the upstream suite's TLS backend: two DNS names and a URI SAN.
fn pki() -> Pki {
    let (issuer, ca_pem) = ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![
        "abc.example.com".to_owned(),
        "other.example.com".to_owned(),
    ])
    .unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://abc.example.com/test-identity").unwrap(),
    ));
    let leaf = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem,
        leaf_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// An HTTPS backend answering JSON with the SNI and protocol it saw.
async fn tls_backend(pki: &Pki) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.leaf_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let mut server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let body = json!({"sni": sni, "proto": format!("{:?}", req.version()), "path": req.uri().path()});
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn tls_cluster(
    name: &str,
    addr: SocketAddr,
    protocol: pb::ClusterProtocol,
    tls: pb::UpstreamTls,
) -> pb::Cluster {
    pb::Cluster {
        name: name.to_owned(),
        endpoints: vec![pb::Endpoint {
            address: addr.ip().to_string(),
            port: u32::from(addr.port()),
            ready: true,
            pod: String::new(),
        }],
        protocol: protocol as i32,
        tls: Some(tls),
    }
}

fn upstream_tls(
    server_name: &str,
    ca_pem: &str,
    sans: Vec<pb::subject_alt_name::Kind>,
) -> pb::UpstreamTls {
    pb::UpstreamTls {
        server_name: server_name.to_owned(),
        ca_pem: ca_pem.as_bytes().to_vec(),
        system_roots: false,
        subject_alt_names: sans
            .into_iter()
            .map(|k| pb::SubjectAltName { kind: Some(k) })
            .collect(),
    }
}

#[tokio::test]
async fn tls_to_backends_verifies_names_and_chains() {
    let pki = pki();
    let backend = tls_backend(&pki).await;
    let plain = Echo::start("plain").await;
    let (_, other_ca) = ca();
    let dns = |h: &str| pb::subject_alt_name::Kind::Hostname(h.to_owned());
    let uri = |u: &str| pb::subject_alt_name::Kind::Uri(u.to_owned());
    let h1 = pb::ClusterProtocol::Http1;
    let cases: Vec<(&str, pb::Cluster)> = vec![
        (
            "/valid",
            tls_cluster(
                "valid",
                backend,
                h1,
                upstream_tls("abc.example.com", &pki.ca_pem, vec![]),
            ),
        ),
        (
            "/host-mismatch",
            tls_cluster(
                "host-mismatch",
                backend,
                h1,
                upstream_tls("mismatch.example.com", &pki.ca_pem, vec![]),
            ),
        ),
        (
            "/cert-mismatch",
            tls_cluster(
                "cert-mismatch",
                backend,
                h1,
                upstream_tls("abc.example.com", &other_ca, vec![]),
            ),
        ),
        (
            "/san-dns",
            tls_cluster(
                "san-dns",
                backend,
                h1,
                upstream_tls(
                    "mismatch.example.com",
                    &pki.ca_pem,
                    vec![dns("other.example.com")],
                ),
            ),
        ),
        (
            "/san-wildcard",
            tls_cluster(
                "san-wildcard",
                backend,
                h1,
                upstream_tls("abc.example.com", &pki.ca_pem, vec![dns("*.example.com")]),
            ),
        ),
        (
            "/san-dns-mismatch",
            tls_cluster(
                "san-dns-mismatch",
                backend,
                h1,
                upstream_tls(
                    "abc.example.com",
                    &pki.ca_pem,
                    vec![dns("nope.example.com")],
                ),
            ),
        ),
        (
            "/san-uri",
            tls_cluster(
                "san-uri",
                backend,
                h1,
                upstream_tls(
                    "abc.example.com",
                    &pki.ca_pem,
                    vec![uri("spiffe://abc.example.com/test-identity")],
                ),
            ),
        ),
        (
            "/san-uri-mismatch",
            tls_cluster(
                "san-uri-mismatch",
                backend,
                h1,
                upstream_tls(
                    "abc.example.com",
                    &pki.ca_pem,
                    vec![uri("spiffe://abc.example.com/other")],
                ),
            ),
        ),
        (
            "/h2",
            tls_cluster(
                "h2",
                backend,
                pb::ClusterProtocol::H2c,
                upstream_tls("abc.example.com", &pki.ca_pem, vec![]),
            ),
        ),
        (
            "/cleartext-backend",
            tls_cluster(
                "cleartext-backend",
                plain.addr,
                h1,
                upstream_tls("abc.example.com", &pki.ca_pem, vec![]),
            ),
        ),
    ];
    let routes = cases
        .iter()
        .map(|(path, c)| prefix_route(&c.name, path, vec![to(&c.name, 1)]))
        .collect();
    let clusters = cases.iter().map(|(_, c)| c.clone()).collect();
    let proxy = start(config(
        "v1",
        vec![listener("l", vec![any_host(routes)])],
        clusters,
    ))
    .await;
    let addr = proxy.bound_addrs()["l"];
    let client = TestClient::http1();

    let expect = [
        ("/valid", StatusCode::OK),
        ("/host-mismatch", StatusCode::BAD_GATEWAY),
        ("/cert-mismatch", StatusCode::BAD_GATEWAY),
        ("/san-dns", StatusCode::OK),
        ("/san-wildcard", StatusCode::OK),
        ("/san-dns-mismatch", StatusCode::BAD_GATEWAY),
        ("/san-uri", StatusCode::OK),
        ("/san-uri-mismatch", StatusCode::BAD_GATEWAY),
        ("/h2", StatusCode::OK),
        ("/cleartext-backend", StatusCode::BAD_GATEWAY),
    ];
    for (path, status) in expect {
        // Twice: the second request goes over the pooled connection (or a new one).
        for _ in 0..2 {
            let reply = client.get(addr, "abc.example.com", path).await;
            assert_eq!(reply.status, status, "{path}: {:?}", reply.body);
        }
    }
    let valid = client.get(addr, "abc.example.com", "/valid").await.json();
    assert_eq!(valid["sni"], "abc.example.com");
    assert_eq!(valid["proto"], "HTTP/1.1");
    // The SNI stays the policy's hostname when SANs authenticate.
    let san = client.get(addr, "abc.example.com", "/san-dns").await.json();
    assert_eq!(san["sni"], "mismatch.example.com");
    // H2C clusters negotiate h2 by ALPN.
    let h2 = client.get(addr, "abc.example.com", "/h2").await.json();
    assert_eq!(h2["proto"], "HTTP/2.0");
    // Nothing reached the cleartext backend in cleartext: it saw TLS bytes, no request.
    assert_eq!(plain.received(), 0);
}

#[tokio::test]
async fn a_cluster_without_trust_anchors_is_rejected() {
    let bad = pb::Cluster {
        name: "bad".into(),
        endpoints: vec![],
        protocol: pb::ClusterProtocol::Http1 as i32,
        tls: Some(pb::UpstreamTls {
            server_name: "abc.example.com".into(),
            ..Default::default()
        }),
    };
    let routes = vec![prefix_route("r", "/", vec![to("bad", 1)])];
    let result = portico_proxy::start(
        support::options(),
        config("v1", vec![listener("l", vec![any_host(routes)])], vec![bad]),
    )
    .await;
    assert!(result.is_err());
}
