//! TLS stream routes with a real rustls client: passthrough (the client sees the
//! backend's own certificate, chosen by SNI), terminate (the proxy's certificate, the
//! backend sees plaintext), no matching route, and an HTTPS socket shared with TLS
//! routes where the SNI decides.

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use portico_api::config::v1 as pb;
use portico_proxy::{ProxyHandle, ProxyOptions};
use rustls::{ClientConfig, RootCertStore, ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const WAIT: Duration = Duration::from_secs(10);

struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn issue(names: &[&str]) -> Issued {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// Says `<name> tls=<sni>` (or `<name> plain`) on connect, then echoes lines.
async fn line_backend<S>(name: String, socket: S, sni: Option<String>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(socket);
    let hello = match sni {
        Some(sni) => format!("{name} tls={sni}\n"),
        None => format!("{name} plain\n"),
    };
    write.write_all(hello.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        write.write_all(format!("{line}\n").as_bytes()).await?;
    }
    write.shutdown().await
}

/// A TLS backend with its own certificate.
async fn tls_backend(name: &'static str, cert: &Issued) -> SocketAddr {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::try_from(cert.key_der.clone()).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(socket).await?;
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                line_backend(name.to_owned(), tls, Some(sni)).await
            });
        }
    });
    addr
}

async fn plain_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(line_backend(name.to_owned(), socket, None));
        }
    });
    addr
}

fn cluster(name: &str, endpoint: SocketAddr) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        endpoints: vec![pb::Endpoint {
            address: endpoint.ip().to_string(),
            port: u32::from(endpoint.port()),
            ready: true,
            pod: String::new(),
        }],
        ..Default::default()
    }
}

// `..Default::default()` keeps this test compiling whatever fields the contract grows
// (client certificate validation is on its way); with none added it is needless.
#[allow(clippy::needless_update)]
fn termination(cert: &Issued) -> pb::TlsTermination {
    pb::TlsTermination {
        certificates: vec![pb::Certificate {
            name: "ns/cert".into(),
            cert_chain_pem: cert.cert_pem.clone().into_bytes(),
            private_key_pem: cert.key_pem.clone().into_bytes(),
        }],
        ..Default::default()
    }
}

fn route(
    name: &str,
    hostnames: &[&str],
    cluster: &str,
    terminate: Option<&Issued>,
) -> pb::StreamRoute {
    pb::StreamRoute {
        name: format!("ns/{name}/rule/0/tls"),
        route: format!("TLSRoute/ns/{name}"),
        hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
        backends: vec![pb::WeightedBackend {
            weight: 1,
            target: Some(pb::weighted_backend::Target::Cluster(cluster.into())),
            filters: vec![],
        }],
        terminate: terminate.map(termination),
    }
}

fn listener(
    protocol: pb::Protocol,
    routes: Vec<pb::StreamRoute>,
    vhosts: Vec<pb::VirtualHost>,
) -> pb::Listener {
    pb::Listener {
        name: "tls".into(),
        address: "127.0.0.1".into(),
        port: 0,
        protocol: protocol as i32,
        virtual_hosts: vhosts,
        gateway_port: 0,
        stream_routes: routes,
    }
}

async fn start(
    listeners: Vec<pb::Listener>,
    clusters: Vec<pb::Cluster>,
) -> (ProxyHandle, SocketAddr) {
    let options = ProxyOptions {
        connect_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
        ..ProxyOptions::default()
    };
    let config = pb::Config {
        version: "v1".into(),
        listeners,
        clusters,
    };
    let proxy = portico_proxy::start(options, config).await.unwrap();
    assert!(proxy.listener_errors().is_empty());
    let addr = proxy.bound_addrs()["tls"];
    (proxy, addr)
}

/// Connects with SNI `sni`, trusting only `trust`; returns the certificate the server
/// showed and its first line, or the error.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    trust: &Issued,
) -> Result<(CertificateDer<'static>, String), String> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(server_name, socket),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let seen = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .map_err(|_| "no line".to_owned())?
        .map_err(|e| e.to_string())?;
    // The stream carries more than one line: echo one back.
    reader
        .get_mut()
        .write_all(b"again\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut again = String::new();
    reader
        .read_line(&mut again)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(again, "again\n");
    Ok((seen, line.trim_end().to_owned()))
}

#[tokio::test]
async fn passthrough_shows_the_backends_certificate_chosen_by_sni() {
    let (abc, star) = (issue(&["abc.example.com"]), issue(&["*.example.com"]));
    let (b1, b2) = (
        tls_backend("abc", &abc).await,
        tls_backend("star", &star).await,
    );
    let (_proxy, addr) = start(
        vec![listener(
            pb::Protocol::Tls,
            vec![
                route("star", &["*.example.com"], "star", None),
                route("abc", &["abc.example.com"], "abc", None),
            ],
            vec![],
        )],
        vec![cluster("abc", b1), cluster("star", b2)],
    )
    .await;

    let (cert, line) = connect(addr, "abc.example.com", &abc).await.unwrap();
    assert_eq!(cert, abc.der, "the backend's own certificate");
    assert_eq!(line, "abc tls=abc.example.com");

    let (cert, line) = connect(addr, "other.example.com", &star).await.unwrap();
    assert_eq!(cert, star.der);
    assert_eq!(line, "star tls=other.example.com");

    // No route for this name: the connection is closed before any handshake.
    let err = connect(addr, "abc.example.org", &abc).await.unwrap_err();
    assert!(!err.is_empty());
}

#[tokio::test]
async fn terminate_uses_the_routes_certificate_and_forwards_plaintext() {
    let gateway = issue(&["tls.example.com"]);
    let backend = plain_backend("plain").await;
    let (_proxy, addr) = start(
        vec![listener(
            pb::Protocol::Tls,
            vec![route("term", &["tls.example.com"], "plain", Some(&gateway))],
            vec![],
        )],
        vec![cluster("plain", backend)],
    )
    .await;
    let (cert, line) = connect(addr, "tls.example.com", &gateway).await.unwrap();
    assert_eq!(cert, gateway.der);
    assert_eq!(line, "plain plain");
}

#[tokio::test]
async fn on_a_socket_shared_with_https_the_sni_decides() {
    let (abc, site) = (issue(&["abc.example.com"]), issue(&["www.example.com"]));
    let passthrough = tls_backend("abc", &abc).await;
    let http = plain_backend("http").await;
    let vhost = pb::VirtualHost {
        name: "ns/gw/https".into(),
        hostname: "www.example.com".into(),
        access_log_disabled: false,
        host_routes: vec![pb::HostRoutes {
            hostname: String::new(),
            routes: vec![pb::Route {
                name: "ns/web/rule/0/match/0".into(),
                route: "ns/web".into(),
                r#match: Some(pb::RouteMatch {
                    path: Some(pb::PathMatch {
                        kind: pb::path_match::Kind::Prefix as i32,
                        value: "/".into(),
                    }),
                    ..Default::default()
                }),
                backends: vec![pb::WeightedBackend {
                    weight: 1,
                    target: Some(pb::weighted_backend::Target::Cluster("http".into())),
                    filters: vec![],
                }],
                ..Default::default()
            }],
        }],
        tls: Some(termination(&site)),
    };
    let (_proxy, addr) = start(
        vec![listener(
            pb::Protocol::Https,
            vec![route("abc", &["abc.example.com"], "abc", None)],
            vec![vhost],
        )],
        vec![cluster("abc", passthrough), cluster("http", http)],
    )
    .await;

    let (cert, line) = connect(addr, "abc.example.com", &abc).await.unwrap();
    assert_eq!(cert, abc.der);
    assert_eq!(line, "abc tls=abc.example.com");

    // Any other name is HTTPS terminated by the proxy with the virtual host's
    // certificate (the HTTP stack then answers; the handshake is what matters here).
    let mut roots = RootCertStore::empty();
    roots.add(site.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("www.example.com").unwrap(), socket),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], site.der);
    let mut tls = tls;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: www.example.com\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(tls);
    let mut status = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut status))
        .await
        .unwrap()
        .unwrap();
    // The "http" backend speaks the line protocol, not HTTP: the proxy answers 502.
    assert!(status.starts_with("HTTP/1.1 502"), "{status:?}");
}
