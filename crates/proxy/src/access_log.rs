//! The end of a request: metrics and the access-log line, once the response body is
//! done.
//!
//! ```text
//! service::handle ──> Response<Observed<ProxyBody>>
//!                       │ counts the body bytes it hands to hyper
//!                       v
//!          body ended, failed, or dropped (client gone) ──> finish(), exactly once:
//!            RouteStats::record (requests_total, request_duration_seconds)
//!            access line on target `portico::access` (unless the route's Gateway
//!            turned it off)
//!            the span, to the OTLP exporter (with --otlp-endpoint, sampled traces)
//! ```
//!
//! Recording at the end, not at the response head, makes `duration` cover the whole
//! response and `bytes_out` exact; a response whose body never completes (the client
//! went away) is still recorded when hyper drops it, with `complete: false`.
//!
//! An access line is one flat JSON object (see `portico_api::logging`):
//!
//! | field | |
//! |---|---|
//! | `timestamp`, `level`, `target` | from the subscriber |
//! | `gateway`, `listener` | "<ns>/<gateway>" and "<ns>/<gateway>/<listener>"; "" when no route matched |
//! | `socket` | the listener socket ("<address>:<port>") |
//! | `route`, `rule` | the route object and the matched entry ("<ns>/<route>/rule/<i>/match/<j>") |
//! | `backend` | the cluster ("<ns>/<service>:<port>"), "" for the proxy's own replies |
//! | `method`, `host`, `path`, `client` | the request as the client sent it |
//! | `status` | the exact status sent |
//! | `duration_ms`, `upstream_ms` | request head to end of body; request sent to response head from the backend (absent without a backend exchange) |
//! | `bytes_in` | the request body's declared length (Content-Length), absent for bodies streamed without one |
//! | `bytes_out` | response body bytes handed to the connection |
//! | `request_id`, `trace_id` | `x-request-id` (kept or generated) and the W3C trace id forwarded |
//! | `complete` | whether the response body ended normally |

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use portico_api::logging::ACCESS_LOG_TARGET;

use crate::{
    error::BoxError, metrics::RouteStats, otlp::PendingSpan, table::ClusterState,
    trace_context::TraceContext, upstream::ProxyBody,
};

/// What the request path learned, for the line written at the end.
#[derive(Debug, Default)]
pub(crate) struct Served {
    /// The cluster the request went to, once one was picked.
    pub(crate) backend: Option<Arc<ClusterState>>,
    /// From sending to the backend to its response head (retries included).
    pub(crate) upstream: Option<Duration>,
    /// `x-request-id` as forwarded (kept from the client or generated).
    pub(crate) request_id: Option<String>,
    /// The trace as forwarded, for the exported span (otlp.rs) and the line's
    /// `trace_id`.
    pub(crate) trace: Option<TraceContext>,
}

/// The request's identity and facts for its access line.
#[derive(Debug)]
pub(crate) struct AccessLine {
    pub(crate) gateway: Arc<str>,
    pub(crate) listener: Arc<str>,
    pub(crate) socket: Arc<str>,
    pub(crate) route: String,
    pub(crate) rule: String,
    pub(crate) method: http::Method,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) client: std::net::SocketAddr,
    pub(crate) bytes_in: Option<u64>,
}

/// Everything recorded when the response is done.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) started: Instant,
    pub(crate) status: u16,
    pub(crate) stats: Arc<RouteStats>,
    pub(crate) served: Served,
    /// `None` when the Gateway turned its access log off.
    pub(crate) line: Option<AccessLine>,
    /// The span to export, with `--otlp-endpoint` and a sampled trace.
    pub(crate) span: Option<PendingSpan>,
    /// "<namespace>/<name>" of the Gateway and the route object, for the span.
    pub(crate) gateway: Arc<str>,
    pub(crate) route: String,
}

/// A response body that records its request when it ends.
pub(crate) struct Observed {
    inner: ProxyBody,
    bytes: u64,
    record: Option<Record>,
}

impl Observed {
    pub(crate) fn new(inner: ProxyBody, record: Record) -> Self {
        Self {
            inner,
            bytes: 0,
            record: Some(record),
        }
    }

    fn finish(&mut self, complete: bool) {
        let Some(record) = self.record.take() else {
            return;
        };
        let took = record.started.elapsed();
        record
            .stats
            .record(record.served.backend.as_deref(), record.status, took);
        if let Some(span) = record.span {
            span.finish(
                took,
                record.status,
                &record.gateway,
                &record.route,
                record.served.backend.as_ref().map(|b| b.name.as_str()),
            );
        }
        let Some(line) = record.line else {
            return;
        };
        let served = record.served;
        let trace_id = served.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            gateway = %line.gateway,
            listener = %line.listener,
            socket = %line.socket,
            route = %line.route,
            rule = %line.rule,
            backend = served.backend.as_ref().map_or("", |b| b.name.as_str()),
            method = %line.method,
            host = %line.host,
            path = %line.path,
            client = %line.client,
            status = record.status,
            duration_ms = millis(took),
            upstream_ms = served.upstream.map(millis),
            bytes_in = line.bytes_in,
            bytes_out = self.bytes,
            request_id = served.request_id.as_deref().unwrap_or(""),
            trace_id = trace_id.as_str(),
            complete,
            "request"
        );
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is Unpin (the inner body is a pinned box).
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A body hyper never polled to its end: empty (end of stream from the start,
        // complete) or abandoned by the client.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
