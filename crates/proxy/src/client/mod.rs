//! `portico-proxy` as a library: the data plane fed by the operator's config stream.
//!
//! ```text
//!   Args ──validate──> StreamConfig + ProxyOptions
//!                          │
//!   start() ───────────────┼─> ProxyHandle (empty config: no listener until a push)
//!                          ├─> stream::follow: connect, hello, push -> update -> ACK/NACK,
//!                          │   reconnect with backoff; StreamStatus on a watch channel
//!                          └─> admin: /healthz, /readyz (ready once a push is applied),
//!                              /metrics (Prometheus text)
//! ```
//!
//! `main.rs` parses [`Args`], installs the crypto provider and logging, and calls
//! [`run`]; tests call [`start`] with a [`StreamConfig`] and read [`Client::status`].

mod admin;
mod args;
mod backoff;
pub mod runtime;
mod stream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use portico_api::config::v1::Config;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use args::{Args, ArgsError};
pub use stream::{StreamConfig, StreamConfigError, StreamStatus, StreamTls};

use crate::{ProxyError, ProxyHandle, ProxyOptions};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Stream(#[from] StreamConfigError),
    #[error("admin endpoint on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// A running proxy and its stream.
#[derive(Debug)]
pub struct Client {
    proxy: Arc<ProxyHandle>,
    status: watch::Receiver<StreamStatus>,
    admin_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Client {
    /// What the stream did so far; `changed()` wakes on every ACK, NACK and (re)connect.
    pub fn status(&self) -> watch::Receiver<StreamStatus> {
        self.status.clone()
    }

    /// The admin endpoint's bound address, when one was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound address of each listener of the running config.
    pub fn bound_addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.proxy.bound_addrs()
    }

    /// The running config's version.
    pub fn version(&self) -> String {
        self.proxy.version()
    }

    /// Stops following the operator, then stops the proxy (requests in flight finish
    /// within the drain timeout).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                warn!(error = %e, "proxy client task failed");
            }
        }
        match Arc::try_unwrap(self.proxy) {
            Ok(proxy) => proxy.shutdown().await,
            // Only the tasks above hold other references, and they are done.
            Err(_) => warn!("proxy still shared at shutdown; dropping it"),
        }
    }
}

/// Starts the proxy with no listeners, the admin endpoint (when `admin` is set) and the
/// config stream. Fails only on configuration errors (bad URL, TLS material, the admin
/// port); the operator being unreachable is not one: the stream keeps trying.
pub async fn start(
    stream: StreamConfig,
    options: ProxyOptions,
    admin: Option<SocketAddr>,
) -> Result<Client, ClientError> {
    let endpoint = stream::endpoint(&stream)?;
    let proxy = Arc::new(crate::start(options, Config::default()).await?);
    let (status_tx, status) = watch::channel(StreamStatus::default());
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let admin_addr = match admin {
        None => None,
        Some(addr) => {
            let (bound, task) = admin::serve(addr, status.clone(), proxy.clone(), shutdown.clone())
                .await
                .map_err(|source| ClientError::Admin { addr, source })?;
            info!(addr = %bound, "admin endpoint listening");
            tasks.push(task);
            Some(bound)
        }
    };
    info!(operator = %stream.operator, node = %stream.node, gateways = ?stream.gateways, tls = stream.tls.is_some(), "portico-proxy starting");
    tasks.push(tokio::spawn(stream::follow(
        stream,
        endpoint,
        proxy.clone(),
        status_tx,
        shutdown.clone(),
    )));
    Ok(Client {
        proxy,
        status,
        admin_addr,
        shutdown,
        tasks,
    })
}

/// Runs `portico-proxy` with `args` until `shutdown` is cancelled.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), ClientError> {
    let stream = args.stream_config()?;
    let client = start(stream, args.proxy_options(), Some(args.admin)).await?;
    shutdown.cancelled().await;
    info!("portico-proxy stopping");
    client.shutdown().await;
    Ok(())
}
