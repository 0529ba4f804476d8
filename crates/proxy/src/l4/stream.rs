//! TCP and TLS stream routes: accept, choose a route (the first on TCP, by SNI on TLS),
//! connect to a backend, then splice bytes both ways.
//!
//! ```text
//! accept ─> TCP: first route
//!        └> TLS: ClientHello read (bounded 64 KiB / 10 s) ─> route by SNI ─ none ─> close
//!                  ├ passthrough: client = Rewind(hello bytes, socket)
//!                  └ terminate: client = TLS server stream over Rewind(...)
//!        ─> backend (weighted share, round robin endpoint)   ─ invalid/none ─> reset
//!        ─> connect (connect_timeout)                        ─ failed ─> reset
//!        ─> splice both ways until both sides have closed, or idle for
//!           stream_idle_timeout, or the listener is gone and its drain time is up
//! ```
//!
//! Half-close is respected: when one side shuts down its writing half, the other
//! side's writing half is shut down too and the opposite direction goes on (a client
//! may send a request, half-close, and read the answer).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    CLIENT_HELLO_TIMEOUT, Kind, MAX_CLIENT_HELLO, Sniffed, StreamListener, StreamRoute, Streams,
    Tls,
    sni::{Rewind, read_client_hello},
};

/// Serves a TCP or TLS stream listener until `stop`, then drains its connections for
/// at most the drain timeout.
pub(super) async fn accept_loop(
    name: Arc<str>,
    listener: TcpListener,
    streams: Arc<Streams>,
    stop: CancellationToken,
    closed: oneshot::Sender<()>,
) {
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off rather than spin, keep what is open.
                tracing::warn!(listener = %name, %error, "accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let _ = socket.set_nodelay(true);
        let (name, streams, cut) = (name.clone(), streams.clone(), cut.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = serve(&name, socket, client, &streams) => {}
                () = cut.cancelled() => {
                    tracing::debug!(listener = %name, %client, "connection cut at the drain deadline");
                }
            }
        });
    }
    drop(listener);
    let _ = closed.send(());
    tracker.close();
    let open_at_stop = tracker.len();
    if tokio::time::timeout(streams.options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(listener = %name, open_at_stop, "drain timeout passed, cutting connections");
        cut.cancel();
        tracker.wait().await;
    }
    tracing::debug!(listener = %name, "stream listener stopped");
}

/// One connection of a stream listener, from the table current at accept time.
async fn serve(name: &str, socket: TcpStream, client: SocketAddr, streams: &Streams) {
    let table = streams.table.load_full();
    let Some(listener) = table.listeners.get(name).cloned() else {
        return;
    };
    drop(table);
    match listener.kind {
        Kind::Tcp => match listener.first() {
            Some(route) => {
                forward(route, Rewind::new(BytesMut::new(), socket), client, streams).await
            }
            None => tracing::debug!(listener = %name, %client, "no TCP route, closing"),
        },
        Kind::Tls => {
            if let Some((route, client_stream)) = tls_route(name, &listener, socket, client).await {
                forward(&route, client_stream, client, streams).await;
            }
        }
        // UDP listeners have sockets of their own (udp.rs).
        Kind::Udp => {}
    }
}

/// Reads the ClientHello and picks the route by its SNI; `None` (connection dropped)
/// when it is not TLS or no route matches.
async fn tls_route(
    name: &str,
    listener: &StreamListener,
    mut socket: TcpStream,
    client: SocketAddr,
) -> Option<(Arc<StreamRoute>, Rewind<TcpStream>)> {
    let mut hello = BytesMut::new();
    match read_client_hello(
        &mut socket,
        &mut hello,
        MAX_CLIENT_HELLO,
        CLIENT_HELLO_TIMEOUT,
    )
    .await
    {
        Ok(parsed) => {
            let route = listener.by_sni(parsed.server_name.as_deref());
            if route.is_none() {
                tracing::debug!(listener = %name, %client, sni = ?parsed.server_name, "no TLS route for this server name, closing");
            }
            route.map(|r| (r.clone(), Rewind::new(hello, socket)))
        }
        Err(error) => {
            tracing::debug!(listener = %name, %client, %error, "no usable ClientHello, closing");
            None
        }
    }
}

/// The HTTPS-socket hand-over (see [`Streams::sniff`]).
pub(super) async fn sniff(
    streams: &Streams,
    name: &str,
    mut socket: TcpStream,
    client: SocketAddr,
) -> Sniffed {
    let listener = streams.table.load().listeners.get(name).cloned();
    let Some(listener) = listener else {
        return Sniffed::Http(Rewind::new(BytesMut::new(), socket));
    };
    let mut hello = BytesMut::new();
    match read_client_hello(
        &mut socket,
        &mut hello,
        MAX_CLIENT_HELLO,
        CLIENT_HELLO_TIMEOUT,
    )
    .await
    {
        Ok(parsed) => match listener.by_sni(parsed.server_name.as_deref()) {
            Some(route) => {
                let route = route.clone();
                forward(&route, Rewind::new(hello, socket), client, streams).await;
                Sniffed::Taken
            }
            None => Sniffed::Http(Rewind::new(hello, socket)),
        },
        Err(error) => {
            tracing::debug!(listener = %name, %client, %error, "no usable ClientHello, closing");
            Sniffed::Dropped
        }
    }
}

/// Terminates TLS if the route says so, connects to a backend and splices.
async fn forward(
    route: &StreamRoute,
    client_stream: Rewind<TcpStream>,
    client: SocketAddr,
    streams: &Streams,
) {
    match &route.tls {
        Tls::Passthrough => splice(route, client_stream, client, streams).await,
        Tls::NoCertificate => {
            tracing::warn!(route = %route.name, %client, "TLS route without a usable certificate, closing");
        }
        Tls::Terminate(config) => {
            let acceptor = TlsAcceptor::from(config.clone());
            match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, acceptor.accept(client_stream)).await {
                Ok(Ok(tls)) => splice(route, tls, client, streams).await,
                Ok(Err(error)) => {
                    tracing::debug!(route = %route.name, %client, %error, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(route = %route.name, %client, "TLS handshake timed out"),
            }
        }
    }
}

/// A client stream whose TCP socket can be reset.
trait Resettable {
    fn reset(&self);
}

impl Resettable for Rewind<TcpStream> {
    fn reset(&self) {
        // SO_LINGER 0: the close sends RST, which tells the client the backend is not
        // there (config.proto: "A connection whose choice is an invalid backend is
        // closed (reset for TCP)") instead of looking like an empty answer.
        let _ = self.get_ref().set_zero_linger();
    }
}

impl Resettable for tokio_rustls::server::TlsStream<Rewind<TcpStream>> {
    fn reset(&self) {
        self.get_ref().0.reset();
    }
}

async fn splice<C>(route: &StreamRoute, client_stream: C, client: SocketAddr, streams: &Streams)
where
    C: AsyncRead + AsyncWrite + Unpin + Resettable,
{
    let options = &streams.options;
    let (endpoint, cluster) = match route.endpoint() {
        Ok(chosen) => chosen,
        Err(error) => {
            tracing::debug!(route = %route.name, %client, %error, "no backend, resetting");
            client_stream.reset();
            return;
        }
    };
    let connected =
        tokio::time::timeout(options.connect_timeout, TcpStream::connect(endpoint)).await;
    let mut backend = match connected {
        Ok(Ok(backend)) => backend,
        Ok(Err(error)) => {
            tracing::debug!(route = %route.name, %client, %endpoint, cluster, %error, "connect failed, resetting");
            client_stream.reset();
            return;
        }
        Err(_) => {
            tracing::debug!(route = %route.name, %client, %endpoint, cluster, "connect timed out, resetting");
            client_stream.reset();
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client_stream = Active {
        inner: client_stream,
        started,
        last: activity.clone(),
    };
    let idle = options.stream_idle_timeout;
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client_stream, &mut backend) => match copied {
            Ok((up, down)) => tracing::debug!(route = %route.name, %client, %endpoint, up, down, "stream closed"),
            Err(error) => tracing::debug!(route = %route.name, %client, %endpoint, %error, "stream ended with an error"),
        },
        () = idle_deadline(started, &activity, idle) => {
            tracing::debug!(route = %route.name, %client, %endpoint, ?idle, "stream idle, closing");
        }
    }
}

/// Returns once nothing has moved for `idle` (the last activity is read back after
/// each wait, so an active stream costs one timer per `idle` period).
pub(super) async fn idle_deadline(started: Instant, last: &AtomicU64, idle: Duration) {
    loop {
        let since_start = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = started + since_start + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// The client side of a splice, noting when bytes last moved in either direction (a
/// read is the client sending, a write the backend's bytes reaching the client).
struct Active<S> {
    inner: S,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Active<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
