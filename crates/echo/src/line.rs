//! The line protocol of echo-basic's TCP server (`TCP_ECHO_SERVER`), over plain TCP or
//! TLS: what TCPRoute and TLSRoute tests talk to.
//!
//! ```text
//! connect (TLS: handshake first, with the certificate given)
//! <- "Gateway API Test TCP Server\n"                        the welcome line
//! -> "PING\n"     <- "PONG\n"
//! -> "IS_TLS\n"   <- "true\n" | "false\n"
//! -> "TEST\n"     <- {"namespace","ingress","service","pod","tcpport","tlsport"?,
//!                     "isTLS", "tls"?: {"version","serverName","negotiatedProtocol"?,
//!                     "cipherSuite"}}   one line of JSON about this connection
//! any other line: no answer (as upstream)
//! ```
//!
//! A TLS client therefore learns from the backend itself which server name its
//! ClientHello carried (passthrough keeps it, termination at the Gateway drops TLS).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{config::Identity, error::EchoError};

/// What echo-basic's TCP server says first on every connection.
pub const WELCOME: &str = "Gateway API Test TCP Server";

/// A line longer than this ends the connection: the protocol's lines are short words.
const MAX_LINE: usize = 1024;

/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and key in PEM (`tls.crt`, `tls.key` of a Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTls {
    pub cert_chain_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
}

/// One line-protocol listener.
#[derive(Debug, Clone)]
pub struct LineConfig {
    pub listen: SocketAddr,
    pub identity: Identity,
    /// Set: a TLS listener with this certificate.
    pub tls: Option<LineTls>,
    /// The ports reported in TEST answers (upstream's `tcpport` and `tlsport`): the
    /// pod's container ports, which a stand-in may serve elsewhere.
    pub tcp_port: u16,
    pub tls_port: Option<u16>,
}

/// The JSON answer to `TEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineReport {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    pub tcpport: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlsport: Option<String>,
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
}

/// What the TLS handshake settled on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsReport {
    pub version: String,
    pub server_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiated_protocol: Option<String>,
    pub cipher_suite: String,
}

/// A running line-protocol listener; dropping it stops accepting.
#[derive(Debug)]
pub struct LineServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
}

impl LineServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Binds `config.listen` and serves the line protocol until the handle is dropped.
pub async fn serve_line(config: LineConfig) -> Result<LineServer, EchoError> {
    let addr = config.listen;
    let acceptor = match &config.tls {
        None => None,
        Some(tls) => Some(acceptor(tls).map_err(|reason| EchoError::Certificate { reason })?),
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| EchoError::LocalAddr { addr, source })?;
    tracing::info!(%local_addr, tls = acceptor.is_some(), "line protocol listening");
    let cancel = CancellationToken::new();
    let report = Arc::new(LineReport {
        namespace: config.identity.namespace.clone(),
        ingress: config.identity.ingress.clone(),
        service: config.identity.service.clone(),
        pod: config.identity.pod.clone(),
        tcpport: config.tcp_port.to_string(),
        tlsport: config.tls_port.map(|p| p.to_string()),
        is_tls: false,
        tls: None,
    });
    tokio::spawn(accept_loop(listener, acceptor, report, cancel.clone()));
    Ok(LineServer { local_addr, cancel })
}

fn acceptor(tls: &LineTls) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_slice_iter(&tls.cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(&tls.private_key_pem).map_err(|e| format!("key: {e}"))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    report: Arc<LineReport>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let acceptor = acceptor.clone();
                    let report = report.clone();
                    connections.spawn(async move {
                        let Some(acceptor) = acceptor else {
                            converse(socket, &report).await;
                            return;
                        };
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                            Ok(Ok(tls)) => {
                                let (_, session) = tls.get_ref();
                                let mut report = (*report).clone();
                                report.is_tls = true;
                                report.tls = Some(TlsReport {
                                    version: session
                                        .protocol_version()
                                        .and_then(|v| v.as_str())
                                        .unwrap_or("")
                                        .replace('_', " ")
                                        .replace("TLSv1 ", "TLS 1."),
                                    server_name: session.server_name().unwrap_or("").to_owned(),
                                    negotiated_protocol: session
                                        .alpn_protocol()
                                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                                    cipher_suite: session
                                        .negotiated_cipher_suite()
                                        .and_then(|s| s.suite().as_str())
                                        .unwrap_or("")
                                        .to_owned(),
                                });
                                converse(tls, &report).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// The exchange on one connection, until the client closes it.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(socket: S, report: &LineReport) {
    let (read, mut write) = tokio::io::split(socket);
    let test = match serde_json::to_string(report) {
        Ok(json) => json,
        Err(error) => {
            tracing::warn!(%error, "cannot encode the TEST answer");
            return;
        }
    };
    if write
        .write_all(format!("{WELCOME}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        // Bounded: a client that never sends a newline cannot grow the buffer.
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match limited.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') && line.len() >= MAX_LINE => return,
            Ok(_) => {}
        }
        let answer = match line.trim_end_matches(['\r', '\n']) {
            "TEST" => format!("{test}\n"),
            "IS_TLS" => format!("{}\n", report.is_tls),
            "PING" => "PONG\n".to_owned(),
            _ => continue,
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::net::TcpStream;

    async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
        reader: &mut BufReader<S>,
        line: &str,
    ) -> String {
        reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).await.unwrap();
        answer.trim_end().to_owned()
    }

    fn config(tls: Option<LineTls>) -> LineConfig {
        LineConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: Identity::new("tcp-backend-abc-xyz", "infra", "tcp-backend"),
            tls,
            tcp_port: 3000,
            tls_port: Some(8443),
        }
    }

    #[tokio::test]
    async fn plain_line_protocol() {
        let server = serve_line(config(None)).await.unwrap();
        let socket = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut reader = BufReader::new(socket);
        let mut welcome = String::new();
        reader.read_line(&mut welcome).await.unwrap();
        assert_eq!(welcome, format!("{WELCOME}\n"));
        assert_eq!(ask(&mut reader, "PING").await, "PONG");
        assert_eq!(ask(&mut reader, "IS_TLS").await, "false");
        let report: LineReport = serde_json::from_str(&ask(&mut reader, "TEST").await).unwrap();
        assert_eq!(report.pod, "tcp-backend-abc-xyz");
        assert_eq!(report.namespace, "infra");
        assert_eq!(report.tcpport, "3000");
        assert!(!report.is_tls && report.tls.is_none());
    }

    #[tokio::test]
    async fn tls_line_protocol_reports_the_server_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["abc.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = serve_line(config(Some(LineTls {
            cert_chain_pem: cert.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
        })))
        .await
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let socket = TcpStream::connect(server.local_addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(
                rustls_pki_types::ServerName::try_from("abc.example.com").unwrap(),
                socket,
            )
            .await
            .unwrap();
        let mut reader = BufReader::new(tls);
        let mut welcome = String::new();
        reader.read_line(&mut welcome).await.unwrap();
        assert_eq!(welcome.trim_end(), WELCOME);
        assert_eq!(ask(&mut reader, "IS_TLS").await, "true");
        let report: LineReport = serde_json::from_str(&ask(&mut reader, "TEST").await).unwrap();
        let tls = report.tls.unwrap();
        assert_eq!(tls.server_name, "abc.example.com");
        assert!(tls.version.starts_with("TLS"), "{}", tls.version);
        assert!(report.is_tls);
    }
}
