//! Protocol upgrades (WebSocket) through the proxy.
//!
//! ```text
//! client ── GET, Connection: upgrade, Upgrade: websocket ──> proxy ── same ──> backend
//! client <──────────── 101 Switching Protocols ───────────── proxy <── 101 ── backend
//! client <════════════ bytes, both ways, until either side closes ═══════════> backend
//! ```
//!
//! An HTTP/1.1 upgrade is hop-by-hop: `Connection` and `Upgrade` are removed with the
//! other hop-by-hop headers and put back for the next hop, on the request to the backend
//! and on its 101 answer. Once both sides have switched, hyper hands over the two raw
//! connections and the proxy copies bytes between them. A WebSocket backend
//! (`appProtocol: kubernetes.io/ws`) is an HTTP/1.1 cluster: the upgrade is what makes
//! it a WebSocket. Upgrades are not offered to h2c clusters (HTTP/2 has no Upgrade), nor
//! retried or mirrored.

use http::{HeaderMap, HeaderValue, Response, StatusCode, Version, header, request::Parts};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;

/// An upgrade the client asked for.
#[derive(Debug)]
pub(crate) struct Upgrade {
    /// The `Upgrade` header value, e.g. "websocket".
    protocol: HeaderValue,
    /// Resolves to the client's connection once our 101 has been sent.
    downstream: OnUpgrade,
}

impl Upgrade {
    /// Takes the upgrade out of an HTTP/1.1 request that asks for one (`Connection:
    /// upgrade` and an `Upgrade` header). Call before hop-by-hop headers are removed.
    pub(crate) fn take(parts: &mut Parts) -> Option<Self> {
        if parts.version != Version::HTTP_11 {
            return None;
        }
        let asks = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        if !asks {
            return None;
        }
        let protocol = parts.headers.get(header::UPGRADE)?.clone();
        let downstream = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self {
            protocol,
            downstream,
        })
    }

    /// Puts the upgrade headers back on the request to the backend.
    pub(crate) fn request_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// If the backend switched protocols, puts the upgrade headers back on its answer
    /// and starts copying bytes once both sides have switched; the response goes to
    /// the client either way.
    pub(crate) fn finish(
        self,
        response: &mut Response<Incoming>,
        upstream_upgrade: Option<HeaderValue>,
    ) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(
            header::UPGRADE,
            upstream_upgrade.unwrap_or_else(|| self.protocol.clone()),
        );
        let upstream = hyper::upgrade::on(response);
        let downstream = self.downstream;
        tokio::spawn(async move {
            let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%error, "upgrade failed");
                    return;
                }
            };
            let mut downstream = TokioIo::new(downstream);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
                Ok((up, down)) => {
                    tracing::debug!(
                        bytes_up = up,
                        bytes_down = down,
                        "upgraded connection closed"
                    );
                }
                Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
            }
        });
    }
}
