//! An OpenTelemetry collector for tests: an HTTP/1 server on 127.0.0.1:0 answering 200
//! to every request and keeping what it got, for the components' `--otlp-endpoint`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the collector received.
#[derive(Clone, Debug)]
pub struct Export {
    pub method: String,
    pub path: String,
    pub content_type: String,
    /// The body as JSON; `Null` when it was not JSON.
    pub body: Value,
}

/// The collector; it stops when dropped.
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Export>>>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Starts the collector (needs a tokio runtime).
    pub async fn start() -> std::io::Result<Self> {
        let socket = TcpListener::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let keep = keep.clone();
                        async move {
                            let export = read(req).await;
                            keep.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(export);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, for `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn exports(&self) -> Vec<Export> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every span so far, each with its resource's `service.name`.
    pub fn spans(&self) -> Vec<(String, Value)> {
        self.exports()
            .iter()
            .flat_map(|export| {
                export.body["resourceSpans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|resource| {
                        let service = resource["resource"]["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|a| a["key"] == "service.name")
                            .and_then(|a| a["value"]["stringValue"].as_str())
                            .unwrap_or_default()
                            .to_owned();
                        resource["scopeSpans"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|s| s["spans"].as_array().into_iter().flatten())
                            .map(move |span| (service.clone(), span.clone()))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(req: Request<Incoming>) -> Export {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Export {
        method,
        path,
        content_type,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// The value of `span`'s attribute `key`, as its JSON string (`stringValue`, and
/// `intValue`, which OTLP JSON encodes as a string) or boolean.
pub fn attribute(span: &Value, key: &str) -> Option<Value> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue", "boolValue"]
        .iter()
        .find_map(|kind| value.get(kind).cloned())
}
