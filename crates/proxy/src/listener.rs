//! Listeners: one bound socket each, with an accept loop that serves HTTP/1.1 and
//! HTTP/2 prior knowledge (h2c) on the same port and drains on stop. An HTTPS listener
//! first completes a TLS handshake (certificates by SNI, see crate::tls; ALPN h2 or
//! http/1.1), then serves the same way over the TLS stream. An HTTPS socket that also
//! carries TLS routes reads the ClientHello first and hands connections whose SNI a
//! TLS route matches to crate::l4.
//!
//! ```text
//! stop token ──> accept loop breaks ──> socket dropped ──> `closed` fires
//!                                          │                 (update may rebind the port)
//!                                          v
//!                       graceful shutdown of open connections (HTTP/1: close after the
//!                       current response; HTTP/2: GOAWAY), bounded by drain_timeout,
//!                       then the remaining connections are cut
//! ```

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket},
    sync::oneshot,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    error::ListenerError,
    framing::Guarded,
    l4::{Rewind, Sniffed, Streams},
    options::ProxyOptions,
    service::{self, Conn, Shared},
};

/// Pending connections the kernel queues before accept.
const BACKLOG: u32 = 1024;

/// A client that has not finished its TLS handshake by then is dropped, so that idle
/// sockets cannot pile up before any request-level timeout applies.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` for listener `name`. Synchronous so that `update` knows at once which
/// listeners failed. SO_REUSEADDR lets a listener rebind a port that a previous one just
/// released while its old connections sit in TIME_WAIT. SO_REUSEPORT lets a new proxy
/// process bind the ports an old one still holds (same user only; a program that did not
/// set it still makes the bind fail), so that a restart overlaps: the kernel spreads new
/// connections over both until the old one, on SIGTERM, closes its sockets and drains
/// (ARCHITECTURE.md, "Shutdown").
pub(crate) fn bind(name: &str, addr: SocketAddr) -> Result<TcpListener, ListenerError> {
    let socket = bind_only(name, addr)?;
    socket.listen(BACKLOG).map_err(|e| ListenerError {
        listener: name.to_owned(),
        addr,
        error: Arc::new(e),
    })
}

/// The bind of [`bind`] without `listen`: what the config check needs. A socket that
/// listened would join the port's SO_REUSEPORT group and, for as long as it lived, take
/// a share of new connections that are then reset when it closes.
pub(crate) fn bind_only(name: &str, addr: SocketAddr) -> Result<TcpSocket, ListenerError> {
    let error = |e: std::io::Error| ListenerError {
        listener: name.to_owned(),
        addr,
        error: Arc::new(e),
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.set_reuseport(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    Ok(socket)
}

/// A listener that is accepting.
#[derive(Debug)]
pub(crate) struct Running {
    /// The address the config asked for, to tell whether a new config changed it.
    pub(crate) requested: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    /// Cancels the accept loop when dropped, so that a dropped `ProxyHandle` does not
    /// leave sockets accepting.
    stop: DropGuard,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts accepting on `listener`. Call only once the routing table that knows
    /// listener `name` is in place, or its first requests would find no routes. With
    /// `tls`, every connection is a TLS one (an HTTPS listener).
    pub(crate) fn spawn(
        name: &str,
        requested: SocketAddr,
        listener: TcpListener,
        shared: Arc<Shared>,
        options: &ProxyOptions,
        tls: Option<Arc<ServerConfig>>,
        streams: Arc<Streams>,
    ) -> Result<Self, ListenerError> {
        let local_addr = listener.local_addr().map_err(|e| ListenerError {
            listener: name.to_owned(),
            addr: requested,
            error: Arc::new(e),
        })?;
        let stop = CancellationToken::new();
        let (closed_tx, closed) = oneshot::channel();
        let accept = AcceptLoop {
            name: Arc::from(name),
            listener,
            shared,
            builder: Arc::new(server_builder(options)),
            stop: stop.clone(),
            drain_timeout: options.drain_timeout,
            tls: tls.map(TlsAcceptor::from),
            streams,
        };
        let task = tokio::spawn(accept.run(closed_tx));
        Ok(Self {
            requested,
            local_addr,
            stop: stop.drop_guard(),
            closed,
            task,
        })
    }

    /// Stops accepting and returns once the socket is closed; the returned task keeps
    /// draining the open connections (bounded by the drain timeout) and ends after.
    pub(crate) async fn stop(self) -> JoinHandle<()> {
        let Self {
            stop, closed, task, ..
        } = self;
        drop(stop);
        // An error means the loop is already gone (it only ends by this token, or by a
        // panic): the socket is closed either way.
        let _ = closed.await;
        task
    }
}

/// HTTP/1.1 and HTTP/2 on one port: the auto builder reads the connection preface to
/// tell them apart, which is how h2c prior knowledge works without TLS/ALPN.
///
/// Hostile clients (docs/security.md): HTTP/1 heads are bounded in time (the header
/// read timeout, which also closes a keep-alive connection idle for as long) and size
/// (the read buffer: hyper answers 431 when it fills before the head ends). HTTP/2
/// streams are bounded per connection; a client that resets streams faster than they
/// are accepted (rapid reset, CVE-2023-44487) or makes the server reset them (CVE-2025-
/// 8671) gets GOAWAY; dead peers are found by PING.
fn server_builder(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.request_header_timeout)
        // hyper's smallest buffer is 8 KiB; the exact limit is checked per request too.
        .max_buf_size(options.max_header_bytes.max(H1_MIN_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// hyper's smallest HTTP/1 read buffer.
const H1_MIN_BUF: usize = 8192;
/// HTTP/2: streams reset by the client before the server accepted them, per connection;
/// past it the connection gets GOAWAY (rapid reset). hyper's default, made explicit.
const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: streams the server had to reset for a client's protocol errors, per
/// connection; past it the connection gets GOAWAY. hyper's default, made explicit.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// HTTP/2: a PING after this long without a frame from the client...
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is closed when its answer does not come within this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

struct AcceptLoop {
    name: Arc<str>,
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: CancellationToken,
    drain_timeout: Duration,
    tls: Option<TlsAcceptor>,
    /// The TLS routes sharing this socket, if any.
    streams: Arc<Streams>,
}

impl AcceptLoop {
    async fn run(self, closed: oneshot::Sender<()>) {
        let Self {
            name,
            listener,
            shared,
            builder,
            stop,
            drain_timeout,
            tls,
            streams,
        } = self;
        let graceful = GracefulShutdown::new();
        // Resolved once per socket: an accept only moves an atomic.
        let connections = shared.metrics.connections(&name);
        // Cuts the connections still open when the drain deadline passes.
        let cut = CancellationToken::new();
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, client) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off briefly rather than spin on a socket
                    // that cannot accept, and keep serving what is open.
                    tracing::warn!(listener = %name, %error, "accept failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            // Over max_connections: accepted and closed at once (RST by the linger of
            // 0 would be harsher; a FIN tells the client to go elsewhere), so that the
            // kernel's backlog does not fill with connections that will wait forever.
            let Some(slot) = shared.connections.take() else {
                tracing::debug!(listener = %name, %client, "max connections reached, closing");
                drop(stream);
                continue;
            };
            // Small request/response exchanges: do not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let conn = Arc::new(Conn {
                listener: name.clone(),
                client,
                sni: Default::default(),
                heads: Default::default(),
            });
            // Learns the SNI once the handshake is done (HTTPS: misdirected requests).
            let handshake_conn = conn.clone();
            let heads = conn.heads.clone();
            let max_head = shared.limits.max_header_bytes.max(H1_MIN_BUF);
            let shared = shared.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let cut = cut.clone();
            let tls = tls.clone();
            let streams = streams.clone();
            let listener_name = name.clone();
            let open = OpenConnection::new(connections.clone());
            tokio::spawn(async move {
                // Counted from accept to the end of this task, whatever ends it.
                let _open = open;
                let _slot = slot;
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    // Boxed: hyper moves the service's future around (HTTP/2 spawns a
                    // task per stream with it inside), and a request's future is large;
                    // moved as a pointer it is copied once, into the box.
                    let handling = Box::pin(service::handle(shared, conn, req));
                    async move { Ok::<_, Infallible>(handling.await) }
                });
                let Some(acceptor) = tls else {
                    serve(
                        &builder,
                        Guarded::new(stream, heads, max_head),
                        svc,
                        watcher,
                        cut,
                        client,
                    )
                    .await;
                    return;
                };
                // TLS routes on this socket: the SNI decides who gets the connection
                // (bounded by the ClientHello's own size and time limits).
                let stream = if streams.shares_socket(&listener_name) {
                    let sniffed = tokio::select! {
                        sniffed = streams.sniff(&listener_name, stream, client) => sniffed,
                        () = cut.cancelled() => return,
                    };
                    match sniffed {
                        Sniffed::Http(stream) => stream,
                        Sniffed::Taken | Sniffed::Dropped => return,
                    }
                } else {
                    Rewind::new(bytes::BytesMut::new(), stream)
                };
                // The handshake is not watched by the graceful shutdown: it is bounded by
                // its own timeout, and a listener that stops does not wait for it.
                let handshake = tokio::select! {
                    handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
                    () = cut.cancelled() => return,
                };
                match handshake {
                    Ok(Ok(stream)) => {
                        if let Some(sni) = stream.get_ref().1.server_name() {
                            let _ = handshake_conn.sni.set(sni.into());
                        }
                        serve(
                            &builder,
                            Guarded::new(stream, heads, max_head),
                            svc,
                            watcher,
                            cut,
                            client,
                        )
                        .await;
                    }
                    // No certificate for the SNI, no common version or cipher, not TLS
                    // at all: rustls has sent an alert where it could.
                    Ok(Err(error)) => tracing::debug!(%client, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                }
            });
        }
        drop(listener);
        let _ = closed.send(());
        let open_at_stop = graceful.count();
        if tokio::time::timeout(drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(listener = %name, open_at_stop, "drain timeout passed, cutting connections");
            cut.cancel();
        }
        tracing::debug!(listener = %name, "listener stopped");
    }
}

/// One open client connection in `portico_proxy_downstream_connections_active`.
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one connection (plain TCP or TLS) until it ends or is cut.
async fn serve<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
    cut: CancellationToken,
    client: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::upstream::ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    // With upgrades: a WebSocket handshake hands the connection over to the tunnel (see
    // upgrade.rs) instead of closing it.
    let served = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), svc));
    tokio::select! {
        result = served => {
            // Client resets and malformed requests end up here; hyper has already
            // answered what could be answered (400, 408, 431).
            if let Err(error) = result {
                tracing::debug!(%client, %error, "connection ended with an error");
            }
        }
        () = cut.cancelled() => {
            tracing::debug!(%client, "connection cut at the drain deadline");
        }
    }
}
