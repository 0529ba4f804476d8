//! The runner's HTTP client: one request per connection, to a given address with any
//! Host header, HTTP/1.1, as upstream's roundtripper does it (a fresh transport per
//! request, so the load balancer decides per request and no connection outlives a
//! config change).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tls::TlsClient;

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) addr: SocketAddr,
    pub(crate) method: String,
    /// The Host header.
    pub(crate) host: String,
    /// Path and query.
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    /// HTTPS: the TLS client to speak it with.
    pub(crate) tls: Option<TlsClient>,
}

impl Outgoing {
    /// `GET http://127.0.10.3:80/path Host=foo`, for messages.
    pub(crate) fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut out = format!(
            "{} {scheme}://{}{} Host={}",
            self.method, self.addr, self.path, self.host
        );
        if let Some(tls) = &self.tls {
            out.push_str(&format!(" SNI={}", tls.server_name.to_str()));
        }
        out
    }
}

/// The response, body read.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Incoming {
    /// The values of a header joined with `,` (how upstream compares them), if present.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The start of the body, for messages about a response that was not the echo's.
    pub(crate) fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let cut: String = text.chars().take(160).collect();
        if cut.len() < text.len() {
            format!("{cut}...")
        } else {
            cut
        }
    }
}

/// Sends `request` on a new connection and reads the whole response, within `timeout`.
pub(crate) async fn send(request: &Outgoing, timeout: Duration) -> Result<Incoming, String> {
    tokio::time::timeout(timeout, exchange(request))
        .await
        .map_err(|_| format!("no response within {timeout:?}"))?
}

async fn exchange(request: &Outgoing) -> Result<Incoming, String> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|e| format!("method {:?}: {e}", request.method))?;
    let mut builder = Request::builder().method(method).uri(request.path.as_str());
    builder = builder.header(header::HOST, request.host.as_str());
    for (name, value) in &request.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        builder = builder.header(name, value);
    }
    let http_request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;

    let stream = TcpStream::connect(request.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", request.addr))?;
    match &request.tls {
        None => over(stream, request, http_request).await,
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream = connector
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(|e| format!("TLS handshake with {}: {}", request.addr, chain(&e)))?;
            over(stream, request, http_request).await
        }
    }
}

/// The HTTP/1.1 exchange on an open connection.
async fn over<S>(
    stream: S,
    request: &Outgoing,
    http_request: Request<Empty<Bytes>>,
) -> Result<Incoming, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", request.addr))?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "client connection ended with an error");
        }
    });
    let result = async {
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|e| format!("sending: {}", chain(&e)))?;
        let (head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the body: {}", chain(&e)))?
            .to_bytes();
        Ok(Incoming {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

/// An error with its causes, `a: b: c`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_echo::{EchoConfig, EchoReport, Identity};

    #[tokio::test]
    async fn sends_host_path_and_headers() {
        let server = portico_echo::serve(EchoConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: Identity::new("p", "n", "s"),
            ..EchoConfig::default()
        })
        .await
        .unwrap();
        let request = Outgoing {
            addr: server.local_addr(),
            method: "POST".into(),
            host: "foo.example.com".into(),
            path: "/a?b=c".into(),
            headers: vec![
                ("X-Test".into(), "1".into()),
                ("x-echo-set-header".into(), "X-Back:yes".into()),
            ],
            tls: None,
        };
        let response = send(&request, Duration::from_secs(5)).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.header("X-BACK").as_deref(), Some("yes"));
        let report: EchoReport = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(report.host, "foo.example.com");
        assert_eq!(report.path, "/a?b=c");
        assert_eq!(report.method, "POST");
        assert_eq!(report.headers["X-Test"], ["1"]);
        assert!(request.describe().starts_with("POST http://127.0.0.1:"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let request = Outgoing {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            headers: vec![],
            tls: None,
        };
        let err = send(&request, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains("connecting to"), "{err}");
    }
}
