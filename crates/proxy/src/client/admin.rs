//! The proxy's admin port: `GET /healthz` (200 while the process serves) and
//! `GET /readyz` (200 once a config from the operator is applied, 503 before: a proxy
//! with no config would answer every request 404). Readiness stays once reached: a
//! proxy that loses the operator keeps serving its last good config. `GET /metrics`:
//! the proxy's metrics in the Prometheus text format (crate::metrics).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::ProxyHandle;
use crate::client::stream::StreamStatus;

/// The content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn serve(
    listen: SocketAddr,
    status: watch::Receiver<StreamStatus>,
    proxy: Arc<ProxyHandle>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            let status = status.clone();
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let reply = if req.method() == Method::GET && req.uri().path() == "/metrics" {
                        metrics(&proxy)
                    } else {
                        answer(req.method(), req.uri().path(), &status.borrow())
                    };
                    async move { Ok::<_, Infallible>(reply) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %e, "admin connection ended");
                }
            });
        }
    });
    Ok((addr, task))
}

fn answer(method: &Method, path: &str, status: &StreamStatus) -> Response<Full<Bytes>> {
    let (code, body) = match (method, path) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n".to_owned()),
        (&Method::GET, "/readyz") => match &status.applied {
            Some(version) => (StatusCode::OK, format!("ready: serving {version}\n")),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no config applied yet\n".to_owned(),
            ),
        },
        (&Method::GET, _) => (StatusCode::NOT_FOUND, String::new()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
}

fn metrics(proxy: &ProxyHandle) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(proxy.metrics_text())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_a_config_is_applied() {
        let mut status = StreamStatus::default();
        assert_eq!(
            answer(&Method::GET, "/readyz", &status).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer(&Method::GET, "/healthz", &status).status(),
            StatusCode::OK
        );
        status.applied = Some("v1".into());
        assert_eq!(
            answer(&Method::GET, "/readyz", &status).status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&Method::POST, "/readyz", &status).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
