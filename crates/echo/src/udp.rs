//! echo-basic's UDP server (`UDP_ECHO_SERVER`): every datagram is answered, to its
//! sender, with one JSON object saying what arrived and who answered:
//!
//! ```text
//! -> "hello"
//! <- {"request":"hello","namespace":"infra","ingress":"","service":"udp-backend-v1",
//!     "pod":"udp-backend-v1-5d8f...-x2x4z"}
//! ```
//!
//! The payload is echoed verbatim (lossily as UTF-8), so a client can tell truncation
//! or rewriting on the way.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::{config::Identity, error::EchoError};

/// Datagrams up to this size are read whole (upstream reads 1024; larger is harmless).
const MAX_DATAGRAM: usize = 65_535;

/// The answer to one datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpReport {
    pub request: String,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
}

/// A running UDP echo; dropping it stops it.
#[derive(Debug)]
pub struct UdpServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
}

impl UdpServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Binds `listen` (UDP) and answers datagrams until the handle is dropped.
pub async fn serve_udp(listen: SocketAddr, identity: Identity) -> Result<UdpServer, EchoError> {
    let socket = UdpSocket::bind(listen)
        .await
        .map_err(|source| EchoError::Bind {
            addr: listen,
            source,
        })?;
    let local_addr = socket.local_addr().map_err(|source| EchoError::LocalAddr {
        addr: listen,
        source,
    })?;
    tracing::info!(%local_addr, "UDP echo listening");
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer) = tokio::select! {
                () = stop.cancelled() => break,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, "UDP receive failed");
                        continue;
                    }
                },
            };
            let report = UdpReport {
                request: String::from_utf8_lossy(&buf[..n]).into_owned(),
                namespace: identity.namespace.clone(),
                ingress: identity.ingress.clone(),
                service: identity.service.clone(),
                pod: identity.pod.clone(),
            };
            let Ok(answer) = serde_json::to_vec(&report) else {
                continue;
            };
            if let Err(error) = socket.send_to(&answer, peer).await {
                tracing::debug!(%peer, %error, "UDP reply failed");
            }
        }
    });
    Ok(UdpServer { local_addr, cancel })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn every_datagram_is_answered_with_who_answered() {
        let server = serve_udp(
            "127.0.0.1:0".parse().unwrap(),
            Identity::new("udp-v1-abc-xyz", "infra", "udp-v1"),
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(server.local_addr()).await.unwrap();
        for payload in ["hello", "again"] {
            client.send(payload.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 2048];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let report: UdpReport = serde_json::from_slice(&buf[..n]).unwrap();
            assert_eq!(report.request, payload);
            assert_eq!(report.pod, "udp-v1-abc-xyz");
            assert_eq!(report.service, "udp-v1");
        }
    }
}
