//! The standalone target: `portico standalone` in this process, serving a temporary
//! folder that the runner's API server writes, with the kubelet stand-in running the
//! backends.
//!
//! ```text
//!   runner ──apply/patch/delete──> Cluster (API server) ──files──> <tmp>/ ──watch──> Standalone
//!      │                              ▲    │                                           │
//!      │                              │    └──Deployments, Services──> Kubelet         │
//!      │                              └───────────EndpointSlices───────┘  (echo pods)  │
//!      └──── wait: synced (standalone runs on the API server's objects), statuses <────┘
//! ```
//!
//! Every change goes through [`Target::settle`]: the kubelet reconciles (pods, slices),
//! then the runner waits until standalone has loaded exactly what the API server holds.
//!
//! The local-cluster target (local_cluster/) keeps the same runner-side pieces (the
//! Cluster as the runner's record and rollback journal, the kubelet, the
//! authorities) and swaps the engine: the Cluster's changes are written to an API
//! server, statuses are read back from it, and settling waits on observedGeneration
//! and the proxy's served config instead of on standalone's inputs.
//!
//! The kube target (kube.rs) is the local-cluster target's API-server half alone
//! ([`Remote`]): a real cluster runs Portico and the pods, so the kubelet only looks
//! at them ([`Kubelet::remote`]) and settling waits on observedGeneration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portico_api::names;
use portico_proxy::ProxyOptions;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backend::EchoMode;
use super::certs::Authorities;
use super::cluster::{Cluster, Key, Owner};
use super::defaults::Defaulter;
use super::kube::{KubeCluster, KubeConfig};
use super::kubelet::Kubelet;
use super::local_cluster::{LocalCluster, LocalClusterConfig, Remote};
use super::observe::View;
use crate::standalone::{AddressPool, Observed, Standalone, StandaloneConfig};

/// How the standalone target runs.
#[derive(Debug, Clone)]
pub(crate) struct TargetConfig {
    pub(crate) class_name: String,
    pub(crate) address_pool: AddressPool,
    pub(crate) debounce: Duration,
    pub(crate) echo: EchoMode,
    /// CRDs whose defaults the API server applies (none when `None`).
    pub(crate) crds: Option<PathBuf>,
    /// Keep the folder after the run (`--keep`).
    pub(crate) keep: bool,
    /// Run against operator and proxy processes and an API server instead of
    /// standalone (`--target local-cluster`).
    pub(crate) local: Option<LocalClusterConfig>,
    /// Run against a cluster with Portico installed (`--target kube`).
    pub(crate) kube: Option<KubeConfig>,
}

/// What serves the cases.
#[derive(Debug)]
enum Engine {
    Standalone {
        observed: watch::Receiver<Arc<Observed>>,
        standalone: Option<Standalone>,
    },
    Local(Box<LocalCluster>),
    Kube(Box<KubeCluster>),
}

impl Engine {
    /// The API server the engine writes to and reads statuses from (not standalone).
    fn remote(&self) -> Option<&Remote> {
        match self {
            Engine::Standalone { .. } => None,
            Engine::Local(local) => Some(&local.remote),
            Engine::Kube(kube) => Some(&kube.remote),
        }
    }

    fn remote_mut(&mut self) -> Option<&mut Remote> {
        match self {
            Engine::Standalone { .. } => None,
            Engine::Local(local) => Some(&mut local.remote),
            Engine::Kube(kube) => Some(&mut kube.remote),
        }
    }
}

/// The longest wait between two looks at a status that is not there yet; changes
/// wake the waiter earlier.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) cluster: Cluster,
    pub(crate) kubelet: Kubelet,
    pub(crate) authorities: Authorities,
    pub(crate) class_name: String,
    engine: Option<Engine>,
    dir: PathBuf,
    keep: bool,
}

impl Target {
    pub(crate) async fn start(config: TargetConfig) -> Result<Self, String> {
        let defaulter = match &config.crds {
            Some(dir) => Defaulter::load(dir)?,
            None => Defaulter::default(),
        };
        if defaulter.is_empty() {
            tracing::warn!("no CRDs: objects are stored without their CRD defaults");
        } else {
            tracing::debug!(schemas = defaulter.len(), "CRD defaults loaded");
        }
        let dir = std::env::temp_dir().join(format!(
            "portico-conformance-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut cluster = Cluster::new(dir.clone(), defaulter);
        // The GatewayClass under test, as an installation would create it; manifests
        // that declare it too just re-apply it.
        cluster
            .apply(
                json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": config.class_name},
                    "spec": {"controllerName": names::CONTROLLER_NAME},
                }),
                Owner::System,
            )
            .map_err(|e| e.to_string())?;

        if let Some(kube) = &config.kube {
            let engine = KubeCluster::start(kube).await?;
            return Ok(Self {
                cluster,
                kubelet: Kubelet::remote(),
                authorities: Authorities::default(),
                class_name: config.class_name,
                engine: Some(Engine::Kube(Box::new(engine))),
                dir,
                keep: config.keep,
            });
        }
        if let Some(local) = &config.local {
            let EchoMode::Process(_) = &config.echo else {
                return Err(
                    "the local-cluster target runs pods as portico-echo processes: drop `--echo in-process`"
                        .to_owned(),
                );
            };
            let engine = LocalCluster::start(local, &dir).await?;
            let kubelet = Kubelet::new(config.echo).in_pod_network(engine.network.clone());
            return Ok(Self {
                cluster,
                kubelet,
                authorities: Authorities::default(),
                class_name: config.class_name,
                engine: Some(Engine::Local(Box::new(engine))),
                dir,
                keep: config.keep,
            });
        }

        let quiet: crate::standalone::Output = Arc::new(|text: &str| {
            tracing::debug!(target: "portico::conformance::standalone", "{text}");
        });
        let standalone = Standalone::start(
            StandaloneConfig {
                dir: dir.clone(),
                default_address: IpAddr::from([127, 0, 0, 1]),
                debounce: config.debounce,
                address_pool: Some(config.address_pool),
                proxy: ProxyOptions::default(),
            },
            quiet,
        )
        .await
        .map_err(|e| format!("starting standalone on {}: {e}", dir.display()))?;
        Ok(Self {
            cluster,
            kubelet: Kubelet::new(config.echo),
            authorities: Authorities::default(),
            class_name: config.class_name,
            engine: Some(Engine::Standalone {
                observed: standalone.observe(),
                standalone: Some(standalone),
            }),
            dir,
            keep: config.keep,
        })
    }

    /// The latest state standalone went live with (or the API server's statuses).
    pub(crate) fn view(&self) -> View {
        match &self.engine {
            Some(Engine::Standalone { observed, .. }) => View::new(observed.borrow().clone()),
            Some(engine) => match engine.remote() {
                Some(remote) => {
                    let snapshot = remote.snapshot();
                    View::from_statuses(snapshot.statuses.clone(), snapshot.problems.clone())
                }
                None => View::from_statuses(Value::Null, Vec::new()),
            },
            None => View::from_statuses(Value::Null, Vec::new()),
        }
    }

    /// Waits until standalone goes live with a new state (or a new look at the API
    /// server), or `POLL` passes, or the deadline: whichever comes first.
    pub(crate) async fn next_change(&mut self, deadline: Instant) {
        let until = deadline.min(Instant::now() + POLL);
        match &mut self.engine {
            Some(Engine::Standalone { observed, .. }) => {
                // What is there now has been looked at: wait for something newer.
                drop(observed.borrow_and_update());
                let _ = tokio::time::timeout_at(until, observed.changed()).await;
            }
            Some(engine) => match engine.remote_mut() {
                Some(remote) => remote.changed(until).await,
                None => tokio::time::sleep_until(until).await,
            },
            None => tokio::time::sleep_until(until).await,
        }
    }

    /// Polls `check` on each new state until it holds or the deadline passes; the error
    /// is the last one seen.
    pub(crate) async fn poll<T>(
        &mut self,
        deadline: Instant,
        mut check: impl FnMut(&View, &Cluster, &mut Kubelet) -> Result<T, String>,
    ) -> Result<T, String> {
        loop {
            let view = self.view();
            if let Some(remote) = self.engine.as_ref().and_then(Engine::remote) {
                self.kubelet.observe(remote.snapshot());
            }
            match check(&view, &self.cluster, &mut self.kubelet) {
                Ok(value) => return Ok(value),
                Err(e) if Instant::now() >= deadline => {
                    let problems = view.problems();
                    return Err(if problems.is_empty() {
                        e
                    } else {
                        format!("{e} [standalone: {}]", problems.join("; "))
                    });
                }
                Err(_) => self.next_change(deadline).await,
            }
        }
    }

    /// After changes to the API server: the kubelet catches up, then standalone (or the
    /// operator and the proxy).
    pub(crate) async fn settle(&mut self, deadline: Instant) -> Result<(), String> {
        self.kubelet.reconcile(&mut self.cluster).await?;
        let Some(remote) = self.engine.as_mut().and_then(Engine::remote_mut) else {
            // Standalone reads the folder the Cluster writes: nothing to push.
            drop(self.cluster.take_changes());
            return self
                .poll(deadline, |view, cluster, _| view.synced(cluster))
                .await;
        };
        remote.push(&mut self.cluster, deadline).await?;
        loop {
            let snapshot = remote.snapshot();
            match remote.converged(&snapshot, &self.cluster, &self.class_name) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(if snapshot.problems.is_empty() {
                        e
                    } else {
                        format!("{e} [{}]", snapshot.problems.join("; "))
                    });
                }
                Err(_) => remote.changed(deadline.min(Instant::now() + POLL)).await,
            }
        }
    }

    /// What the processes behind the target said last (the local-cluster target's
    /// operator and proxy), for a failing case.
    pub(crate) fn logs(&self) -> Option<String> {
        match &self.engine {
            Some(Engine::Local(local)) => Some(local.logs()),
            _ => None,
        }
    }

    /// Applies objects as the case's own (rolled back after it) or the environment's.
    pub(crate) fn apply_all(
        &mut self,
        objects: Vec<Value>,
        owner: Owner,
    ) -> Result<Vec<Key>, String> {
        let mut keys = Vec::new();
        for object in objects {
            keys.push(
                self.cluster
                    .apply(object, owner)
                    .map_err(|e| e.to_string())?
                    .0,
            );
        }
        Ok(keys)
    }

    /// Fails when a Gateway listens on a port the proxy, run by this process's user,
    /// may not bind (standalone, and the local cluster's proxy); a cluster's proxies are
    /// its own business.
    pub(crate) fn check_ports(&self) -> Result<(), String> {
        match &self.engine {
            Some(Engine::Kube(_)) => Ok(()),
            _ => super::privileges::check_ports(&self.cluster, &self.class_name),
        }
    }

    /// The folder standalone serves.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stops standalone (or the operator, proxy and API server) and every backend;
    /// removes the folder unless asked to keep it.
    pub(crate) async fn shutdown(mut self) {
        self.kubelet.shutdown().await;
        match self.engine.take() {
            Some(Engine::Standalone {
                standalone: Some(standalone),
                ..
            }) => standalone.shutdown().await,
            Some(Engine::Local(local)) => {
                local.shutdown(&self.dir).await;
                // Kept with the objects and the logs when asked; the logs are worth
                // keeping then.
            }
            Some(Engine::Kube(kube)) => kube.shutdown(&self.cluster, self.keep).await,
            _ => {}
        }
        if self.keep {
            tracing::info!(dir = %self.dir.display(), "kept the run folder");
        } else if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove the run folder");
        }
    }
}
