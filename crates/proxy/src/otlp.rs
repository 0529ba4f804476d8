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
//! Written by hand rather than with `opentelemetry-otlp`: one message type, encoded with
//! serde_json, over the hyper client the proxy already has, instead of the SDK's
//! dependency tree. A failed export is logged and its spans are dropped; requests never
//! wait on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::trace_context::TraceContext;

/// Spans waiting for export; beyond this, new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per request to the collector at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits for more spans after its first.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// `SPAN_KIND_SERVER` and `STATUS_CODE_ERROR` of the OTLP protobuf enums.
const KIND_SERVER: u8 = 2;
const STATUS_ERROR: u8 = 2;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where finished spans go. Cheap to clone; the export task ends when the last clone
/// is dropped, after sending what is queued.
#[derive(Debug, Clone)]
pub(crate) struct Exporter {
    tx: mpsc::Sender<SpanRecord>,
    dropped: Arc<AtomicU64>,
}

/// A span about to end: what the request path knew when the response head was ready.
#[derive(Debug)]
pub(crate) struct PendingSpan {
    exporter: Exporter,
    trace: TraceContext,
    name: String,
    attributes: Vec<(&'static str, String)>,
}

/// A finished span, as exported.
#[derive(Debug)]
struct SpanRecord {
    trace: TraceContext,
    name: String,
    start: SystemTime,
    end: SystemTime,
    status: u16,
    attributes: Vec<(&'static str, String)>,
}

impl Exporter {
    /// Starts the export task (needs a tokio runtime) sending to `endpoint`'s
    /// `/v1/traces` (`http://` or `https://`, verified against the system's roots).
    /// `None` (logged) when no TLS client can be made: then nothing is exported.
    pub(crate) fn start(endpoint: &Uri) -> Option<Self> {
        let client = match client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "OTLP export disabled: no TLS client configuration");
                return None;
            }
        };
        let base = endpoint.to_string();
        let traces = format!("{}/v1/traces", base.trim_end_matches('/'));
        // `endpoint` is a valid URI and the path appended is too.
        let uri: Uri = traces.parse().unwrap_or_else(|_| endpoint.clone());
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(rx, client, uri, dropped.clone()));
        Some(Self { tx, dropped })
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
                ("http.request.method", method.as_str().to_owned()),
                ("server.address", host.to_owned()),
                ("url.path", path.to_owned()),
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
        self.attributes
            .push(("http.response.status_code", status.to_string()));
        self.attributes
            .push(("portico.gateway", gateway.to_owned()));
        self.attributes.push(("portico.route", route.to_owned()));
        if let Some(backend) = backend {
            self.attributes
                .push(("portico.backend", backend.to_owned()));
        }
        let record = SpanRecord {
            trace: self.trace,
            name: self.name,
            start,
            end,
            status,
            attributes: self.attributes,
        };
        if self.exporter.tx.try_send(record).is_err() {
            let dropped = self.exporter.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once per thousand, not once per span: the collector is down or slow.
            if dropped % 1000 == 1 {
                tracing::warn!(dropped, "OTLP export queue full; spans dropped");
            }
        }
    }
}

fn client() -> Result<HttpsClient, rustls::Error> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(crate::upstream_tls::system_roots().clone())
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(EXPORT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn run(
    mut rx: mpsc::Receiver<SpanRecord>,
    client: HttpsClient,
    uri: Uri,
    dropped: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                () = &mut window => break,
                next = rx.recv() => match next {
                    Some(span) => batch.push(span),
                    None => break,
                },
            }
        }
        let spans = batch.len();
        match tokio::time::timeout(EXPORT_TIMEOUT, post(&client, &uri, &batch)).await {
            Ok(Ok(())) => tracing::debug!(spans, "OTLP spans exported"),
            Ok(Err(error)) => tracing::warn!(%uri, spans, %error, "OTLP export failed"),
            Err(_) => tracing::warn!(%uri, spans, "OTLP export timed out"),
        }
    }
    let dropped = dropped.load(Ordering::Relaxed);
    tracing::debug!(dropped, "OTLP export stopped");
}

async fn post(client: &HttpsClient, uri: &Uri, batch: &[SpanRecord]) -> Result<(), String> {
    let body = serde_json::to_vec(&request_body(batch)).map_err(|e| e.to_string())?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    // Read the (small) reply so the connection can be reused.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

/// An `ExportTraceServiceRequest` in the OTLP JSON encoding: ids in hex, times as
/// decimal strings of Unix nanoseconds, enums as numbers.
fn request_body(batch: &[SpanRecord]) -> Value {
    let spans: Vec<Value> = batch.iter().map(span_json).collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [string_attribute("service.name", "portico-proxy")]},
            "scopeSpans": [{
                "scope": {"name": "portico-proxy", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
}

fn span_json(span: &SpanRecord) -> Value {
    let mut value = json!({
        "traceId": span.trace.trace_id_hex(),
        "spanId": format!("{:016x}", span.trace.span_id),
        "name": span.name,
        "kind": KIND_SERVER,
        "startTimeUnixNano": unix_nanos(span.start),
        "endTimeUnixNano": unix_nanos(span.end),
        "attributes": span
            .attributes
            .iter()
            .map(|(key, value)| string_attribute(key, value))
            .collect::<Vec<_>>(),
    });
    if let Some(parent) = span.trace.parent_id {
        value["parentSpanId"] = json!(format!("{parent:016x}"));
    }
    // "Span Status MUST be left unset if HTTP status code was in the 1xx, 2xx or 3xx
    // ranges ... For HTTP status codes in the 5xx range ... status MUST be set to
    // Error" (server spans; 4xx is the client's error).
    if span.status >= 500 {
        value["status"] = json!({"code": STATUS_ERROR});
    }
    value
}

fn string_attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001);
        let record = SpanRecord {
            trace: TraceContext {
                trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                span_id: 0x1234,
                parent_id: Some(0x00f0_67aa_0ba9_02b7),
                flags: 1,
            },
            name: "GET apps/web".into(),
            start,
            end: start + Duration::from_millis(2),
            status: 503,
            attributes: vec![("url.path", "/x".into())],
        };
        let body = request_body(&[record]);
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "0000000000001234");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(span["endTimeUnixNano"], "1700000000002000001");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["attributes"][0]["key"], "url.path");
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "/x");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "portico-proxy"
        );
    }
}
