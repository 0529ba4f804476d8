//! The listener: one accept loop task, one task per connection, graceful drain.
//!
//! ```text
//! serve(config) ── bind ──> EchoServer { local_addr, cancel, task }
//!                              │
//!   task: accept loop ─────────┼─> per connection: auto::Builder (HTTP/1.1 or h2c,
//!         │                    │   decided by the first bytes) -> service::handle,
//!         │                    │   or grpc::Dispatch for application/grpc requests
//!         └─ cancel ───────────┘   each connection watched by GracefulShutdown
//!              │
//!              └─> stop accepting, signal connections (GOAWAY / close after the
//!                  in-flight response), wait up to drain_timeout, abort the rest
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{EchoConfig, Identity};
use crate::error::EchoError;
use crate::grpc::{AnyBody, Dispatch, is_grpc};
use crate::hooks::Hooks;
use crate::requests::{RequestLog, SeenRequest, request_log};
use crate::service::handle;

/// Pause after a failed `accept` (for example too many open files) so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A running echo server. Dropping it stops the server without waiting; call
/// [`EchoServer::shutdown`] to wait for the drain.
#[derive(Debug)]
pub struct EchoServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    requests: RequestLog,
}

/// Binds `config.listen` and serves until the returned handle is shut down or dropped.
/// Must be called inside a tokio runtime.
pub async fn serve(config: EchoConfig) -> Result<EchoServer, EchoError> {
    serve_with(config, None).await
}

/// [`serve`], over TLS when `tls` is given (see [`crate::tls`]).
pub(crate) async fn serve_with(
    config: EchoConfig,
    tls: Option<TlsAcceptor>,
) -> Result<EchoServer, EchoError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| EchoError::LocalAddr { addr, source })?;
    tracing::info!(
        %local_addr,
        pod = %config.identity.pod,
        namespace = %config.identity.namespace,
        service = %config.identity.service,
        tls = tls.is_some(),
        "echo server listening"
    );

    let cancel = CancellationToken::new();
    let requests = request_log();
    let task = tokio::spawn(accept_loop(
        listener,
        tls,
        Arc::new(config.identity),
        requests.clone(),
        cancel.clone(),
        config.drain_timeout,
    ));
    Ok(EchoServer {
        local_addr,
        cancel,
        task: Some(task),
        requests,
    })
}

impl EchoServer {
    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every request answered from now on, in the order answered. Subscribe before
    /// publishing the address so that no request is missed.
    pub fn subscribe_requests(&self) -> tokio::sync::broadcast::Receiver<SeenRequest> {
        self.requests.subscribe()
    }

    /// Stops accepting, lets open connections finish their requests for at most the
    /// configured drain timeout, and returns once every connection is closed.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "echo accept loop ended abnormally");
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // The accept loop sees this and shuts down on its own; nobody waits for it.
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    identity: Arc<Identity>,
    requests: RequestLog,
    cancel: CancellationToken,
    drain_timeout: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header read timeout needs a timer; without one a slow client could
    // hold a connection open forever.
    builder.http1().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let hooks = Arc::new(Hooks::default());
    let grpc = Dispatch::new(identity.clone(), requests.clone());

    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let identity = identity.clone();
                    let requests = requests.clone();
                    let hooks = hooks.clone();
                    let grpc = grpc.clone();
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (identity, requests, hooks, grpc) =
                            (identity.clone(), requests.clone(), hooks.clone(), grpc.clone());
                        async move {
                            // gRPC and the JSON echo share the port (see crate::grpc).
                            if is_grpc(request.headers()) {
                                return grpc.call(remote, request).await;
                            }
                            handle(identity, requests, hooks, remote, request)
                                .await
                                .map(|response| response.map(AnyBody::new))
                        }
                    });
                    if let Some(acceptor) = &tls {
                        // The handshake runs in the connection's task, so a slow client
                        // cannot stall the accept loop; the connection is watched for
                        // the drain once it speaks HTTP.
                        let (acceptor, builder, watcher) =
                            (acceptor.clone(), builder.clone(), graceful.watcher());
                        connections.spawn(async move {
                            let stream = match acceptor.accept(stream).await {
                                Ok(stream) => stream,
                                Err(error) => {
                                    tracing::debug!(%remote, %error, "TLS handshake failed");
                                    return;
                                }
                            };
                            let connection = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .into_owned();
                            if let Err(error) = watcher.watch(connection).await {
                                tracing::debug!(%remote, %error, "connection ended with an error");
                            }
                        });
                        continue;
                    }
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%remote, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            ?drain_timeout,
            "connections still open after the drain timeout, closing them"
        );
    }
    connections.shutdown().await;
    tracing::info!("echo server stopped");
}
