//! The Kubernetes provider: one watch per kind feeding the shared [`Store`], and one task
//! turning the store into translator output.
//!
//! ```text
//!   watcher(GatewayClass) ─┐
//!   watcher(Gateway)       │
//!   watcher(ListenerSet)   │ (when its CRD is installed) Relist<K>::handle                     ┌─ Snapshot #n ─> status writer
//!   watcher(HTTPRoute)     ├──────────────> Shared { Store,  ──notify──> translate task ─┤  (watch channel)
//!   watcher(GRPCRoute)     │ (this and the next three when their CRD is installed)
//!   watcher(TLSRoute)      │
//!   watcher(TCPRoute)      │
//!   watcher(UDPRoute)      │
//!   watcher(ReferenceGrant)│                changes: u64,   (debounce, all kinds synced)  └─> Service reconciler
//!   watcher(Service)       │                unsynced kinds }
//!   watcher(EndpointSlice) │
//!   watcher(Namespace)     │
//!   watcher(Secret) ───────┘ (type kubernetes.io/tls only)
//! ```
//!
//! Nothing is published before every kind has been listed once: translating a partial
//! view would write wrong statuses (a route whose Gateway has not been listed yet would
//! be reported as having no parent). After that, every change to the store leads to one
//! translation per debounce window; a burst of events (a relist, `kubectl apply -f dir`)
//! is one snapshot.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{EndpointSlice, Namespace, Secret, Service};
use portico_api::k8s_openapi::NamespaceResourceScope;
use portico_translate::{Inputs, Options, Output, translate};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::kube::crds;
use crate::kube::kinds::{Relist, Watched};
use crate::service;
use crate::store::Store;

/// How long the store must be left alone before a change is translated, by default.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// One translation of the cluster's state.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published snapshot, starting at 1.
    pub generation: u64,
    /// The objects as the watches last saw them (statuses included: the status writer
    /// compares against them).
    pub inputs: Inputs,
    /// The options the translator ran with (assigned addresses included).
    pub options: Options,
    pub output: Output,
}

/// The latest snapshot; `None` until every kind has been listed.
pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

/// What the provider watches and how it translates.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Watch namespaced kinds in this namespace only; `None` for every namespace.
    pub namespace: Option<String>,
    pub debounce: Duration,
    /// Whether to watch ListenerSets (their CRD is installed).
    pub listener_sets: bool,
    /// The translator's options; `assigned_addresses` is filled from the Gateways'
    /// Services on every run.
    pub options: Options,
}

#[derive(Debug, Default)]
struct State {
    store: Store,
    /// Bumped by every change to the store: a snapshot is taken only when it moved.
    changes: u64,
    /// Kinds whose first list has not completed.
    unsynced: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking watch task leaves the store consistent (each mutation is one
        // index call), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running provider: the snapshot channel and its tasks.
#[derive(Debug)]
pub struct KubeProvider {
    pub snapshots: Snapshots,
    /// The watch tasks and the translate task; they end on shutdown.
    pub tasks: JoinSet<()>,
}

impl KubeProvider {
    /// Starts one watch per kind and the translate task. Must be called within a tokio
    /// runtime; the tasks end when `shutdown` is cancelled.
    pub fn spawn(client: Client, config: ProviderConfig, shutdown: CancellationToken) -> Self {
        let shared = Arc::new(Shared::default());
        let mut watches = Watches {
            client,
            namespace: config.namespace.clone(),
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            tasks: JoinSet::new(),
        };
        let all = watcher::Config::default;
        watches.cluster::<GatewayClass>();
        watches.cluster::<Namespace>();
        watches.namespaced::<Gateway>(all());
        if config.listener_sets {
            watches.namespaced::<ListenerSet>(all());
        }
        watches.namespaced::<HttpRoute>(all());
        watches.namespaced_if_served::<GrpcRoute>();
        watches.namespaced_if_served::<TlsRoute>();
        watches.namespaced_if_served::<TcpRoute>();
        watches.namespaced_if_served::<UdpRoute>();
        watches.namespaced::<ReferenceGrant>(all());
        watches.namespaced::<Service>(all());
        watches.namespaced::<EndpointSlice>(all());
        // Only certificates: the other Secrets of the cluster are none of our business,
        // and not holding them keeps tokens and passwords out of this process.
        watches.namespaced::<Secret>(all().fields(TLS_SECRETS));

        let mut tasks = watches.tasks;
        let (tx, snapshots) = watch::channel(None);
        tasks.spawn(translate_loop(shared, config, tx, shutdown));
        Self { snapshots, tasks }
    }
}

/// The field selector of the Secrets that listeners can refer to.
const TLS_SECRETS: &str = "type=kubernetes.io/tls";

/// Starts watches, all feeding the same store.
struct Watches {
    client: Client,
    namespace: Option<String>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Watches {
    fn cluster<K: Watched>(&mut self) {
        let api = Api::all(self.client.clone());
        let task = watch_kind::<K>(
            api,
            watcher::Config::default(),
            &self.shared,
            &self.shutdown,
        );
        self.tasks.spawn(task);
    }

    /// Watches `K` if its CRD is installed, else counts it as listed (and empty): the
    /// route kinds beyond HTTPRoute are optional. Whether it is installed is asked once,
    /// when the watch starts; a failed check watches anyway (the watch retries).
    fn namespaced_if_served<K>(&mut self)
    where
        K: Watched + kube::Resource<Scope = NamespaceResourceScope>,
    {
        let api = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let watch = watch_kind::<K>(
            api,
            watcher::Config::default(),
            &self.shared,
            &self.shutdown,
        );
        let client = self.client.clone();
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let kind = K::kind(&()).into_owned();
            match crds::kind_served::<K>(&client).await {
                Ok(true) => watch.await,
                Ok(false) => {
                    info!(kind, "kubernetes provider: CRD not installed, kind not watched");
                    if shared.lock().unsynced.remove(&kind) {
                        shared.changed.notify_one();
                    }
                }
                Err(e) => {
                    warn!(kind, error = %e, "kubernetes provider: cannot read the CRD, watching anyway");
                    watch.await;
                }
            }
        });
    }

    fn namespaced<K>(&mut self, config: watcher::Config)
    where
        K: Watched + kube::Resource<Scope = NamespaceResourceScope>,
    {
        let api = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let task = watch_kind::<K>(api, config, &self.shared, &self.shutdown);
        self.tasks.spawn(task);
    }
}

/// Registers the kind as not yet synced and returns the task that watches it.
fn watch_kind<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let kind = K::kind(&()).into_owned();
    shared.lock().unsynced.insert(kind.clone());
    let shared = shared.clone();
    let shutdown = shutdown.clone();
    async move {
        let mut relist = Relist::<K>::default();
        // The watcher relists by itself after a 410 Gone; the backoff spaces out retries
        // while the API server is unreachable or the kind is not served.
        let mut events = watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    let mut state = shared.lock();
                    let changed = relist.handle(&mut state.store, event);
                    let newly_synced = relist.is_synced() && state.unsynced.remove(&kind);
                    if newly_synced {
                        info!(kind, "kubernetes provider: listed");
                    }
                    if changed {
                        state.changes += 1;
                    }
                    if changed || newly_synced {
                        shared.changed.notify_one();
                    }
                }
                Some(Err(e)) => {
                    warn!(kind, error = %e, "kubernetes provider: watch failed, retrying")
                }
                None => break,
            }
        }
        debug!(kind, "kubernetes provider: watch ended");
    }
}

async fn translate_loop(
    shared: Arc<Shared>,
    config: ProviderConfig,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    shutdown: CancellationToken,
) {
    let mut published: Option<u64> = None;
    let mut generation = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = shared.changed.notified() => {}
        }
        // Let the burst this change belongs to finish; changes made meanwhile are in the
        // snapshot below (and leave a permit that wakes us once more, for nothing).
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.debounce) => {}
        }
        let (inputs, changes) = {
            let state = shared.lock();
            if !state.unsynced.is_empty() {
                debug!(waiting_for = ?state.unsynced, "kubernetes provider: not every kind listed yet");
                continue;
            }
            if published == Some(state.changes) {
                continue;
            }
            (state.store.snapshot(), state.changes)
        };
        let mut options = config.options.clone();
        options.assigned_addresses = service::assigned_addresses(&inputs, &options.controller_name);
        // Translation is CPU work that grows with the cluster: keep it off the workers
        // that drive the watches.
        let translated = tokio::task::spawn_blocking(move || {
            let output = translate(&inputs, &options);
            (inputs, options, output)
        })
        .await;
        let (inputs, options, output) = match translated {
            Ok(translated) => translated,
            Err(e) => {
                // A panic in the translator: keep the last snapshot and wait for the next
                // change rather than publish nothing ever again.
                error!(error = %e, "kubernetes provider: translation failed");
                continue;
            }
        };
        generation += 1;
        published = Some(changes);
        debug!(generation, "kubernetes provider: new snapshot");
        tx.send_replace(Some(Arc::new(Snapshot {
            generation,
            inputs,
            options,
            output,
        })));
    }
}
