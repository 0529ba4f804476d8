//! cert-sync as one call: [`start`] (or [`run`]) with a [`Config`] and a `kube::Client`.
//!
//! ```text
//!   start(client, config, shutdown)
//!     ├─ validate config, register metrics
//!     ├─ serve_admin ── /metrics, /healthz on --metrics-listen
//!     ├─ lease::spawn ── leader (bool) ──┐
//!     └─ sync::run ──────────────────────┴─> writes only while leading
//!   shutdown: every task stops, the Lease is released
//! ```
//!
//! The Lease and the metrics port are the operator's own code (`portico_operator::kube::
//! lease`, `portico_operator::xds::serve_admin`), so both deployables elect and export
//! the same way.

use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use portico_operator::kube::lease;
use portico_operator::xds::serve_admin;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::metrics::CertSyncMetrics;
use crate::sync::{self, SyncConfig};

/// How long the tasks get to finish after shutdown (releasing the Lease included).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running cert-sync.
#[derive(Debug)]
pub struct CertSync {
    /// Whether this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
    /// The bound metrics and health address.
    pub metrics_addr: SocketAddr,
    pub metrics: CertSyncMetrics,
    tasks: JoinSet<()>,
    lease_task: JoinHandle<()>,
}

impl CertSync {
    /// Waits for every task after `shutdown` was cancelled (the Lease is released on the
    /// way), aborting those still running after a grace period.
    pub async fn wait(mut self) {
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
            let _ = (&mut self.lease_task).await;
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "portico-cert-sync: tasks did not stop in time");
            self.tasks.abort_all();
            self.lease_task.abort();
        }
    }
}

/// Starts cert-sync against `client`: checks the configuration, binds the metrics port,
/// then starts the Lease and the sync loop. Must be called within a tokio runtime.
pub async fn start(
    client: Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<CertSync, ConfigError> {
    config.validate()?;
    let lease = config.lease();
    info!(
        secrets_namespace = %config.secrets_namespace,
        controller_name = %config.controller_name,
        identity = %lease.identity,
        "portico-cert-sync starting"
    );
    let registry = Registry::new();
    let metrics = CertSyncMetrics::register(&registry)?;
    let (metrics_addr, admin) = serve_admin(config.metrics_listen, registry, shutdown.clone())
        .await
        .map_err(|source| ConfigError::Metrics {
            addr: config.metrics_listen,
            source,
        })?;
    let (leader, lease_task) = lease::spawn(client.clone(), lease.clone(), shutdown.clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let _ = admin.await;
    });
    tasks.spawn(sync::run(
        client,
        SyncConfig {
            secrets_namespace: config.secrets_namespace.clone(),
            controller_name: config.controller_name.clone(),
            expiry_warning: config.expiry_warning,
            resync: config.resync,
            debounce: config.debounce,
            identity: lease.identity,
        },
        metrics.clone(),
        leader.clone(),
        shutdown,
    ));
    Ok(CertSync {
        leader,
        metrics_addr,
        metrics,
        tasks,
        lease_task,
    })
}

/// Runs cert-sync against `client` until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ConfigError> {
    let cert_sync = start(client, config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    info!("portico-cert-sync stopping");
    cert_sync.wait().await;
    Ok(())
}
