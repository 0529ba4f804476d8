//! The config server: streams each proxy its config over gRPC, in the style of xDS
//! (the protocol is documented in `crates/api/proto/portico/config/v1/stream.proto`).
//!
//! ```text
//!   provider Snapshots ──configs()──> Configs (latest translated Config)
//!                                        │
//!                                        v                      ┌─> ProxyRecords ─> status::overlay
//!   proxy ══TLS gRPC══> serve ──> ConfigServer ──> Session per stream (view, push, ACK/NACK)
//!                                                               └─> XdsMetrics ─> admin /metrics
//! ```
//!
//! - [`view`]: the part of the config a proxy serves, with per-resource versions.
//! - [`server`]: the tonic service and one session per stream.
//! - [`records`]: each proxy's last ACK and NACK.
//! - [`status`]: NACKs onto the Gateways' status (Programmed=False, Invalid).
//! - [`serve`]: the socket, TLS and mTLS from files.
//! - [`metrics`], [`admin`]: counters and the metrics/health port.

pub mod admin;
pub mod metrics;
pub mod records;
pub mod serve;
pub mod server;
pub mod status;
pub mod view;

use std::sync::Arc;

use portico_api::config::v1::Config;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admin::serve_admin;
pub use metrics::XdsMetrics;
pub use records::{ProxyRecord, ProxyRecords, Records, Rejection};
pub use serve::{ServeConfig, ServeError, ServerTls, Serving, serve};
pub use server::{ConfigServer, Configs};
pub use view::View;

use crate::kube::provider::Snapshots;

/// The translated configs of `snapshots`, republished only when the version changes
/// (the status-only changes of a snapshot are no news to proxies).
pub fn configs(mut snapshots: Snapshots, shutdown: CancellationToken) -> (Configs, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None::<Arc<Config>>);
    let task = tokio::spawn(async move {
        loop {
            let config = snapshots
                .borrow_and_update()
                .as_ref()
                .map(|s| s.output.config.clone());
            if let Some(config) = config {
                tx.send_if_modified(|current| {
                    if current
                        .as_ref()
                        .is_some_and(|c| c.version == config.version)
                    {
                        return false;
                    }
                    *current = Some(Arc::new(config));
                    true
                });
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = snapshots.changed() => if changed.is_err() { break },
            }
        }
    });
    (rx, task)
}

/// The operator's config server and metrics port, as its flags set them.
#[derive(Debug, Clone, Default)]
pub struct XdsOptions {
    /// `None`: no config server (proxies are not fed; standalone and status-only runs).
    pub listen: Option<std::net::SocketAddr>,
    /// `None` with `listen` set: plaintext (`--insecure`).
    pub tls: Option<ServerTls>,
    /// `/metrics` and `/healthz`; `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// What [`start`] started.
#[derive(Debug)]
pub struct Started {
    /// The registry the metrics port serves: other parts of the operator register their
    /// series here (it is shared, not copied, by clones).
    pub registry: prometheus::Registry,
    pub config_addr: Option<std::net::SocketAddr>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub records: ProxyRecords,
    /// The provider's snapshots with the proxies' NACKs on Gateway status: what the
    /// status writer should write.
    pub status_snapshots: Snapshots,
    /// They end after `shutdown`.
    pub tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("metrics port {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("registering metrics: {0}")]
    Register(#[from] prometheus::Error),
}

/// Starts the config server (when `options.listen` is set), the NACK overlay for the
/// status writer and the metrics port, all fed by `snapshots`, until `shutdown`.
pub async fn start(
    options: &XdsOptions,
    snapshots: Snapshots,
    shutdown: CancellationToken,
) -> Result<Started, StartError> {
    let registry = prometheus::Registry::new();
    let records = ProxyRecords::default();
    let mut tasks = Vec::new();
    let mut config_addr = None;
    let mut status_snapshots = snapshots.clone();
    if let Some(listen) = options.listen {
        let metrics = XdsMetrics::register(&registry)?;
        let (configs, task) = configs(snapshots.clone(), shutdown.clone());
        tasks.push(task);
        let server = ConfigServer::new(configs, records.clone(), metrics, shutdown.clone());
        let serving = serve(
            &ServeConfig {
                listen,
                tls: options.tls.clone(),
            },
            server,
            shutdown.clone(),
        )
        .await?;
        config_addr = Some(serving.addr);
        tasks.push(serving.task);
        let (overlaid, task) = status::overlay(snapshots, records.subscribe(), shutdown.clone());
        status_snapshots = overlaid;
        tasks.push(task);
    }
    let mut metrics_addr = None;
    if let Some(addr) = options.metrics_listen {
        let (bound, task) = serve_admin(addr, registry.clone(), shutdown)
            .await
            .map_err(|source| StartError::Metrics { addr, source })?;
        metrics_addr = Some(bound);
        tasks.push(task);
    }
    Ok(Started {
        registry,
        config_addr,
        metrics_addr,
        records,
        status_snapshots,
        tasks,
    })
}
