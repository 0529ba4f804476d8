//! A small HTTP client for tests: hyper-util's pooled client with a connector pinned to
//! one socket address, so a test can send any Host (or HTTP/2 `:authority`) to a proxy
//! listening on 127.0.0.1:PORT, like `curl --resolve`.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// Time allowed for one whole exchange (connect, send, read the body) unless the client
/// says otherwise.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON bodies quoted in errors are cut to this many bytes.
const MAX_QUOTED_BODY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `request` reads like `GET http://foo.example.com/a`.
    #[error("{request} via {addr} failed: {}", chain(.source.as_ref()))]
    Send {
        request: String,
        addr: SocketAddr,
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    #[error("reading the body of {request} failed: {}", chain(.source))]
    Body {
        request: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{request} via {addr} did not answer within {timeout:?}")]
    Timeout {
        request: String,
        addr: SocketAddr,
        timeout: Duration,
    },
    #[error("body of {request} (status {status}) is not the expected JSON: {source}; body: {body}")]
    Json {
        request: String,
        status: StatusCode,
        body: String,
        #[source]
        source: serde_json::Error,
    },
}

/// An HTTP client that sends every request to one address, whatever the URI's host.
/// Connections are pooled, so consecutive requests may share one.
#[derive(Debug, Clone)]
pub struct HttpClient {
    addr: SocketAddr,
    http2: bool,
    timeout: Duration,
    client: Client<PinnedConnector, Full<Bytes>>,
}

impl HttpClient {
    /// HTTP/1.1 to `addr`.
    pub fn http1(addr: SocketAddr) -> Self {
        Self::new(addr, false)
    }

    /// HTTP/2 with prior knowledge (h2c) to `addr`.
    pub fn h2c(addr: SocketAddr) -> Self {
        Self::new(addr, true)
    }

    fn new(addr: SocketAddr, http2: bool) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(PinnedConnector { addr });
        Self {
            addr,
            http2,
            timeout: DEFAULT_HTTP_TIMEOUT,
            client,
        }
    }

    /// Bound on each exchange, body included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` and reads the whole response body.
    ///
    /// The URI may be absolute (`http://foo.example.com/a`) or just a path (`/a`). For a
    /// path the authority is the request's Host header when it has one, else the
    /// client's address. Over HTTP/2 the Host header becomes `:authority` and is not sent
    /// as a header, as curl does.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, HttpError> {
        let request = self.absolute(request)?;
        let described = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|source| HttpError::Send {
                        request: described.clone(),
                        addr: self.addr,
                        source: Box::new(source),
                    })?;
            let (head, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|source| HttpError::Body {
                    request: described.clone(),
                    source,
                })?
                .to_bytes();
            Ok(Response::from_parts(head, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                request: described.clone(),
                addr: self.addr,
                timeout: self.timeout,
            })?
    }

    /// `GET path` with an optional Host header.
    pub async fn get(
        &self,
        host: Option<&str>,
        path: &str,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HttpError> {
        let mut request = Request::get(path);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let request = request
            .body(Full::default())
            .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
        let (head, body) = self.send(request).await?.into_parts();
        Ok((head.status, head.headers, body))
    }

    /// `GET path`, body parsed as JSON (for example into `portico_echo::EchoReport` or
    /// `serde_json::Value`).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        host: Option<&str>,
        path: &str,
    ) -> Result<(StatusCode, T), HttpError> {
        let (status, _, body) = self.get(host, path).await?;
        let value = parse_json(&body, status, path)?;
        Ok((status, value))
    }

    fn absolute(&self, request: Request<Full<Bytes>>) -> Result<Request<Full<Bytes>>, HttpError> {
        let (mut head, body) = request.into_parts();
        let mut parts = head.uri.clone().into_parts();
        if parts.authority.is_none() {
            let authority = match head.headers.get(header::HOST) {
                Some(host) => Authority::try_from(host.as_bytes())
                    .map_err(|e| HttpError::InvalidRequest(format!("Host header {host:?}: {e}")))?,
                None => Authority::try_from(self.addr.to_string().as_str())
                    .map_err(|e| HttpError::InvalidRequest(e.to_string()))?,
            };
            parts.authority = Some(authority);
        }
        if parts.scheme.is_none() {
            parts.scheme = Some(Scheme::HTTP);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        head.uri = Uri::from_parts(parts).map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
        if self.http2 {
            head.headers.remove(header::HOST);
        }
        Ok(Request::from_parts(head, body))
    }
}

/// Connects to one address whatever the URI says: the `--resolve` of this client.
#[derive(Debug, Clone)]
struct PinnedConnector {
    addr: SocketAddr,
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.addr;
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// One-shot `GET` over HTTP/1.1.
///
/// `target` is where to connect: `127.0.0.1:8080`, `http://127.0.0.1:8080`,
/// `http://localhost:8080/` or a `SocketAddr`. `host` is the Host header to send
/// (default: the target's authority), `path` the request path with its query.
pub async fn get(
    target: impl Display,
    host: Option<&str>,
    path: &str,
) -> Result<(StatusCode, HeaderMap, Bytes), HttpError> {
    let (addr, authority) = resolve(&target.to_string()).await?;
    HttpClient::http1(addr)
        .get(Some(host.unwrap_or(&authority)), path)
        .await
}

/// One-shot `GET` over HTTP/1.1 with the body parsed as JSON; see [`get`].
pub async fn get_json<T: DeserializeOwned>(
    target: impl Display,
    host: Option<&str>,
    path: &str,
) -> Result<(StatusCode, T), HttpError> {
    let (status, _, body) = get(target, host, path).await?;
    let value = parse_json(&body, status, path)?;
    Ok((status, value))
}

/// `http://host:port[/]` or `host:port` -> the first address it resolves to, and the
/// authority to use as the default Host.
async fn resolve(target: &str) -> Result<(SocketAddr, String), HttpError> {
    let invalid = |reason: &str| HttpError::InvalidTarget {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = match target.split_once("://") {
        Some(("http", rest)) => rest,
        Some((_, _)) => return Err(invalid("only http:// is supported")),
        None => target,
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(invalid("give the path separately, not in the target"));
    }
    let authority: Authority = authority.parse().map_err(|_| invalid("not host:port"))?;
    let port = authority.port_u16().unwrap_or(80);
    // `[::1]` is how an IPv6 address appears in an authority; the resolver wants `::1`.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| HttpError::Resolve {
            target: target.to_owned(),
            source,
        })?;
    let addr = addrs
        .next()
        .ok_or_else(|| invalid("resolves to no address"))?;
    Ok((addr, authority.as_str().to_owned()))
}

fn parse_json<T: DeserializeOwned>(
    body: &Bytes,
    status: StatusCode,
    path: &str,
) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|source| {
        let quoted = &body[..body.len().min(MAX_QUOTED_BODY)];
        HttpError::Json {
            request: format!("GET {path}"),
            status,
            body: String::from_utf8_lossy(quoted).into_owned(),
            source,
        }
    })
}

/// `error: cause: cause`, because hyper's errors say little on their own ("client error
/// (Connect)") and the cause ("Connection refused") is what a failing test needs.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        out.push_str(": ");
        out.push_str(&next.to_string());
        cause = next.source();
    }
    out
}
