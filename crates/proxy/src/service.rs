//! The request path, assembled in one place. Each step says why it sits where it does;
//! the crate docs draw the whole lifecycle.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use portico_api::logging::ACCESS_LOG_TARGET;

use crate::{
    access_log::{AccessLine, Observed, Record, Served},
    body::{self, RequestHead},
    error::{BoxError, RequestError},
    exchange::exchange,
    filters::Verdict,
    framing::Heads,
    grpc, headers,
    limits::{ConnectionSlots, Limits},
    metrics::ProxyMetrics,
    otlp::Exporter,
    path,
    table::{ListenerRoutes, Route, RoutingTable, Target, request_host},
    trace_context,
    upgrade::Upgrade,
    upstream::{ProxyBody, Upstream},
};

/// What every connection of every listener shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The running config. Loaded once per request, swapped whole by `update`.
    pub(crate) table: ArcSwap<RoutingTable>,
    pub(crate) upstream: Upstream,
    pub(crate) metrics: ProxyMetrics,
    /// Sizes a request may not exceed (limits.rs).
    pub(crate) limits: Limits,
    /// Client connections open at once, over every listener.
    pub(crate) connections: ConnectionSlots,
    /// Proxies in front trusted to append to `x-forwarded-for` (headers.rs).
    pub(crate) xff_num_trusted_hops: u32,
    /// Where sampled requests' spans go (`--otlp-endpoint`, otlp.rs).
    pub(crate) otlp: Option<Exporter>,
    /// The share of the traces the proxy starts that it samples (trace_context.rs).
    pub(crate) trace_sample_ratio: f64,
}

/// What a request knows about the connection it came on.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) listener: Arc<str>,
    pub(crate) client: SocketAddr,
    /// The server name (SNI) the TLS handshake was served for, on HTTPS listeners when
    /// the client sent one. Set once, when the handshake completes: the connection's
    /// service is made before it, and no request is read before it.
    pub(crate) sni: OnceLock<Box<str>>,
    /// What the connection's framing guard saw of each HTTP/1 request head (framing.rs).
    pub(crate) heads: Heads,
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
    // A clone shares the bytes hyper parsed; the path is read from it when needed.
    let uri = req.uri().clone();
    let version = req.version();
    let grpc_request = grpc::is_grpc(req.headers());
    // Read before the body moves on; Incoming's hint is exact with a Content-Length.
    let bytes_in = hyper::body::Body::size_hint(req.body()).exact();
    let client_request_id = req.headers().get(&headers::X_REQUEST_ID).cloned();

    let mut served = Served::default();
    let (result, route) = forward(&shared, &table, &conn, &host, req, &mut served).await;
    // A gRPC client reads errors from grpc-status only: the proxy's own errors on a
    // GRPCRoute, or for a gRPC request that found no route, are gRPC statuses.
    let grpc = grpc_request || route.is_some_and(|r| r.grpc);
    let (mut response, error) = match result {
        Ok(response) => (response, None),
        Err(error) if grpc => (grpc::local_reply(&error), Some(error)),
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
        %method, %host, path = uri.path(),
        route = route.map_or("", |r| r.name.as_str()),
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        error = error.as_ref().map(tracing::field::display),
        side = error.as_ref().map(|e| tracing::field::debug(e.side())),
        retryable = error.as_ref().map(RequestError::retryable),
        "request"
    );
    // Metrics and the access line are written when the body is done (access_log.rs).
    if served.request_id.is_none() {
        served.request_id = client_request_id.and_then(|v| v.to_str().ok().map(str::to_owned));
    }
    let stats = route
        .and_then(|r| r.stats.clone())
        .unwrap_or_else(|| shared.metrics.unrouted().clone());
    let span = shared
        .otlp
        .as_ref()
        .zip(served.trace)
        .and_then(|(exporter, trace)| exporter.span(trace, &method, &host, uri.path()));
    // The line's strings are only made when it will be written: the Gateway did not turn
    // its access log off, and the log filter lets it through.
    let logged = route.is_none_or(|r| r.access_log)
        && tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO);
    let line = logged.then(|| AccessLine {
        gateway: route.map_or_else(|| Arc::from(""), |r| r.gateway.clone()),
        listener: route.map_or_else(|| Arc::from(""), |r| r.gateway_listener.clone()),
        socket: conn.listener.clone(),
        route: route.map_or_else(String::new, |r| r.object.clone()),
        rule: route.map_or_else(String::new, |r| r.name.clone()),
        method,
        host,
        path: uri.path().to_owned(),
        client: conn.client,
        bytes_in,
    });
    let has_span = span.is_some();
    let record = Record {
        started,
        status: response.status().as_u16(),
        stats,
        served,
        line,
        span,
        gateway: route.map_or_else(|| Arc::from(""), |r| r.gateway.clone()),
        // For the span only.
        route: match (route, has_span) {
            (Some(r), true) => r.object.clone(),
            _ => String::new(),
        },
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Observed::new(body, record).boxed_unsync())
}

/// Routes, then serves within the route's request timeout. Returns the route (when one
/// matched) for the log line and the kind of local reply.
async fn forward<'t>(
    shared: &Shared,
    table: &'t RoutingTable,
    conn: &Conn,
    host: &str,
    req: Request<Incoming>,
    served: &mut Served,
) -> (Result<Response<ProxyBody>, RequestError>, Option<&'t Route>) {
    // 2. Route on the request as the client sent it, before anything rewrites headers:
    //    matches are written against what clients send.
    // Request smuggling (framing.rs): Content-Length with Transfer-Encoding is refused,
    // and hyper closes the connection after the answer. One record per HTTP/1 request.
    if req.version() < http::Version::HTTP_2 && conn.heads.next_conflicts() {
        let error = RequestError::BadRequest("Content-Length with Transfer-Encoding".to_owned());
        return (Err(error), None);
    }
    // RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code
    // to any ... request message that contains more than one Host header field line".
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        let error = RequestError::BadRequest("more than one Host field".to_owned());
        return (Err(error), None);
    }
    let Some(listener) = table.listeners.get(&*conn.listener) else {
        // A connection of a listener the new config removed, racing its graceful close.
        return (
            Err(RequestError::ListenerGone(conn.listener.to_string())),
            None,
        );
    };
    // A TLS connection serves the virtual host its SNI selected; a request for a host
    // of another one must go on a connection of its own (ListenerRoutes::misdirected).
    if let Some(sni) = conn.sni.get()
        && listener.misdirected(sni, host)
    {
        let error = RequestError::Misdirected {
            host: host.to_owned(),
            sni: sni.to_string(),
        };
        return (Err(error), None);
    }
    let (mut parts, body) = req.into_parts();
    // Limits first: nothing larger than them is looked at further (limits.rs).
    if let Err(error) = shared.limits.check_head(&parts.uri, &parts.headers) {
        return (Err(error), None);
    }
    // One form of the path for matching and for the backend (path.rs): `/a/../admin`
    // is `/admin` for both.
    if let Err(error) = normalize_path(&mut parts.uri) {
        return (Err(error), None);
    }
    let Some(route) = listener.route(host, &parts) else {
        let error = RequestError::NoRoute {
            host: host.to_owned(),
            path: parts.uri.path().to_owned(),
        };
        return (Err(error), None);
    };
    let matched = Some(route);

    // 3. The route's request timeout covers everything from here to the response head,
    //    every attempt and backoff included.
    let serving = serve(shared, listener, route, conn, parts, body, served);
    let result = match route.timeouts.request {
        None => serving.await,
        Some(after) => tokio::time::timeout(after, serving)
            .await
            .unwrap_or(Err(RequestError::RequestTimeout { after })),
    };
    (result, matched)
}

async fn serve(
    shared: &Shared,
    listener: &ListenerRoutes,
    route: &Route,
    conn: &Conn,
    mut parts: Parts,
    body: Incoming,
    served: &mut Served,
) -> Result<Response<ProxyBody>, RequestError> {
    let upstream = &shared.upstream;
    // 4. An upgrade (WebSocket) is taken out before the hop-by-hop headers that carry it
    //    go; it is offered to the backend again in `exchange`.
    let upgrade = Upgrade::take(&mut parts);

    // 5. The proxy's own headers first (hop-by-hop out, forwarding headers in), then
    //    the route's filters, so that a RequestHeaderModifier has the last word on what
    //    the backend sees, as the route author expects.
    headers::strip_hop_by_hop(&mut parts.headers, true);
    let forwarded = headers::add_forwarding(
        &mut parts.headers,
        conn.client.ip(),
        listener.downstream.scheme,
        shared.xff_num_trusted_hops,
    );
    let request_id = forwarded.request_id;
    // W3C trace context: continue the client's trace with the proxy's own span, or start
    // one (trace_context.rs). With the forwarding headers, before the route's filters.
    let trace = trace_context::propagate(&mut parts.headers, shared.trace_sample_ratio);
    served.trace = Some(trace);
    served.request_id = Some(request_id.clone());

    // 6. The route's filters, in order. A redirect or a CORS preflight answers here,
    //    before a backend is chosen: such rules often have none.
    let forward = match route
        .filters
        .on_request(&mut parts, &listener.downstream, &route.name)
    {
        Verdict::Forward(forward) => forward,
        Verdict::Respond(mut response) => {
            route.filters.on_response(response.headers_mut(), None);
            return Ok(response);
        }
        Verdict::Fail(error) => return Err(error),
    };

    // 7. The backend: a weighted share, then that backendRef's own filters ("executed
    //    if and only if the request is being forwarded to the backend defined here").
    let backend = match route.backends.pick() {
        None => {
            return Err(RequestError::NoBackend {
                route: route.name.clone(),
            });
        }
        Some(Target::Invalid(reason)) => {
            return Err(RequestError::InvalidBackend {
                route: route.name.clone(),
                reason: reason.clone(),
            });
        }
        Some(Target::Cluster(backend)) => backend,
    };
    served.backend = Some(backend.cluster.clone());
    let backend_forward =
        match backend
            .filters
            .on_request(&mut parts, &listener.downstream, &route.name)
        {
            Verdict::Forward(forward) => forward,
            Verdict::Respond(response) => return Ok(response),
            Verdict::Fail(error) => return Err(error),
        };

    // 8. The body: kept for retries when small, tapped for mirrors; then the mirrors go,
    //    each in a task of its own, so that they never hold up this request.
    let (mut outgoing, mirror_bodies) = body::prepare(
        body,
        route.retry.is_some() && upgrade.is_none(),
        forward.mirrors.len(),
        shared.limits.max_request_body_bytes,
    )
    .await?;
    for ((mirror, head), body) in forward.mirrors.into_iter().zip(mirror_bodies) {
        mirror.fire(upstream, head, body);
    }

    // 9. Forward, with the route's backendRequest timeout and retries.
    tracing::trace!(
        %request_id,
        client = %forwarded.client,
        cluster = %backend.cluster.name,
        "forwarding"
    );
    let retry = route.retry.as_ref().filter(|_| upgrade.is_none());
    let sent = Instant::now();
    let exchanged = exchange(
        shared,
        &backend.cluster,
        &RequestHead::moved(parts),
        &mut outgoing,
        route.timeouts,
        retry,
        upgrade.as_ref(),
    )
    .await;
    served.upstream = Some(sent.elapsed());
    let mut response = exchanged?;

    // 10. The response: hop-by-hop out (an accepted upgrade puts its own back), then the
    //     backend's and the route's response filters, for the same reason as on the
    //     request side.
    let upstream_upgrade = response.headers().get(header::UPGRADE).cloned();
    headers::strip_hop_by_hop(response.headers_mut(), false);
    if let Some(upgrade) = upgrade {
        upgrade.finish(&mut response, upstream_upgrade);
    }
    let (mut parts, body) = response.into_parts();
    backend
        .filters
        .on_response(&mut parts.headers, backend_forward.cors.as_ref());
    route
        .filters
        .on_response(&mut parts.headers, forward.cors.as_ref());
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// Puts the normalised path (path.rs) in `uri`, the query kept as it is.
fn normalize_path(uri: &mut http::Uri) -> Result<(), RequestError> {
    let normal = path::normalize(uri.path());
    if normal == uri.path() {
        return Ok(());
    }
    let target = match uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal.into_owned(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|e: http::uri::InvalidUri| RequestError::BadRequest(e.to_string()))?,
    );
    *uri = http::Uri::from_parts(parts).map_err(|e| RequestError::BadRequest(e.to_string()))?;
    Ok(())
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
