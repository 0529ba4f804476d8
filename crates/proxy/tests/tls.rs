//! HTTPS listeners with a real rustls client: the certificate chosen by SNI, ALPN h2 and
//! http/1.1, a handshake without a matching certificate, an HTTP listener beside them,
//! certificates swapped by `update` while an open connection keeps working, and client
//! certificates checked against the listener's CAs (Gateway `spec.tls.frontend`).

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_api::config::v1 as pb;
use rustls::{ClientConfig, RootCertStore, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;
use support::{Echo, cluster, config, listener, prefix_route, start, to, vhost};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A self-signed certificate for `names`, as PEM for the config and DER for the client.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// An RSA key for tests: ring signs with RSA but cannot generate RSA keys.
const RSA_KEY: &str = include_str!("data/rsa-2048.key");

fn issue(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Issued {
    let key = if alg == &rcgen::PKCS_RSA_SHA256 {
        rcgen::KeyPair::from_pem_and_sign_algo(RSA_KEY, alg).unwrap()
    } else {
        rcgen::KeyPair::generate_for(alg).unwrap()
    };
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn tls_vhost(name: &str, hostname: &str, certs: &[&Issued], cluster: &str) -> pb::VirtualHost {
    let mut v = vhost(
        name,
        hostname,
        vec![prefix_route("r", "/", vec![to(cluster, 1)])],
    );
    v.tls = Some(pb::TlsTermination {
        certificates: certs
            .iter()
            .enumerate()
            .map(|(i, c)| pb::Certificate {
                name: format!("test/{name}-{i}"),
                cert_chain_pem: c.cert_pem.clone().into_bytes(),
                private_key_pem: c.key_pem.clone().into_bytes(),
            })
            .collect(),
        client_validation: None,
    });
    v
}

fn https_listener(name: &str, vhosts: Vec<pb::VirtualHost>) -> pb::Listener {
    pb::Listener {
        protocol: pb::Protocol::Https as i32,
        ..listener(name, vhosts)
    }
}

/// A TLS connection to `addr` asking for `sni`, trusting `roots`, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    roots: &[&Issued],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_as(addr, sni, roots, alpn, None).await
}

/// [`connect`], presenting `client` as the client certificate when given.
async fn connect_as(
    addr: SocketAddr,
    sni: &str,
    roots: &[&Issued],
    alpn: &[&[u8]],
    client: Option<&Issued>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let mut client = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![c.der.clone()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(Arc::new(client)).connect(name, tcp),
    )
    .await
    .map_err(std::io::Error::other)?
}

fn peer(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

fn get(host: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://{host}/hello"))
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

async fn answer(response: http::Response<hyper::body::Incoming>) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// An HTTP/2 client on an established TLS stream.
async fn h2(stream: TlsStream<TcpStream>) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn sni_alpn_and_a_plain_listener_beside() {
    let echo = Echo::start("echo").await;
    let exact = issue(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let wildcard = issue(&["*.example.com"], &rcgen::PKCS_ECDSA_P384_SHA384);
    let handle = start(config(
        "1",
        vec![
            https_listener(
                "https",
                vec![
                    tls_vhost("test/gw/wild", "*.example.com", &[&wildcard], "c"),
                    tls_vhost("test/gw/exact", "a.example.com", &[&exact], "c"),
                ],
            ),
            listener(
                "http",
                vec![vhost(
                    "test/gw/http",
                    "",
                    vec![prefix_route("r", "/", vec![to("c", 1)])],
                )],
            ),
        ],
        vec![cluster("c", &[&echo])],
    ))
    .await;
    let addrs = handle.bound_addrs();
    let (https, http) = (addrs["https"], addrs["http"]);
    let roots = [&exact, &wildcard];

    // Exact hostname first, then the wildcard.
    let stream = connect(https, "a.example.com", &roots, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer(&stream), exact.der);
    assert_eq!(alpn(&stream).as_deref(), Some(&b"h2"[..]));
    let mut sender = h2(stream).await;
    let response = sender.send_request(get("a.example.com")).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let stream = connect(https, "b.example.com", &roots, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer(&stream), wildcard.der);
    assert_eq!(alpn(&stream).as_deref(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(get("b.example.com")).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The backend learns that the client spoke TLS to us.
    assert_eq!(body["headers"]["x-forwarded-proto"][0], "https", "{body}");
    // The same connection, reused for a name another listener serves (its certificate
    // covers it): 421, so that the client opens a connection of its own for it.
    let response = sender.send_request(get("a.example.com")).await.unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    // A name of the same listener is still routed on it.
    let response = sender.send_request(get("c.example.com")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // No virtual host for this name and none without hostname: the handshake fails, and
    // the listener keeps serving.
    assert!(connect(https, "other.org", &roots, &[b"h2"]).await.is_err());
    assert!(
        connect(https, "a.example.com", &roots, &[b"h2"])
            .await
            .is_ok()
    );

    // The plain HTTP listener is unaffected.
    let tcp = TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/plain")
        .header("host", "anything")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, _) = answer(sender.send_request(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    handle.shutdown().await;
}

/// The certificate of an RSA-only and an ECDSA-only client on one virtual host with both.
#[tokio::test]
async fn rsa_and_ecdsa_side_by_side() {
    let echo = Echo::start("echo").await;
    let ecdsa = issue(&["both.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa = issue(&["both.example.com"], &rcgen::PKCS_RSA_SHA256);
    let handle = start(config(
        "1",
        vec![https_listener(
            "https",
            vec![tls_vhost(
                "test/gw/both",
                "both.example.com",
                &[&ecdsa, &rsa],
                "c",
            )],
        )],
        vec![cluster("c", &[&echo])],
    ))
    .await;
    let addr = handle.bound_addrs()["https"];
    // A client trusting either gets the first certificate that suits it: ECDSA here.
    let stream = connect(addr, "both.example.com", &[&ecdsa, &rsa], &[b"h2"])
        .await
        .unwrap();
    assert_eq!(peer(&stream), ecdsa.der);

    // A TLS 1.2 client with only RSA cipher suites gets the RSA certificate.
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
        ..ring::default_provider()
    };
    let mut store = RootCertStore::empty();
    store.add(rsa.der.clone()).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("both.example.com").unwrap();
    let stream = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(peer(&stream), rsa.der);
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn updated_certificates_reach_new_handshakes_while_open_connections_keep_working() {
    let echo = Echo::start("echo").await;
    let old = issue(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let new = issue(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let with = |version: &str, cert: &Issued| {
        config(
            version,
            vec![https_listener(
                "https",
                vec![tls_vhost("test/gw/a", "a.example.com", &[cert], "c")],
            )],
            vec![cluster("c", &[&echo])],
        )
    };
    let handle = start(with("1", &old)).await;
    let addr = handle.bound_addrs()["https"];
    let roots = [&old, &new];

    let stream = connect(addr, "a.example.com", &roots, &[b"h2"])
        .await
        .unwrap();
    assert_eq!(peer(&stream), old.der);
    let mut open = h2(stream).await;
    let (status, _) = answer(open.send_request(get("a.example.com")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let summary = handle.update(with("2", &new)).await.unwrap();
    // The socket stays: only its certificates changed.
    assert!(
        summary.added.is_empty() && summary.removed.is_empty(),
        "{summary:?}"
    );
    assert_eq!(handle.bound_addrs()["https"], addr);

    let stream = connect(addr, "a.example.com", &roots, &[b"h2"])
        .await
        .unwrap();
    assert_eq!(peer(&stream), new.der);

    // The connection opened before the update still serves requests.
    open.ready().await.unwrap();
    let (status, _) = answer(open.send_request(get("a.example.com")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    handle.shutdown().await;
}

/// A CA, and client certificates it signs.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn client(&self) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// One request on a fresh HTTP/1.1 connection presenting `client`: the status, or the
/// error of the handshake or the exchange (with TLS 1.3 a refused client certificate
/// shows up at the first read, after the client finished its side of the handshake).
async fn status_as(
    addr: SocketAddr,
    roots: &[&Issued],
    client: Option<&Issued>,
) -> Result<StatusCode, String> {
    let stream = connect_as(addr, "a.example.com", roots, &[b"http/1.1"], client)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        sender.send_request(get("a.example.com")),
    )
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(response.status())
}

#[tokio::test]
async fn client_certificates_are_checked_against_the_listener_cas() {
    let echo = Echo::start("echo").await;
    let server = issue(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (trusted, other) = (Ca::new("trusted"), Ca::new("other"));
    let (good, foreign) = (trusted.client(), other.client());
    let with = |version: &str, validation: Option<pb::ClientValidation>| {
        let mut vhost = tls_vhost("test/gw/a", "a.example.com", &[&server], "c");
        if let Some(tls) = vhost.tls.as_mut() {
            tls.client_validation = validation;
        }
        config(
            version,
            vec![https_listener("https", vec![vhost])],
            vec![cluster("c", &[&echo])],
        )
    };
    let only_valid = |ca: &Ca| pb::ClientValidation {
        ca_certificates_pem: vec![ca.pem.clone().into_bytes()],
        allow_insecure_fallback: false,
    };
    let handle = start(with("1", Some(only_valid(&trusted)))).await;
    let addr = handle.bound_addrs()["https"];
    let roots = [&server];

    // AllowValidOnly: a certificate of the listener's CA is served, one of another CA
    // and none at all are refused.
    assert_eq!(
        status_as(addr, &roots, Some(&good)).await,
        Ok(StatusCode::OK)
    );
    assert!(status_as(addr, &roots, Some(&foreign)).await.is_err());
    assert!(status_as(addr, &roots, None).await.is_err());

    // An update to the other CA reaches the next handshakes.
    handle
        .update(with("2", Some(only_valid(&other))))
        .await
        .unwrap();
    assert_eq!(
        status_as(addr, &roots, Some(&foreign)).await,
        Ok(StatusCode::OK)
    );
    assert!(status_as(addr, &roots, Some(&good)).await.is_err());

    // AllowInsecureFallback: a client without a certificate is served too.
    let fallback = pb::ClientValidation {
        allow_insecure_fallback: true,
        ..only_valid(&other)
    };
    handle.update(with("3", Some(fallback))).await.unwrap();
    assert_eq!(status_as(addr, &roots, None).await, Ok(StatusCode::OK));

    // No validation: no certificate is asked for.
    handle.update(with("4", None)).await.unwrap();
    assert_eq!(status_as(addr, &roots, None).await, Ok(StatusCode::OK));

    handle.shutdown().await;
}
