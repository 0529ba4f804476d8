//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one writes statuses and Services.
//!
//! ```text
//!   every retry period:
//!     GET lease ──404──> create {holder: me}                       (409: someone was first)
//!        │
//!        ├─ holder == me ──────────────────────> PUT renewTime=now            (leader)
//!        ├─ holder empty, or its record unchanged
//!        │  for leaseDurationSeconds (our clock) ─> PUT holder=me, transitions+1 (take over)
//!        └─ otherwise ──────────────────────────> follower
//!   every PUT carries the resourceVersion we read: of two replicas racing, one gets 409.
//! ```
//!
//! As in client-go, expiry is judged by how long *we* have seen the same record, never by
//! comparing the holder's `renewTime` with our clock: clocks of two nodes may disagree.
//! A leader that cannot renew for a whole lease duration steps down on its own (it cannot
//! know whether another replica took over). On shutdown the leader releases the Lease
//! (empties the holder), so a successor does not wait for it to expire.
//!
//! The leader may publish annotations with each renewal ([`spawn_annotated`]): the
//! operator puts its proxies' records there (crate::xds::records::PROXIES_ANNOTATION).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::PostParams;
use kube::{Api, Client};
use portico_api::k8s::ObjectMeta;
use portico_api::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use portico_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use portico_api::k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long a Lease stays valid without renewal, by default (client-go's default).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the Lease is renewed or checked, by default.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How long one Lease request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to hold and as whom.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique among replicas (the pod name, by default).
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {namespace}/{name}: request timed out")]
    Timeout { namespace: String, name: String },
}

/// The record of the Lease as we last saw it, and since when (our clock).
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// The annotations the leader writes with each renewal.
pub type Annotate = Box<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

/// One replica's view of the election.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
    /// When we last renewed successfully, while leading.
    renewed: Option<Instant>,
    annotate: Option<Annotate>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .field("observed", &self.observed)
            .field("renewed", &self.renewed)
            .field("annotate", &self.annotate.is_some())
            .finish()
    }
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            renewed: None,
            annotate: None,
        }
    }

    /// The leader also writes `annotate()`'s annotations on every renewal.
    pub fn with_annotations(mut self, annotate: Annotate) -> Self {
        self.annotate = Some(annotate);
        self
    }

    /// Our annotations onto `lease`, when we are about to write it as the leader.
    fn annotate(&self, lease: &mut Lease) {
        if let Some(annotate) = &self.annotate {
            lease
                .metadata
                .annotations
                .get_or_insert_default()
                .extend(annotate());
        }
    }

    /// Whether we hold the Lease as of the last [`tick`](Self::tick).
    pub fn is_leader(&self) -> bool {
        self.renewed.is_some()
    }

    /// One round of the election; returns whether we lead afterwards.
    pub async fn tick(&mut self) -> bool {
        match self.try_tick().await {
            Ok(leader) => {
                if leader {
                    self.renewed = Some(Instant::now());
                } else {
                    self.renewed = None;
                }
            }
            Err(e) => {
                warn!(error = %e, "lease: request failed");
                // Keep leading only while the last renewal is surely still valid for the
                // others: they may take over one lease duration after they saw it, and we
                // only look again one retry period from now.
                if let Some(renewed) = self.renewed
                    && renewed.elapsed() + self.config.retry_period >= self.config.lease_duration
                {
                    warn!("lease: could not renew for a whole lease duration, stepping down");
                    self.renewed = None;
                }
            }
        }
        self.is_leader()
    }

    async fn try_tick(&mut self) -> Result<bool, LeaseError> {
        let current = self.request(self.api.get_opt(&self.config.name)).await?;
        let Some(mut lease) = current else {
            return self.create().await;
        };
        let spec = lease.spec.get_or_insert_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = MicroTime(Timestamp::now());

        if holder.as_deref() == Some(self.config.identity.as_str()) {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.duration_seconds());
            self.annotate(&mut lease);
            return self.replace(&lease).await;
        }

        // Has the record moved since we last looked? Then its holder is alive.
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                since: Instant::now(),
            });
        }
        let their_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let expired = holder.is_none()
            || self
                .observed
                .as_ref()
                .is_some_and(|o| o.since.elapsed() >= their_duration);
        if !expired {
            debug!(holder = ?holder, "lease: following");
            return Ok(false);
        }

        info!(previous = ?holder, identity = %self.config.identity, "lease: taking over");
        spec.holder_identity = Some(self.config.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        self.annotate(&mut lease);
        self.replace(&lease).await
    }

    async fn create(&mut self) -> Result<bool, LeaseError> {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_seconds()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        match self
            .request(self.api.create(&PostParams::default(), &lease))
            .await
        {
            Ok(_) => {
                info!(identity = %self.config.identity, "lease: created, leading");
                Ok(true)
            }
            Err(LeaseError::Api {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUTs `lease` over the version we read; a conflict means someone else wrote first.
    async fn replace(&mut self, lease: &Lease) -> Result<bool, LeaseError> {
        let was_leader = self.is_leader();
        match self
            .request(
                self.api
                    .replace(&self.config.name, &PostParams::default(), lease),
            )
            .await
        {
            Ok(_) => {
                if !was_leader {
                    info!(identity = %self.config.identity, "lease: leading");
                }
                Ok(true)
            }
            Err(LeaseError::Api {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 409 => {
                if was_leader {
                    info!(identity = %self.config.identity, "lease: lost to a concurrent write");
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it, so that another replica takes over at once.
    pub async fn release(&mut self) {
        if !self.is_leader() {
            return;
        }
        self.renewed = None;
        let result: Result<(), LeaseError> = async {
            let Some(mut lease) = self.request(self.api.get_opt(&self.config.name)).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            self.request(
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease),
            )
            .await
            .map(drop)
        }
        .await;
        match result {
            Ok(()) => info!(identity = %self.config.identity, "lease: released"),
            Err(e) => warn!(error = %e, "lease: release failed, it will expire instead"),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    async fn request<T>(
        &self,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(LeaseError::Api {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                source,
            }),
            Err(_) => Err(LeaseError::Timeout {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
            }),
        }
    }
}

/// Runs the election until `shutdown`, publishing whether we lead; the Lease is released
/// on the way out.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    spawn_elector(Elector::new(client, config), shutdown)
}

/// [`spawn`], the leader writing `annotate()` on the Lease with every renewal.
pub fn spawn_annotated(
    client: Client,
    config: LeaseConfig,
    annotate: Annotate,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    spawn_elector(
        Elector::new(client, config).with_annotations(annotate),
        shutdown,
    )
}

fn spawn_elector(
    mut elector: Elector,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let period = elector.config.retry_period;
        loop {
            let leader = elector.tick().await;
            tx.send_if_modified(|l| std::mem::replace(l, leader) != leader);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        tx.send_replace(false);
        elector.release().await;
    });
    (rx, task)
}
