//! The request path, assembled in one place. Each step says why it sits where it does;
//! the crate docs draw the whole lifecycle.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::{
    error::RequestError,
    headers,
    table::{RoutingTable, Target, request_host},
    upstream::{BoxError, ProxyBody, Upstream},
};

/// What every connection of every listener shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The running config. Loaded once per request, swapped whole by `update`.
    pub(crate) table: ArcSwap<RoutingTable>,
    pub(crate) upstream: Upstream,
}

/// What a request knows about the connection it came on.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) listener: Arc<str>,
    pub(crate) client: SocketAddr,
}

/// Serves one request. Never fails: every error becomes a local reply.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    // 1. Load the table once. Everything below uses this snapshot, so a config swap
    //    in the middle of the request cannot route it half by the old config and half
    //    by the new one, and the old table lives until this request is done.
    let table = shared.table.load_full();
    let host = request_host(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let version = req.version();

    let (result, route) = forward(&shared.upstream, &table, &conn, &host, req).await;
    let (mut response, error) = match result {
        Ok(response) => (response, None),
        Err(error) => (local_reply(error.status()), Some(error)),
    };
    // The downstream connection's version, whatever the upstream spoke: hyper frames the
    // response for its own connection and warns about a mismatch.
    *response.version_mut() = version;
    // One event per request; a local reply carries its cause, the failing side and
    // whether a retry would have been safe.
    tracing::debug!(
        listener = %conn.listener,
        client = %conn.client,
        %method, %host, %path,
        route = route.unwrap_or(""),
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        error = error.as_ref().map(tracing::field::display),
        side = error.as_ref().map(|e| tracing::field::debug(e.side())),
        retryable = error.as_ref().map(RequestError::retryable),
        "request"
    );
    response
}

/// Routes and forwards. Returns the route's name (when one matched) for the log line.
async fn forward<'t>(
    upstream: &Upstream,
    table: &'t RoutingTable,
    conn: &Conn,
    host: &str,
    req: Request<Incoming>,
) -> (Result<Response<ProxyBody>, RequestError>, Option<&'t str>) {
    // 2. Route on the request as the client sent it, before anything rewrites headers:
    //    matches are written against what clients send.
    let Some(listener) = table.listeners.get(&*conn.listener) else {
        // A connection of a listener the new config removed, racing its graceful close.
        return (
            Err(RequestError::ListenerGone(conn.listener.to_string())),
            None,
        );
    };
    let (mut parts, body) = req.into_parts();
    let Some(route) = listener.route(host, &parts) else {
        let error = RequestError::NoRoute {
            host: host.to_owned(),
            path: parts.uri.path().to_owned(),
        };
        return (Err(error), None);
    };
    let name = Some(route.name.as_str());

    // 3. Choose the backend before touching the request: a 500 or 503 needs no
    //    header work, and the choice does not depend on the rewritten headers.
    let cluster = match route.backends.pick() {
        None => {
            let error = RequestError::NoBackend {
                route: route.name.clone(),
            };
            return (Err(error), name);
        }
        Some(Target::Invalid(reason)) => {
            let error = RequestError::InvalidBackend {
                route: route.name.clone(),
                reason: reason.clone(),
            };
            return (Err(error), name);
        }
        Some(Target::Cluster(cluster)) => cluster,
    };
    let Some(endpoint) = cluster.pick() else {
        let error = RequestError::NoReadyEndpoint {
            cluster: cluster.name.clone(),
        };
        return (Err(error), name);
    };

    // 4. The proxy's own headers first (hop-by-hop out, forwarding headers in), then
    //    the route's request filters, so that a RequestHeaderModifier has the last word
    //    on what the backend sees, as the route author expects.
    headers::strip_hop_by_hop(&mut parts.headers, true);
    let request_id = headers::add_forwarding(&mut parts.headers, conn.client.ip(), "http");
    route.filters.on_request(&mut parts.headers);

    // 5. Forward.
    tracing::trace!(%request_id, cluster = %cluster.name, %endpoint, "forwarding");
    let response = match upstream
        .send(cluster, endpoint, Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response,
        Err(error) => return (Err(error), name),
    };

    // 6. The response: hop-by-hop out, then the route's response filters, for the same
    //    reason as on the request side.
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    route.filters.on_response(&mut parts.headers);
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
    (Ok(Response::from_parts(parts, body)), name)
}

/// A response the proxy makes itself: the status and its reason as plain text. The
/// details stay in the log, not in front of the client.
fn local_reply(status: StatusCode) -> Response<ProxyBody> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or("error"));
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
