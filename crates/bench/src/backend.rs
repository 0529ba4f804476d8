//! The benchmark backend (`portico-bench backend --port P [--ip IP]`): a fixed response, cheap
//! enough that the proxies dominate. HTTP/1.1 and HTTP/2 cleartext on one port.
//!
//! - any path: `200 ok\n` (request bodies are read and dropped);
//! - a path ending in [`BIG`] (`/big`): 1 MiB body;
//! - a path ending in [`SLOW`] (`/delay`): `ok` after 10 ms;
//! - `/__count`: how many requests this backend answered (not counted itself).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub(crate) const BIG_BODY: usize = 1 << 20;
pub(crate) const DELAY: Duration = Duration::from_millis(10);
/// Appended to a route's path (`/p9/x/big`, still under its prefix `/p9/`): 1 MiB body.
pub(crate) const BIG: &str = "/big";
/// Appended to a route's path: the answer comes after [`DELAY`].
pub(crate) const SLOW: &str = "/delay";

/// What the backend answers for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Small,
    Big,
    Delayed,
}

fn shape(path: &str) -> Shape {
    if path.ends_with(BIG) {
        Shape::Big
    } else if path.ends_with(SLOW) {
        Shape::Delayed
    } else {
        Shape::Small
    }
}

pub(crate) fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let count = Arc::new(AtomicU64::new(0));
    let big = Bytes::from(vec![b'x'; BIG_BODY]);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little and go on.
                eprintln!("backend {addr}: accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        let big = big.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, count.clone(), big.clone()));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    count: Arc<AtomicU64>,
    big: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/__count" {
        let n = count.load(Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from(n.to_string()))));
    }
    count.fetch_add(1, Ordering::Relaxed);
    // Read the request body to its end; its content does not matter.
    let _ = req.into_body().collect().await;
    let body = match shape(&path) {
        Shape::Big => big,
        Shape::Delayed => {
            tokio::time::sleep(DELAY).await;
            Bytes::from_static(b"ok\n")
        }
        Shape::Small => Bytes::from_static(b"ok\n"),
    };
    Ok(Response::new(Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load tools append the suffixes to a route's path: the backend must still see
    /// them (the first full run sent `/p9/xbig` and measured the small answer).
    #[test]
    fn suffixes_on_a_route_path_reach_their_answers() {
        let path = crate::config::target(9).path;
        assert_eq!(shape(&format!("{path}{BIG}")), Shape::Big);
        assert_eq!(shape(&format!("{path}{SLOW}")), Shape::Delayed);
        assert_eq!(shape(&path), Shape::Small);
        assert_eq!(shape(&format!("{path}big")), Shape::Small);
    }
}
