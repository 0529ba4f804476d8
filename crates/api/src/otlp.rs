//! OpenTelemetry span export for every Portico binary: OTLP over HTTP with the JSON
//! encoding (`POST <endpoint>/v1/traces`, `content-type: application/json`), which every
//! OpenTelemetry Collector and most tracing backends accept on port 4318.
//!
//! ```text
//! proxy: a sampled request done ─┐
//!                                ├─ Exporter::export ──try_send──> bounded queue (QUEUE spans;
//! operator: a tracing span of    │                                 full: dropped, counted)
//!   target portico::otlp closed ─┘ (SpanLayer)                       │ export task: a batch of
//!                                                                    │ up to MAX_BATCH spans, or
//!                                                                    │ what came in BATCH_WINDOW
//!                                                                    └─> POST {"resourceSpans":[..]}
//!                                                                        (EXPORT_TIMEOUT)
//! ```
//!
//! The proxy builds its [`Span`]s itself (its trace ids come from the requests'
//! `traceparent`). The operator marks what it wants exported with ordinary `tracing`
//! spans of target [`SPAN_TARGET`] (`info_span!(target: SPAN_TARGET, "reconcile", ..)`):
//! [`SpanLayer`] turns each into a [`Span`] when it closes, its fields as attributes, a
//! field named `error` making its status ERROR; a span inside another exported span is
//! its child, one that is not starts a trace.
//!
//! Written by hand rather than with `opentelemetry-otlp`: one message type, encoded with
//! serde_json, over the hyper client the binaries already have, instead of the SDK's
//! dependency tree. A failed export is logged and its spans are dropped; nothing ever
//! waits on it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of the spans [`SpanLayer`] exports.
pub const SPAN_TARGET: &str = "portico::otlp";

/// Spans waiting for export; beyond this, new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per request to the collector at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits for more spans after its first.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// `STATUS_CODE_ERROR` of the OTLP protobuf enum.
const STATUS_ERROR: u8 = 2;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why no exporter could be made.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("no TLS client configuration for the OTLP export: {0}")]
    Tls(#[from] rustls::Error),
}

/// `SpanKind` of the OTLP protobuf enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Bool(bool),
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// A finished span, as exported.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: u128,
    pub span_id: u64,
    /// `None` for the root of a trace.
    pub parent_id: Option<u64>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Status ERROR; unset otherwise.
    pub error: bool,
    pub attributes: Vec<(String, AttributeValue)>,
}

/// Where finished spans go. Cheap to clone; the export task ends when the last clone
/// is dropped, after sending what is queued.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Starts the export task (needs a tokio runtime) sending to `endpoint`'s
    /// `/v1/traces` (`http://`, or `https://` verified against `roots`), as the resource
    /// `service.name = service`.
    pub fn start(
        endpoint: &Uri,
        service: &'static str,
        roots: RootCertStore,
    ) -> Result<Self, OtlpError> {
        let client = client(roots)?;
        let base = endpoint.to_string();
        let traces = format!("{}/v1/traces", base.trim_end_matches('/'));
        let uri: Uri = traces.parse().map_err(|source| OtlpError::Endpoint {
            endpoint: base.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(rx, client, uri, service, dropped.clone()));
        Ok(Self { tx, dropped })
    }

    /// Queues `span` for export, or drops it (counted) when the queue is full.
    pub fn export(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once per thousand, not once per span: the collector is down or slow.
            if dropped % 1000 == 1 {
                tracing::warn!(dropped, "OTLP export queue full; spans dropped");
            }
        }
    }

    /// How many spans were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The platform's root certificates, for an `https://` endpoint.
pub fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's root certificates");
    }
    store.add_parsable_certificates(found.certs);
    store
}

/// A random, valid (non-zero) trace id.
pub fn trace_id() -> u128 {
    fastrand::u128(1..)
}

/// A random, valid (non-zero) span id.
pub fn span_id() -> u64 {
    fastrand::u64(1..)
}

fn client(roots: RootCertStore) -> Result<HttpsClient, rustls::Error> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
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
    mut rx: mpsc::Receiver<Span>,
    client: HttpsClient,
    uri: Uri,
    service: &'static str,
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
        let body = request_body(service, &batch);
        match tokio::time::timeout(EXPORT_TIMEOUT, post(&client, &uri, &body)).await {
            Ok(Ok(())) => tracing::debug!(spans, "OTLP spans exported"),
            Ok(Err(error)) => tracing::warn!(%uri, spans, %error, "OTLP export failed"),
            Err(_) => tracing::warn!(%uri, spans, "OTLP export timed out"),
        }
    }
    let dropped = dropped.load(Ordering::Relaxed);
    tracing::debug!(dropped, "OTLP export stopped");
}

async fn post(client: &HttpsClient, uri: &Uri, body: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
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
/// decimal strings of Unix nanoseconds, enums as numbers, 64-bit integers as strings.
pub fn request_body(service: &str, batch: &[Span]) -> Value {
    let spans: Vec<Value> = batch.iter().map(span_json).collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [attribute("service.name", &service.into())]},
            "scopeSpans": [{
                "scope": {"name": service, "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
}

fn span_json(span: &Span) -> Value {
    let mut value = json!({
        "traceId": format!("{:032x}", span.trace_id),
        "spanId": format!("{:016x}", span.span_id),
        "name": span.name,
        "kind": span.kind as u8,
        "startTimeUnixNano": unix_nanos(span.start),
        "endTimeUnixNano": unix_nanos(span.end),
        "attributes": span
            .attributes
            .iter()
            .map(|(key, value)| attribute(key, value))
            .collect::<Vec<_>>(),
    });
    if let Some(parent) = span.parent_id {
        value["parentSpanId"] = json!(format!("{parent:016x}"));
    }
    if span.error {
        value["status"] = json!({"code": STATUS_ERROR});
    }
    value
}

fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::String(s) => json!({"stringValue": s}),
        AttributeValue::Int(i) => json!({"intValue": i.to_string()}),
        AttributeValue::Bool(b) => json!({"boolValue": b}),
    };
    json!({"key": key, "value": value})
}

fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// Exports the `tracing` spans of target [`SPAN_TARGET`] (see the module docs); the
/// others are not even seen (the layer's filter).
#[derive(Debug)]
pub struct SpanLayer {
    exporter: Exporter,
}

impl SpanLayer {
    /// The layer, filtered to [`SPAN_TARGET`], for a subscriber built on a `Registry`.
    pub fn new<S>(exporter: Exporter) -> Filtered<Self, Targets, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Self { exporter }.with_filter(Targets::new().with_target(SPAN_TARGET, Level::TRACE))
    }
}

/// What an exported span carries while it is open (a span extension).
#[derive(Debug)]
struct Open {
    trace_id: u128,
    span_id: u64,
    parent_id: Option<u64>,
    start: SystemTime,
    error: bool,
    attributes: Vec<(String, AttributeValue)>,
}

impl Open {
    fn set(&mut self, key: &str, value: AttributeValue) {
        if key == "error" {
            self.error = true;
        }
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key.to_owned(), value)),
        }
    }
}

impl Visit for Open {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into);
        self.set(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), format!("{value:?}").into());
    }
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // The nearest exported ancestor is the parent; without one, a new trace.
        let parent = span.scope().skip(1).find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<Open>()
                .map(|open| (open.trace_id, open.span_id))
        });
        let mut open = Open {
            trace_id: parent.map_or_else(trace_id, |(trace, _)| trace),
            span_id: span_id(),
            parent_id: parent.map(|(_, span)| span),
            start: SystemTime::now(),
            error: false,
            attributes: Vec::new(),
        };
        attrs.record(&mut open);
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(open);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        self.exporter.export(Span {
            trace_id: open.trace_id,
            span_id: open.span_id,
            parent_id: open.parent_id,
            name: span.name().to_owned(),
            kind: SpanKind::Internal,
            start: open.start,
            end: SystemTime::now(),
            error: open.error,
            attributes: open.attributes,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001);
        let span = Span {
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            span_id: 0x1234,
            parent_id: Some(0x00f0_67aa_0ba9_02b7),
            name: "GET apps/web".into(),
            kind: SpanKind::Server,
            start,
            end: start + Duration::from_millis(2),
            error: true,
            attributes: vec![
                ("url.path".into(), "/x".into()),
                ("portico.routes".into(), 3.into()),
            ],
        };
        let body = request_body("portico-proxy", &[span]);
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
        assert_eq!(span["attributes"][1]["value"]["intValue"], "3");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "portico-proxy"
        );
    }

    /// The layer's spans, taken off the exporter's queue (no export task runs).
    fn collect(work: impl FnOnce()) -> Vec<Span> {
        let (tx, mut rx) = mpsc::channel(16);
        let exporter = Exporter {
            tx,
            dropped: Arc::default(),
        };
        let subscriber = tracing_subscriber::registry().with(SpanLayer::new(exporter));
        tracing::subscriber::with_default(subscriber, work);
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn tracing_spans_of_the_target_become_spans_with_their_fields() {
        let spans = collect(|| {
            let outer = tracing::info_span!(target: SPAN_TARGET, "reconcile", generation = 7_u64, routes = tracing::field::Empty);
            let _in = outer.enter();
            outer.record("routes", 2_i64);
            tracing::info_span!("not exported").in_scope(|| {
                let inner = tracing::info_span!(target: SPAN_TARGET, "inner", error = tracing::field::Empty);
                inner.record("error", "refused");
            });
        });
        let [inner, outer] = &spans[..] else {
            panic!("two spans, the inner one closed first: {spans:?}");
        };
        assert_eq!(outer.name, "reconcile");
        assert_eq!(outer.parent_id, None);
        assert_eq!(
            outer.attributes,
            vec![
                ("generation".to_owned(), AttributeValue::Int(7)),
                ("routes".to_owned(), AttributeValue::Int(2)),
            ]
        );
        assert!(!outer.error);
        assert_eq!(inner.trace_id, outer.trace_id);
        assert_eq!(inner.parent_id, Some(outer.span_id));
        assert!(inner.error);
        assert!(outer.start <= outer.end);
    }
}
