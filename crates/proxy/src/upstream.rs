//! The upstream side: pooled clients to cluster endpoints.
//!
//! Two hyper-util legacy clients, both keep-alive pools keyed by endpoint
//! (`http://<ip>:<port>`): one speaking HTTP/1.1 and one speaking HTTP/2 with prior
//! knowledge (h2c). They live as long as the proxy, not a config: a config swap must not
//! drop warm connections to endpoints that are still there.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, Uri, Version, header, uri::PathAndQuery};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use crate::{
    error::RequestError,
    options::ProxyOptions,
    table::{ClusterState, UpstreamProtocol},
};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy returns: an upstream body or a local reply.
/// `Unsync` because hyper's `Incoming` is not `Sync` and the server does not need it.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    http1: Client<HttpConnector, Incoming>,
    h2c: Client<HttpConnector, Incoming>,
}

impl Upstream {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.connect_timeout));
        connector.set_nodelay(true);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(options.upstream_idle_timeout)
                .pool_max_idle_per_host(options.max_idle_upstream_per_host);
            b
        };
        Self {
            http1: builder().build(connector.clone()),
            h2c: builder().http2_only(true).build(connector),
        }
    }

    /// Sends `req` to `endpoint` of `cluster`. The request's headers are final (filters
    /// applied, hop-by-hop removed); this only points it at the endpoint.
    pub(crate) async fn send(
        &self,
        cluster: &ClusterState,
        endpoint: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, RequestError> {
        // Forward the original host. A request in absolute form (or any HTTP/2 request)
        // carries it in the URI; RFC 9112 section 3.2.2 says the URI authority wins over
        // a Host header then. The URI is about to name the endpoint instead.
        if let Some(authority) = req.uri().authority()
            && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(endpoint.to_string())
            .path_and_query(path)
            .build()
            .map_err(|e| RequestError::BadRequest(e.to_string()))?;
        let client = match cluster.protocol {
            UpstreamProtocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                &self.http1
            }
            // The Host header stays as a regular field: hyper's client builds
            // `:authority` from the URI, which names the endpoint so that the pool is
            // keyed by it.
            UpstreamProtocol::H2c => {
                *req.version_mut() = Version::HTTP_2;
                &self.h2c
            }
        };
        client.request(req).await.map_err(|error| {
            if error.is_connect() {
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
        })
    }
}
