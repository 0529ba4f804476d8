//! The upstream side: connections to cluster endpoints.
//!
//! ```text
//! Upstream
//! ├── http1: our keep-alive pool of hyper HTTP/1.1 connections per endpoint
//! │          (crate::upstream_http1); the request keeps its Host header
//! └── h2c:   one multiplexed HTTP/2 connection per endpoint, made by us so that
//!            `:authority` carries the request's host, not the endpoint; gRPC
//!            requests always take it
//! ```
//!
//! Both live as long as the proxy, not a config: a config swap must not drop warm
//! connections to endpoints that are still there.
//!
//! Why h2c has its own pool: hyper-util's client builds the HTTP/2 `:authority` from
//! the URI it connects to, and the URI must name the endpoint for the pool to be keyed
//! by it. RFC 9113 section 8.3.1 wants the opposite: "An intermediary that forwards a
//! request over HTTP/2 MUST construct an ":authority" pseudo-header field using the
//! authority information from the control data of the original request", and HTTP/2
//! servers (Go's among them) take the request's host from `:authority`. With our own
//! connections the URI can carry the host while the socket goes to the endpoint.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version, header, uri::PathAndQuery};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::{
    error::{BoxError, RequestError},
    options::ProxyOptions,
    table::{ClusterState, UpstreamProtocol},
    upstream_http1::{Http1Pool, SendError},
    upstream_tls::TlsClients,
};

/// The body of every response the proxy returns: an upstream body or a local reply.
/// `Unsync` because hyper's `Incoming` is not `Sync` and the server does not need it.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The body of every request the proxy sends upstream: the client's body, a buffered
/// copy of it (retries, mirrors) or a tap on it (mirrors).
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    http1: Http1Pool,
    h2c: H2cPool,
    /// Clusters with TLS (BackendTLSPolicy), see crate::upstream_tls.
    tls: TlsClients,
}

impl Upstream {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        Self {
            http1: Http1Pool::new(
                options.connect_timeout,
                options.upstream_idle_timeout,
                options.max_idle_upstream_per_host,
            ),
            h2c: H2cPool {
                connect_timeout: options.connect_timeout,
                senders: Arc::default(),
            },
            tls: TlsClients::new(options),
        }
    }

    /// Sends `req` to `endpoint` of `cluster`. The request's headers are final (filters
    /// applied, hop-by-hop removed); this only points it at the endpoint.
    pub(crate) async fn send(
        &self,
        cluster: &ClusterState,
        endpoint: SocketAddr,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, RequestError> {
        // The host the client asked for: the URI authority of an HTTP/2 request (or an
        // absolute-form HTTP/1 one), else its Host header.
        let authority = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // gRPC needs HTTP/2 (trailers, streams): a gRPC request goes over h2c even to a
        // cluster whose Service port did not say `appProtocol: kubernetes.io/h2c`, as
        // HTTP/1.1 could only fail it.
        let protocol = if crate::grpc::is_grpc(req.headers()) {
            UpstreamProtocol::H2c
        } else {
            cluster.protocol
        };
        match protocol {
            UpstreamProtocol::Http1 => {
                // HTTP/1.1 carries the host in the Host header.
                if let Some(authority) = authority {
                    req.headers_mut().insert(header::HOST, authority);
                }
                if let Some(tls) = &cluster.tls {
                    *req.version_mut() = Version::HTTP_11;
                    // Boxed (here and below): the TLS and h2c futures are large, and
                    // unboxed they would make every request's future as large, copied
                    // at every await on the way down.
                    return Box::pin(self.tls.send(
                        cluster,
                        tls,
                        UpstreamProtocol::Http1,
                        endpoint,
                        req,
                    ))
                    .await;
                }
                // A client that sent no host (HTTP/1.0) gets the endpoint's address, as
                // hyper-util's client wrote it. The request line is in origin form; the
                // socket goes to the endpoint.
                if !req.headers().contains_key(header::HOST)
                    && let Ok(host) = HeaderValue::from_str(&endpoint.to_string())
                {
                    req.headers_mut().insert(header::HOST, host);
                }
                *req.uri_mut() = Uri::from(path);
                *req.version_mut() = Version::HTTP_11;
                self.http1
                    .send(endpoint, req)
                    .await
                    .map_err(|error| match error {
                        SendError::Connect(error) => failed(cluster, endpoint, true, error),
                        SendError::Exchange(error) => failed(cluster, endpoint, false, error),
                    })
            }
            UpstreamProtocol::H2c => {
                // The host goes in `:authority`, so the Host header is dropped (RFC 9113
                // section 8.3.1: "Clients MUST NOT generate a request with a Host header
                // field that differs from the ":authority" pseudo-header field").
                req.headers_mut().remove(header::HOST);
                let authority = authority
                    .as_ref()
                    .and_then(|a| a.to_str().ok())
                    .map_or_else(|| endpoint.to_string(), str::to_owned);
                *req.uri_mut() = uri(&authority, path)?;
                *req.version_mut() = Version::HTTP_2;
                if let Some(tls) = &cluster.tls {
                    return Box::pin(self.tls.send(
                        cluster,
                        tls,
                        UpstreamProtocol::H2c,
                        endpoint,
                        req,
                    ))
                    .await;
                }
                Box::pin(self.h2c.send(cluster, endpoint, req)).await
            }
        }
    }
}

fn uri(authority: &str, path: PathAndQuery) -> Result<Uri, RequestError> {
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| RequestError::BadRequest(e.to_string()))
}

fn failed(
    cluster: &ClusterState,
    endpoint: SocketAddr,
    connect: bool,
    error: BoxError,
) -> RequestError {
    if connect {
        RequestError::Connect {
            cluster: cluster.name.clone(),
            endpoint,
            error,
        }
    } else {
        RequestError::Upstream {
            cluster: cluster.name.clone(),
            endpoint,
            error,
        }
    }
}

/// One HTTP/2 connection per endpoint, shared by every request to it (HTTP/2
/// multiplexes), replaced when it closes.
#[derive(Clone, Debug)]
struct H2cPool {
    connect_timeout: Duration,
    senders: Arc<Mutex<HashMap<SocketAddr, http2::SendRequest<RequestBody>>>>,
}

impl H2cPool {
    async fn send(
        &self,
        cluster: &ClusterState,
        endpoint: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, RequestError> {
        let mut sender = match self.open(endpoint) {
            Some(sender) => sender,
            None => self
                .connect(endpoint)
                .await
                .map_err(|e| failed(cluster, endpoint, true, e))?,
        };
        sender
            .ready()
            .await
            .map_err(|e| failed(cluster, endpoint, false, Box::new(e)))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| failed(cluster, endpoint, false, Box::new(e)))
    }

    /// The endpoint's connection, if it has one that is still open.
    fn open(&self, endpoint: SocketAddr) -> Option<http2::SendRequest<RequestBody>> {
        // A poisoned lock only means another request panicked mid-insert; the map is
        // still a valid map.
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.get(&endpoint).filter(|s| !s.is_closed()).cloned()
    }

    async fn connect(
        &self,
        endpoint: SocketAddr,
    ) -> Result<http2::SendRequest<RequestBody>, BoxError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))??;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%endpoint, %error, "h2c connection ended with an error");
            }
        });
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        // Two requests may have connected at once: the last one is kept, the other
        // connection closes when its request is done. Closed connections of endpoints
        // that are gone are dropped here, so the map does not grow with churn.
        senders.retain(|_, s| !s.is_closed());
        senders.insert(endpoint, sender.clone());
        Ok(sender)
    }
}
