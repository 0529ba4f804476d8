//! Hostile TLS against an HTTPS listener: old protocol versions and weak suites are
//! refused with an alert, a client without SNI on a listener that needs it gets a clean
//! handshake failure, and garbage or huge ClientHellos do not hurt other connections.
//! docs/security.md has the rules.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use portico_api::config::v1 as pb;
use rustls::{ClientConfig, RootCertStore, crypto::ring, version};
use rustls_pki_types::{CertificateDer, ServerName};
use support::{Echo, cluster, config, listener, prefix_route, start, to, vhost};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

const HOST: &str = "a.example.com";
const READ_BOUND: Duration = Duration::from_secs(20);

/// An HTTPS listener serving only `HOST` (so a certificate needs the SNI), and the
/// certificate's DER for clients to trust.
async fn https_proxy(
    echo: &Echo,
) -> (
    portico_proxy::ProxyHandle,
    SocketAddr,
    CertificateDer<'static>,
) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut v = vhost(
        "test/gw/a",
        HOST,
        vec![prefix_route("r", "/", vec![to("a", 1)])],
    );
    v.tls = Some(pb::TlsTermination {
        certificates: vec![pb::Certificate {
            name: "test/a".to_owned(),
            cert_chain_pem: cert.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
        }],
        client_validation: None,
    });
    let proxy = start(config(
        "v1",
        vec![pb::Listener {
            protocol: pb::Protocol::Https as i32,
            ..listener("https", vec![v])
        }],
        vec![cluster("a", &[echo])],
    ))
    .await;
    let addr = proxy.bound_addrs()["https"];
    (proxy, addr, cert.der().clone())
}

async fn tls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    sni: bool,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_sni = sni;
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        READ_BOUND,
        TlsConnector::from(Arc::new(client)).connect(ServerName::try_from(HOST).unwrap(), tcp),
    )
    .await
    .map_err(std::io::Error::other)?
}

async fn get_over(stream: TlsStream<TcpStream>) -> StatusCode {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::get("/")
                .header("host", HOST)
                .body(Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

/// A ClientHello record as an old or careless client would send it: `version` in the
/// hello, the given cipher suites, SNI `HOST`, and `extra` extensions.
fn client_hello(version: [u8; 2], suites: &[u16], extra: &[u8]) -> Vec<u8> {
    let mut sni = Vec::new();
    let name = HOST.as_bytes();
    sni.extend_from_slice(&[0x00, 0x00]); // server_name
    let list_len = name.len() + 3;
    sni.extend_from_slice(&u16::try_from(list_len + 2).unwrap().to_be_bytes());
    sni.extend_from_slice(&u16::try_from(list_len).unwrap().to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = sni;
    extensions.extend_from_slice(extra);

    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `bytes` and reads what comes back until the server closes (bounded).
async fn answer_to(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything: a failed write is an answer too.
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(READ_BOUND, s.read_to_end(&mut buf))
        .await
        .expect("the proxy kept a broken handshake open");
    buf
}

/// The description of the fatal alert record at the start of `answer`, if it is one.
fn fatal_alert(answer: &[u8]) -> Option<u8> {
    match answer {
        [0x15, 0x03, _, 0x00, 0x02, 0x02, description, ..] => Some(*description),
        _ => None,
    }
}

// Alert descriptions (RFC 8446 section 6).
const HANDSHAKE_FAILURE: u8 = 40;
const ACCESS_DENIED: u8 = 49;
const PROTOCOL_VERSION: u8 = 70;

#[tokio::test]
async fn only_tls12_and_tls13_with_strong_suites() {
    let a = Echo::start("a").await;
    let (proxy, addr, root) = https_proxy(&a).await;

    // TLS 1.2 and 1.3 clients are served; 1.2 gets an ECDHE AEAD suite.
    let tls12 = tls_connect(addr, &root, &[&version::TLS12], true)
        .await
        .unwrap();
    let suite = tls12.get_ref().1.negotiated_cipher_suite().unwrap();
    let name = format!("{:?}", suite.suite());
    assert!(
        name.starts_with("TLS_ECDHE_") && (name.contains("_GCM_") || name.contains("CHACHA20")),
        "{name}"
    );
    assert_eq!(get_over(tls12).await, StatusCode::OK);
    let tls13 = tls_connect(addr, &root, &[&version::TLS13], true)
        .await
        .unwrap();
    assert_eq!(
        tls13.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(get_over(tls13).await, StatusCode::OK);

    // TLS 1.0 and 1.1 hellos (no supported_versions extension): a fatal alert (rustls
    // sends handshake_failure or protocol_version), then the connection closes.
    for version in [[3, 1], [3, 2]] {
        let answer = answer_to(addr, &client_hello(version, &[0xc013, 0xc014, 0x002f], &[])).await;
        assert!(
            matches!(
                fatal_alert(&answer),
                Some(HANDSHAKE_FAILURE | PROTOCOL_VERSION)
            ),
            "{version:?}: {answer:?}"
        );
    }
    // A TLS 1.2 hello offering only weak suites (RC4, 3DES, CBC without ECDHE, export,
    // NULL): nothing in common, a fatal alert.
    let supported_groups = [0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17];
    let signature_algorithms = [0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03];
    let extra: Vec<u8> = [&supported_groups[..], &signature_algorithms[..]].concat();
    let weak = [
        0x0005, 0x000a, 0x002f, 0x0035, 0x0003, 0x0001, 0x0004, 0xc011,
    ];
    let answer = answer_to(addr, &client_hello([3, 3], &weak, &extra)).await;
    // (rustls answers access_denied or handshake_failure, by where it gives up.)
    assert!(
        matches!(
            fatal_alert(&answer),
            Some(HANDSHAKE_FAILURE | ACCESS_DENIED)
        ),
        "{answer:?}"
    );

    // openssl too, when installed: a TLS 1.1 client does not get a session.
    if let Ok(out) = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            HOST,
        ])
        .arg("-connect")
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
    {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "openssl -tls1_1 got a session: {text}"
        );
        assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    }
    assert_eq!(a.received(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn no_sni_on_a_listener_that_needs_it_is_a_handshake_failure() {
    let a = Echo::start("a").await;
    let (proxy, addr, root) = https_proxy(&a).await;
    let error = tls_connect(addr, &root, &[&version::TLS13, &version::TLS12], false)
        .await
        .unwrap_err();
    // rustls says which alert the server sent: access_denied, rustls' alert when no
    // certificate resolves for the hello.
    let text = format!("{error:?}");
    assert!(text.contains("AlertReceived(AccessDenied)"), "{text}");
    // The same hello with SNI is served.
    let ok = tls_connect(addr, &root, &[&version::TLS13], true)
        .await
        .unwrap();
    assert_eq!(get_over(ok).await, StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn garbage_and_huge_client_hellos_do_not_hurt_others() {
    let a = Echo::start("a").await;
    let (proxy, addr, root) = https_proxy(&a).await;

    let mut attackers = Vec::new();
    for i in 0..16u64 {
        attackers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i);
            let bytes: Vec<u8> = match i % 4 {
                // Random bytes.
                0 => (0..4096).map(|_| rng.u8(..)).collect(),
                // A handshake record header, then random bytes.
                1 => [
                    &[0x16, 0x03, 0x01, 0x40, 0x00][..],
                    &(0..0x4000).map(|_| rng.u8(..)).collect::<Vec<_>>(),
                ]
                .concat(),
                // A ClientHello that claims 16 MiB, sent as 1 MiB of full records.
                2 => {
                    let mut v = Vec::new();
                    let mut first = vec![0x01, 0xff, 0xff, 0xff];
                    first.resize(0x4000, 0);
                    for k in 0..64 {
                        v.extend_from_slice(&[0x16, 0x03, 0x03, 0x40, 0x00]);
                        if k == 0 {
                            v.extend_from_slice(&first);
                        } else {
                            v.extend(std::iter::repeat_n(0u8, 0x4000));
                        }
                    }
                    v
                }
                // A well-formed hello with 30 KiB of junk extensions.
                _ => {
                    let mut junk = vec![0xfa, 0xfa, 0x78, 0x00];
                    junk.extend(std::iter::repeat_n(0x41u8, 0x7800));
                    client_hello([3, 3], &[0x1301, 0xc02b], &junk)
                }
            };
            answer_to(addr, &bytes).await
        }));
    }
    // Served all along.
    for _ in 0..5 {
        let ok = tls_connect(addr, &root, &[&version::TLS13], true)
            .await
            .unwrap();
        assert_eq!(get_over(ok).await, StatusCode::OK);
    }
    for attacker in attackers {
        let answer = attacker.await.unwrap();
        // Closed, with an alert where rustls could send one; never a session.
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{:?}",
            &answer[..answer.len().min(16)]
        );
    }
    let ok = tls_connect(addr, &root, &[&version::TLS12], true)
        .await
        .unwrap();
    assert_eq!(get_over(ok).await, StatusCode::OK);
    proxy.shutdown().await;
}
