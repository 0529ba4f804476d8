//! OpenTelemetry export of the proxy's spans: OTLP over HTTP with the JSON encoding
//! (`POST <endpoint>/v1/traces`, `content-type: application/json`), which every
//! OpenTelemetry Collector and most tracing backends accept on port 4318.
//!
//! ```text
//! request done (access_log::Observed::finish), trace sampled
//!   └─ PendingSpan::finish ──try_send──> bounded queue (QUEUE spans; full: dropped, counted)
//!                                          │ export task: a batch of up to MAX_BATCH spans,
//!                                          │ or what arrived within BATCH_WINDOW
//!                                          └─> POST {"resourceSpans":[...]} (EXPORT_TIMEOUT)
//! ```
//!
//! One span per request, the proxy's hop: the trace id and the span id the backend sees
//! as its parent (trace_context.rs), the client's span as the parent, kind SERVER,
//! attributes after the HTTP semantic conventions plus the Gateway, route and backend.
//! Only sampled traces are exported (the client's `traceparent` has the sampled flag):
//! the proxy has no sampler of its own, and traces it starts are not sampled.
//!
//! The queue, the batching, the encoding and the POST are `portico_api::otlp`'s, shared
//! with the operator; this module makes the proxy's request spans. A failed export is
//! logged and its spans are dropped; requests never wait on it.

use std::time::{Duration, SystemTime};

use http::Uri;
use portico_api::otlp::{self, AttributeValue, Span, SpanKind};

use crate::trace_context::TraceContext;

/// The resource's `service.name`.
const SERVICE: &str = "portico-proxy";

/// Where finished spans go. Cheap to clone; the export task ends when the last clone
/// is dropped, after sending what is queued.
#[derive(Debug, Clone)]
pub(crate) struct Exporter(otlp::Exporter);

/// A span about to end: what the request path knew when the response head was ready.
#[derive(Debug)]
pub(crate) struct PendingSpan {
    exporter: Exporter,
    trace: TraceContext,
    name: String,
    attributes: Vec<(String, AttributeValue)>,
}

impl Exporter {
    /// Starts the export task (needs a tokio runtime) sending to `endpoint`'s
    /// `/v1/traces` (`http://` or `https://`, verified against the system's roots).
    /// `None` (logged) when no client can be made: then nothing is exported.
    pub(crate) fn start(endpoint: &Uri) -> Option<Self> {
        let roots = crate::upstream_tls::system_roots().clone();
        match otlp::Exporter::start(endpoint, SERVICE, roots) {
            Ok(exporter) => Some(Self(exporter)),
            Err(error) => {
                tracing::error!(%error, "OTLP export disabled");
                None
            }
        }
    }

    /// A span for a request of `trace`, when the trace is sampled.
    pub(crate) fn span(
        &self,
        trace: TraceContext,
        method: &http::Method,
        host: &str,
        path: &str,
    ) -> Option<PendingSpan> {
        trace.sampled().then(|| PendingSpan {
            exporter: self.clone(),
            trace,
            name: method.as_str().to_owned(),
            attributes: vec![
                ("http.request.method".into(), method.as_str().into()),
                ("server.address".into(), host.into()),
                ("url.path".into(), path.into()),
            ],
        })
    }
}

impl PendingSpan {
    /// Ends the span: the request started `took` ago and was answered with `status`.
    pub(crate) fn finish(
        mut self,
        took: Duration,
        status: u16,
        gateway: &str,
        route: &str,
        backend: Option<&str>,
    ) {
        let end = SystemTime::now();
        let start = end.checked_sub(took).unwrap_or(end);
        if !route.is_empty() {
            // "GET <route>": the low-cardinality name the conventions ask for.
            self.name = format!("{} {route}", self.name);
        }
        self.attributes.push((
            "http.response.status_code".into(),
            status.to_string().into(),
        ));
        self.attributes
            .push(("portico.gateway".into(), gateway.into()));
        self.attributes.push(("portico.route".into(), route.into()));
        if let Some(backend) = backend {
            self.attributes
                .push(("portico.backend".into(), backend.into()));
        }
        self.exporter.0.export(Span {
            trace_id: self.trace.trace_id,
            span_id: self.trace.span_id,
            parent_id: self.trace.parent_id,
            name: self.name,
            kind: SpanKind::Server,
            start,
            end,
            // "Span Status MUST be left unset if HTTP status code was in the 1xx, 2xx or
            // 3xx ranges ... For HTTP status codes in the 5xx range ... status MUST be
            // set to Error" (server spans; 4xx is the client's error).
            error: status >= 500,
            attributes: self.attributes,
        });
    }
}
