//! The agent's status over HTTP, for `portico status` and the kubelet's probes.
//!
//! ```text
//!   GET /status   200 application/json  AgentStatus { healthy, synced, syncs, last_error,
//!                                       services, backend_slots, attached, gateway_addresses,
//!                                       l2_announced }
//!   GET /healthz  200 "ok" while the last sync succeeded, else 503 with the error
//!   GET /metrics  200 the Prometheus text format (crate::metrics, docs/metrics.md)
//!   anything else 404
//! ```

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::agent::{AgentStatus, SharedStatus};
use crate::metrics::{self, AgentMetrics};

/// Serves the status on `listener` until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    status: SharedStatus,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let metrics = AgentMetrics::new();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(error = %e, "status: accept failed");
                        continue;
                    }
                },
            };
            let status = status.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let snapshot = status
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let reply = respond(&req, &snapshot, &metrics);
                    async move { Ok::<_, Infallible>(reply) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %e, "status: connection failed");
                }
            });
        }
    })
}

fn respond(
    req: &Request<Incoming>,
    status: &AgentStatus,
    metrics: &AgentMetrics,
) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics.render(status).into_bytes(),
        ),
        "/status" => match serde_json::to_vec(status) {
            Ok(json) => (StatusCode::OK, "application/json", json),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string().into_bytes(),
            ),
        },
        "/healthz" if status.healthy => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            status
                .last_error
                .clone()
                .unwrap_or_else(|| "not attached".into())
                .into_bytes(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
