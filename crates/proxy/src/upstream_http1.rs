//! Plain HTTP/1.1 upstream connections: a keep-alive pool per endpoint, made of hyper's
//! `client::conn::http1` handles.
//!
//! ```text
//! Http1Pool ── endpoint ──> [conn, conn, conn]   (last put back = first tried)
//!
//! send:  take the last conn that is ready (idle, not closed), dropping closed ones
//!        └─ none ─> connect (connect timeout), handshake, spawn the connection task
//!        send the request
//!        └─ a pooled conn that closed before the request was written (the request
//!           comes back) ─> once more on a new connection
//!        response head ─> the conn goes back (unless it upgraded); it is ready again
//!        once its response body has been read
//! sweep: every idle timeout, conns idle longer than that and closed ones are dropped
//! ```
//!
//! Why not hyper-util's legacy `Client`: it keys its pool by scheme and authority (a
//! `Uri` built and parsed per request), waits for each connection's readiness on a task
//! spawned per request, and cost ~8-10k instructions per request in callgrind (issue 9).
//! Here a conn is put back as soon as the response head arrives and is skipped while it
//! is busy (`is_ready` is false until its body is read), so nothing waits for it.
//!
//! The list holds busy and idle conns alike, at most `max_idle` of them; a conn that
//! comes back to a full list is dropped, and it closes when its response is done.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use http::{Request, Response, StatusCode};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{error::BoxError, upstream::RequestBody};

type Sender = http1::SendRequest<RequestBody>;

/// Why a request to an endpoint failed: before a connection existed, or after.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(BoxError),
    Exchange(BoxError),
}

#[derive(Clone, Debug)]
pub(crate) struct Http1Pool {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    conns: Arc<Mutex<Conns>>,
}

#[derive(Debug, Default)]
struct Conns {
    by_endpoint: HashMap<SocketAddr, Vec<Conn>>,
    /// Whether the sweeper task runs (started by the first connect, inside the runtime).
    sweeping: bool,
}

#[derive(Debug)]
struct Conn {
    sender: Sender,
    /// When it was last put back.
    since: Instant,
}

impl Http1Pool {
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            connect_timeout,
            idle_timeout,
            max_idle,
            conns: Arc::default(),
        }
    }

    /// Sends `req` (origin-form URI, Host header set) to `endpoint`.
    pub(crate) async fn send(
        &self,
        endpoint: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let (sender, response) = match self.checkout(endpoint) {
            Some(mut sender) => match sender.try_send_request(req).await {
                Ok(response) => (sender, Ok(response)),
                Err(mut error) => match error.take_message() {
                    // The conn closed before the request was written (the backend
                    // closed it while idle): nothing was sent, so a new one may carry it.
                    Some(req) => {
                        let mut sender =
                            self.connect(endpoint).await.map_err(SendError::Connect)?;
                        let response = sender.send_request(req).await;
                        (sender, response)
                    }
                    None => return Err(SendError::Exchange(Box::new(error.into_error()))),
                },
            },
            None => {
                let mut sender = self.connect(endpoint).await.map_err(SendError::Connect)?;
                let response = sender.send_request(req).await;
                (sender, response)
            }
        };
        let response = response.map_err(|e| SendError::Exchange(Box::new(e)))?;
        // An upgraded connection belongs to the upgrade now.
        if response.status() != StatusCode::SWITCHING_PROTOCOLS && !sender.is_closed() {
            self.put_back(endpoint, sender);
        }
        Ok(response)
    }

    /// The last conn put back for `endpoint` that is ready for a request; closed conns
    /// met on the way are dropped, busy ones stay.
    fn checkout(&self, endpoint: SocketAddr) -> Option<Sender> {
        // A poisoned lock only means another request panicked mid-update; the lists
        // are still valid lists.
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.by_endpoint.get_mut(&endpoint)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].sender.is_ready() {
                return Some(list.swap_remove(i).sender);
            }
            if list[i].sender.is_closed() {
                list.swap_remove(i);
            }
        }
        None
    }

    fn put_back(&self, endpoint: SocketAddr, sender: Sender) {
        let since = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.by_endpoint.entry(endpoint).or_default();
        if list.len() < self.max_idle {
            list.push(Conn { sender, since });
        }
    }

    async fn connect(&self, endpoint: SocketAddr) -> Result<Sender, BoxError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))??;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%endpoint, %error, "upstream connection ended with an error");
            }
        });
        self.start_sweeping();
        Ok(sender)
    }

    /// Starts the task that drops conns idle past the idle timeout, once per pool. It
    /// ends with the pool.
    fn start_sweeping(&self) {
        {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            if conns.sweeping {
                return;
            }
            conns.sweeping = true;
        }
        let pool = Arc::downgrade(&self.conns);
        let timeout = self.idle_timeout;
        tokio::spawn(sweep(pool, timeout));
    }
}

async fn sweep(pool: Weak<Mutex<Conns>>, timeout: Duration) {
    // The first tick of an interval is at once; a period of zero would panic.
    let mut interval = tokio::time::interval(timeout.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(conns) = pool.upgrade() else { return };
        let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.by_endpoint.retain(|_, list| {
            // A busy conn stays even past the timeout: it is in use.
            list.retain(|c| {
                let idle_too_long = c.sender.is_ready() && c.since.elapsed() >= timeout;
                !c.sender.is_closed() && !idle_too_long
            });
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use bytes::Bytes;
    use futures::StreamExt;
    use http_body_util::{BodyExt, Empty, StreamBody};
    use hyper::body::Frame;
    use hyper::{server::conn::http1 as server, service::service_fn};
    use portico_testkit::eventually;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        sync::Semaphore,
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn get() -> Request<RequestBody> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, "backend.test")
            .body(Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync())
            .expect("a valid request")
    }

    /// A keep-alive backend that answers each request with the number of the
    /// connection it came on, and counts the connections it accepted. Each response
    /// body ends only once `release` has a permit for it (a busy connection until then).
    async fn backend(release: Arc<Semaphore>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let release = release.clone();
                let service = service_fn(move |_req: Request<Incoming>| {
                    let release = release.clone();
                    async move {
                        let frames = futures::stream::unfold(0, move |step| {
                            let release = release.clone();
                            async move {
                                match step {
                                    0 => Some((Ok(Frame::data(Bytes::from(n.to_string()))), 1)),
                                    1 => {
                                        release.acquire().await.ok()?.forget();
                                        None
                                    }
                                    _ => None,
                                }
                            }
                        });
                        Ok::<_, Infallible>(Response::new(StreamBody::new(
                            frames.map(|f: Result<Frame<Bytes>, Infallible>| f),
                        )))
                    }
                });
                tokio::spawn(
                    server::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, accepted)
    }

    fn open() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
    }

    /// A backend that closes every connection after its first response without saying
    /// so (no `Connection: close`), as a backend's own idle timeout would.
    async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    async fn body(response: Response<Incoming>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    fn pool() -> Http1Pool {
        Http1Pool::new(Duration::from_secs(5), Duration::from_secs(90), 4)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (addr, accepted) = backend(open()).await;
        let pool = pool();
        for _ in 0..5 {
            let response = pool.send(addr, get()).await.expect("a response");
            assert_eq!(body(response).await, "1");
            // Ready again once its connection task has seen the end of the response.
            eventually(WAIT, || async {
                (pool.ready_conns(addr) == 1).then_some(())
            })
            .await
            .expect("the connection is ready again");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_reused() {
        let release = Arc::new(Semaphore::new(0));
        let (addr, accepted) = backend(release.clone()).await;
        let pool = pool();
        let first = pool.send(addr, get()).await.expect("a response");
        // The first response's body has not ended: its connection is busy, a second
        // one opens.
        let second = pool.send(addr, get()).await.expect("a response");
        release.add_permits(2);
        assert_eq!(body(second).await, "2");
        assert_eq!(body(first).await, "1");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_the_backend_closed_are_replaced() {
        let (addr, accepted) = closing_backend().await;
        let pool = pool();
        // Whether the pool sees the close before the next request (is_closed) or only
        // when it writes it (the request comes back), every request is answered.
        for _ in 0..10 {
            let response = pool.send(addr, get()).await.expect("a response");
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);
        let outcome = pool().send(addr, get()).await;
        assert!(matches!(outcome, Err(SendError::Connect(_))), "{outcome:?}");
    }

    #[tokio::test]
    async fn no_more_than_max_idle_are_kept() {
        let release = Arc::new(Semaphore::new(0));
        let (addr, accepted) = backend(release.clone()).await;
        let pool = pool();
        let mut responses = Vec::new();
        for _ in 0..6 {
            responses.push(pool.send(addr, get()).await.expect("a response"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
        assert_eq!(pool.conns_of(addr), 4);
        release.add_permits(6);
        for response in responses {
            body(response).await;
        }
    }

    #[tokio::test]
    async fn idle_connections_are_dropped_after_the_idle_timeout() {
        let (addr, _) = backend(open()).await;
        let pool = Http1Pool::new(Duration::from_secs(5), Duration::from_millis(50), 4);
        let response = pool.send(addr, get()).await.expect("a response");
        body(response).await;
        eventually(WAIT, || async { (pool.conns_of(addr) == 0).then_some(()) })
            .await
            .expect("the idle connection is dropped");
    }

    impl Http1Pool {
        fn conns_of(&self, endpoint: SocketAddr) -> usize {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.by_endpoint.get(&endpoint).map_or(0, Vec::len)
        }

        fn ready_conns(&self, endpoint: SocketAddr) -> usize {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.by_endpoint.get(&endpoint).map_or(0, |list| {
                list.iter().filter(|c| c.sender.is_ready()).count()
            })
        }
    }
}
