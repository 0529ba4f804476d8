//! The echo over HTTPS: what echo-basic serves on its HTTPS port when it is given
//! `TLS_SERVER_CERT` and `TLS_SERVER_PRIVKEY` (the TLS backend of the upstream
//! BackendTLSPolicy tests). Same answers as over cleartext, HTTP/1.1 or HTTP/2 chosen by
//! ALPN; the certificate is the one given (a Secret's `tls.crt` and `tls.key`).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::EchoConfig;
use crate::error::EchoError;
use crate::line::LineTls;
use crate::server::{EchoServer, serve_with};

/// Binds `config.listen` and serves the echo over TLS with `tls`'s certificate.
pub async fn serve_https(config: EchoConfig, tls: &LineTls) -> Result<EchoServer, EchoError> {
    let acceptor = acceptor(tls).map_err(|reason| EchoError::Certificate { reason })?;
    serve_with(config, Some(acceptor)).await
}

fn acceptor(tls: &LineTls) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_slice_iter(&tls.cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("certificate: no PEM certificate".to_owned());
    }
    let key =
        PrivateKeyDer::from_pem_slice(&tls.private_key_pem).map_err(|e| format!("key: {e}"))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::{ClientConfig, RootCertStore};
    use rustls_pki_types::ServerName;

    async fn get(
        addr: std::net::SocketAddr,
        roots: RootCertStore,
        alpn: &[u8],
    ) -> serde_json::Value {
        let mut client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("abc.example.com").unwrap(), tcp)
            .await
            .unwrap();
        let io = TokioIo::new(tls);
        let req = http::Request::get("https://abc.example.com/backendtls")
            .header("host", "abc.example.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = if alpn == b"h2" {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        };
        assert_eq!(resp.status(), http::StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn answers_over_tls_with_the_given_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["abc.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = LineTls {
            cert_chain_pem: cert.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
        };
        let config = EchoConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: crate::Identity::new("tls-backend-abc-def", "infra", "tls-backend"),
            ..Default::default()
        };
        let server = serve_https(config, &tls).await.unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();

        let h1 = get(server.local_addr(), roots.clone(), b"http/1.1").await;
        assert_eq!(h1["path"], "/backendtls");
        assert_eq!(h1["pod"], "tls-backend-abc-def");
        assert_eq!(h1["proto"], "HTTP/1.1");
        let h2 = get(server.local_addr(), roots, b"h2").await;
        assert_eq!(h2["proto"], "HTTP/2.0");
        server.shutdown().await;
    }

    #[test]
    fn a_bad_certificate_is_an_error() {
        let tls = LineTls {
            cert_chain_pem: b"nope".to_vec(),
            private_key_pem: b"nope".to_vec(),
        };
        assert!(acceptor(&tls).is_err());
    }
}
