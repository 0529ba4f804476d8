//! The Kubernetes provider: one watch per kind feeding the shared [`Store`], and one task
//! turning the store into translator output.
//!
//! ```text
//!   watcher(GatewayClass) ─┐
//!   watcher(Gateway)       │
//!   watcher(ListenerSet)   │ (when its CRD is installed) Relist<K>::handle                     ┌─ Snapshot #n ─> status writer
//!   watcher(HTTPRoute)     ├──────────────> Shared { Objects,──notify──> translate task ─┤  (watch channel)
//!   watcher(GRPCRoute)     │ (this and the next three when their CRD is installed)
//!   watcher(TLSRoute)      │
//!   watcher(TCPRoute)      │
//!   watcher(UDPRoute)      │
//!   watcher(ReferenceGrant)│                changes: u64,   (debounce, all kinds synced)  └─> Service reconciler
//!   watcher(Service)       │                unsynced kinds }
//!   watcher(EndpointSlice) │
//!   watcher(Namespace)     │
//!   watcher(Secret)        │ (type kubernetes.io/tls only; or cert-sync's copies, see below)
//!   watcher(BackendTLSPolicy)──┤ ── CaWatches::sync ──> watcher(ConfigMap ns/name), one per
//!   watcher(PorticoGatewayClassConfig)┘                   CA bundle named (also by Gateways)
//! ```
//!
//! Also watched: BackendTLSPolicy (when its CRD is installed), and PorticoGatewayClassConfig
//! (every namespace, when its CRD is installed) into `Objects.class_configs`, which the
//! translate task resolves against GatewayClasses' parametersRefs ([`crate::class`]).
//!
//! ConfigMaps are watched one by one, only those named as CA bundles (BackendTLSPolicy
//! `validation.caCertificateRefs`, Gateway `tls.frontend` caCertificateRefs): whenever
//! the policies or Gateways change, [`CaWatches::sync`] starts a watch (field selector
//! `metadata.name`) per newly named ConfigMap and stops those no longer named, dropping
//! their objects. A ConfigMap watch counts as a kind of its own until listed, so a
//! snapshot never has a policy without the CA it names. The other ConfigMaps of the
//! cluster (often large, never ours) are not held.
//!
//! Secrets come from one of two places ([`SecretSource`]). By default, the
//! kubernetes.io/tls Secrets of every watched namespace, read where they are. With
//! `--secrets-namespace` (what the Helm chart sets), only the copies `portico-cert-sync`
//! makes there: label `app.kubernetes.io/managed-by=portico-cert-sync` and annotation
//! `portico.dev/source: <namespace>/<name>`. [`SecretCopies`] hands each copy to the
//! store under its source's key, so the translator resolves certificateRefs,
//! ReferenceGrants and RefNotPermitted exactly as if it had read the source, and the
//! operator needs no read access to Secrets outside the secrets namespace:
//!
//! ```text
//!   portico-secrets/apps-cert-1a2b  ──SecretCopies──>  store.secrets["apps/cert"]
//!     managed-by: portico-cert-sync                      (the copy's type and data)
//!     portico.dev/source: apps/cert
//!   portico-secrets/unrelated       ──>  ignored (no source annotation)
//! ```
//!
//! Nothing is published before every kind has been listed once: translating a partial
//! view would write wrong statuses (a route whose Gateway has not been listed yet would
//! be reported as having no parent). After that, every change to the store leads to one
//! translation per debounce window; a burst of events (a relist, `kubectl apply -f dir`)
//! is one snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::runtime::watcher::Event;
use kube::{Api, Client};
use portico_api::gateway::{BackendTlsPolicy, GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::k8s_openapi::NamespaceResourceScope;
use portico_api::names;
use portico_api::otlp;
use portico_api::portico::PorticoGatewayClassConfig;
use portico_translate::{Inputs, Options, Output, Translator};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{debug, error, info, info_span, warn};

use crate::class::{self, ClassParametersMap, ClassResolver};
use crate::kube::crds;
use crate::kube::kinds::{Objects, Relist, Watched};
use crate::object::ObjectKey;
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

/// Where listeners' certificates (kubernetes.io/tls Secrets) are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SecretSource {
    /// Every Secret of type kubernetes.io/tls in the watched namespaces, where it is.
    #[default]
    Watched,
    /// Only `portico-cert-sync`'s copies in this namespace, each standing in for the
    /// source Secret its annotation names (see [`SecretCopies`]).
    Copies { namespace: String },
}

/// The latest snapshot; `None` until every kind has been listed.
pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

/// What each GatewayClass of ours asks of its Gateways' Services, updated just before the
/// snapshot it was resolved for is published.
pub type ClassParametersRx = watch::Receiver<Arc<ClassParametersMap>>;

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
    objects: Objects,
    /// Bumped by every change to the objects: a snapshot is taken only when it moved.
    changes: u64,
    /// Watches (kinds, and single ConfigMaps) whose first list has not completed.
    unsynced: BTreeSet<String>,
    /// The running watch of each ConfigMap named as a CA bundle.
    ca_watches: BTreeMap<ObjectKey, CancellationToken>,
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
    /// The GatewayClasses' resolved parameters (for the Service reconciler).
    pub class_parameters: ClassParametersRx,
    /// The watch tasks and the translate task; they end on shutdown.
    pub tasks: JoinSet<()>,
}

impl KubeProvider {
    /// Starts one watch per kind and the translate task, reading Secrets where they are
    /// ([`SecretSource::Watched`]). Must be called within a tokio runtime; the tasks end
    /// when `shutdown` is cancelled.
    pub fn spawn(client: Client, config: ProviderConfig, shutdown: CancellationToken) -> Self {
        Self::spawn_with_secrets(client, config, SecretSource::Watched, shutdown)
    }

    /// As [`KubeProvider::spawn`], with the Secrets read from `secrets`.
    pub fn spawn_with_secrets(
        client: Client,
        config: ProviderConfig,
        secrets: SecretSource,
        shutdown: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let mut watches = Watches {
            client: client.clone(),
            namespace: config.namespace.clone(),
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            tasks: JoinSet::new(),
        };
        let all = watcher::Config::default;
        let ca = CaWatches {
            client: client.clone(),
            shared: shared.clone(),
            shutdown: shutdown.clone(),
        };
        watches.cluster::<GatewayClass>();
        watches.cluster::<Namespace>();
        let gateways = ca.clone();
        watches.namespaced_with::<Gateway>(all(), false, move |state| gateways.sync(state));
        watches.namespaced_with::<BackendTlsPolicy>(all(), true, move |state| ca.sync(state));
        // Parameters live with the operator's team, whatever namespace it watches.
        watches.spawn(
            Api::<PorticoGatewayClassConfig>::all(watches.client.clone()),
            all(),
            true,
            |_| false,
        );
        if config.listener_sets {
            watches.namespaced::<ListenerSet>(all());
        }
        watches.namespaced::<HttpRoute>(all());
        watches.namespaced_with::<GrpcRoute>(all(), true, |_| false);
        watches.namespaced_with::<TlsRoute>(all(), true, |_| false);
        watches.namespaced_with::<TcpRoute>(all(), true, |_| false);
        watches.namespaced_with::<UdpRoute>(all(), true, |_| false);
        watches.namespaced::<ReferenceGrant>(all());
        watches.namespaced::<Service>(all());
        watches.namespaced::<EndpointSlice>(all());
        // Only certificates: the other Secrets of the cluster are none of our business,
        // and not holding them keeps tokens and passwords out of this process.
        match secrets {
            SecretSource::Watched => watches.namespaced::<Secret>(all().fields(TLS_SECRETS)),
            SecretSource::Copies { namespace } => watches.secret_copies(&namespace),
        }

        let mut tasks = watches.tasks;
        let (tx, snapshots) = watch::channel(None);
        let (params_tx, class_parameters) = watch::channel(Arc::default());
        tasks.spawn(translate_loop(shared, config, tx, params_tx, shutdown));
        Self {
            snapshots,
            class_parameters,
            tasks,
        }
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
        let api: Api<K> = Api::all(self.client.clone());
        self.spawn(api, watcher::Config::default(), false, |_| false);
    }

    fn namespaced<K>(&mut self, config: watcher::Config)
    where
        K: Watched + kube::Resource<Scope = NamespaceResourceScope>,
    {
        self.namespaced_with::<K>(config, false, |_| false);
    }

    /// Watches `K` in the operator's namespace (or all), and the route kinds beyond
    /// HTTPRoute only when served; `after` runs after each event, under the lock.
    fn namespaced_with<K>(
        &mut self,
        config: watcher::Config,
        if_served: bool,
        after: impl FnMut(&mut State) -> bool + Send + 'static,
    ) where
        K: Watched + kube::Resource<Scope = NamespaceResourceScope>,
    {
        let api: Api<K> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        self.spawn(api, config, if_served, after);
    }

    /// Watches cert-sync's copies in `namespace` (and only there: the operator may not
    /// read Secrets elsewhere), each handed to the store as its source.
    fn secret_copies(&mut self, namespace: &str) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let ours = format!("{}={}", names::MANAGED_BY_LABEL, names::CERT_SYNC_MANAGER);
        let config = watcher::Config::default().fields(TLS_SECRETS).labels(&ours);
        let mut copies = SecretCopies::default();
        let events = watcher(api, config)
            .default_backoff()
            .flat_map(move |event| {
                stream::iter(match event {
                    Ok(event) => copies.rewrite(event).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                })
            })
            .boxed();
        self.spawn_events(events, false, |_| false);
    }

    /// Registers `K` as not yet listed and spawns its watch. With `if_served`, the kind
    /// is watched only if its CRD is installed, else counted as listed (and empty): the
    /// route kinds beyond HTTPRoute, BackendTLSPolicy and our own CRDs are optional.
    /// Whether it is installed is asked once, when the watch starts; a failed check
    /// watches anyway (the watch retries).
    fn spawn<K: Watched>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
        if_served: bool,
        after: impl FnMut(&mut State) -> bool + Send + 'static,
    ) {
        let events = watcher(api, config).default_backoff().boxed();
        self.spawn_events(events, if_served, after);
    }

    /// [`Watches::spawn`] of a ready stream of watch events.
    fn spawn_events<K: Watched>(
        &mut self,
        events: WatchEvents<K>,
        if_served: bool,
        after: impl FnMut(&mut State) -> bool + Send + 'static,
    ) {
        let kind = K::kind(&()).into_owned();
        self.shared.lock().unsynced.insert(kind.clone());
        let watch = watch_loop(
            events,
            Relist::<K>::default(),
            kind.clone(),
            self.shared.clone(),
            self.shutdown.clone(),
            after,
        );
        if !if_served {
            self.tasks.spawn(watch);
            return;
        }
        let client = self.client.clone();
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
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
}

/// Starts and stops the watches of the ConfigMaps named as CA bundles.
#[derive(Clone)]
struct CaWatches {
    client: Client,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl CaWatches {
    /// Makes the running ConfigMap watches those that policies and Gateways name;
    /// returns whether the state changed (a ConfigMap dropped, a watch to wait for).
    fn sync(&self, state: &mut State) -> bool {
        let wanted = ca_config_maps(&state.objects.store);
        let mut changed = false;
        let gone: Vec<ObjectKey> = state
            .ca_watches
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(token) = state.ca_watches.remove(&key) {
                token.cancel();
            }
            state.unsynced.remove(&ca_watch_name(&key));
            if state.objects.store.config_maps.delete(&key) {
                state.changes += 1;
            }
            debug!(config_map = %key, "kubernetes provider: ConfigMap no longer named, not watched");
            changed = true;
        }
        for key in wanted {
            if state.ca_watches.contains_key(&key) {
                continue;
            }
            let Some(ns) = key.namespace.as_deref() else {
                continue;
            };
            let name = ca_watch_name(&key);
            let token = self.shutdown.child_token();
            state.unsynced.insert(name.clone());
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            debug!(config_map = %key, "kubernetes provider: watching a CA ConfigMap");
            tokio::spawn(watch_loop(
                watcher(api, config).default_backoff().boxed(),
                Relist::named(key.clone()),
                name,
                self.shared.clone(),
                token.clone(),
                |_| false,
            ));
            state.ca_watches.insert(key, token);
            changed = true;
        }
        changed
    }
}

impl std::fmt::Debug for CaWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaWatches").finish_non_exhaustive()
    }
}

/// The name a single ConfigMap's watch has among the unsynced ones.
fn ca_watch_name(key: &ObjectKey) -> String {
    format!("ConfigMap {key}")
}

/// The ConfigMaps that BackendTLSPolicies (`validation.caCertificateRefs`, in the
/// policy's namespace) and Gateways (`tls.frontend` default and per-port
/// `validation.caCertificateRefs`, in the Gateway's namespace unless one is named)
/// refer to. Gateway API: a caCertificateRef of kind ConfigMap in the core group (`""`)
/// holds the CA bundle in `ca.crt`; other kinds are not read.
fn ca_config_maps(store: &Store) -> BTreeSet<ObjectKey> {
    let is_config_map = |group: &str, kind: &str| group.is_empty() && kind == "ConfigMap";
    let mut out = BTreeSet::new();
    for (key, policy) in store.backend_tls_policies.iter() {
        let Some(ns) = key.namespace.as_deref() else {
            continue;
        };
        for r in policy.spec.validation.ca_certificate_refs.iter().flatten() {
            if is_config_map(&r.group, &r.kind) {
                out.insert(ObjectKey::namespaced(ns, &r.name));
            }
        }
    }
    for (key, gateway) in store.gateways.iter() {
        let Some(ns) = key.namespace.as_deref() else {
            continue;
        };
        let Some(frontend) = gateway.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
            continue;
        };
        let default = frontend.default.validation.iter();
        let per_port = frontend
            .per_port
            .iter()
            .flatten()
            .filter_map(|p| p.tls.validation.as_ref());
        let refs = default
            .flat_map(|v| {
                v.ca_certificate_refs
                    .iter()
                    .map(|r| (&r.group, &r.kind, &r.namespace, &r.name))
            })
            .chain(per_port.flat_map(|v| {
                v.ca_certificate_refs
                    .iter()
                    .map(|r| (&r.group, &r.kind, &r.namespace, &r.name))
            }));
        for (group, kind, namespace, name) in refs {
            if is_config_map(group, kind) {
                out.insert(ObjectKey::namespaced(
                    namespace.as_deref().unwrap_or(ns),
                    name,
                ));
            }
        }
    }
    out
}

/// One watch's events. The watcher relists by itself after a 410 Gone; its backoff
/// spaces out retries while the API server is unreachable or the kind is not served.
type WatchEvents<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// One watch's loop: events into the objects, under the lock; `after` runs after each
/// event under the same lock (so that what it registers is seen with the change that
/// caused it). Ends on `shutdown`.
async fn watch_loop<K: Watched>(
    mut events: WatchEvents<K>,
    mut relist: Relist<K>,
    name: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    mut after: impl FnMut(&mut State) -> bool + Send + 'static,
) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.next() => event,
        };
        match event {
            Some(Ok(event)) => {
                let mut state = shared.lock();
                // A watch stopped while this event waited for the lock must not put
                // back what was dropped with it.
                if shutdown.is_cancelled() {
                    break;
                }
                let changed = relist.handle(&mut state.objects, event);
                let newly_synced = relist.is_synced() && state.unsynced.remove(&name);
                if newly_synced {
                    info!(watch = name, "kubernetes provider: listed");
                }
                if changed {
                    state.changes += 1;
                }
                let registered = after(&mut state);
                if changed || newly_synced || registered {
                    shared.changed.notify_one();
                }
            }
            Some(Err(e)) => {
                warn!(watch = name, error = %e, "kubernetes provider: watch failed, retrying")
            }
            None => break,
        }
    }
    debug!(watch = name, "kubernetes provider: watch ended");
}

async fn translate_loop(
    shared: Arc<Shared>,
    config: ProviderConfig,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    params_tx: watch::Sender<Arc<ClassParametersMap>>,
    shutdown: CancellationToken,
) {
    let mut published: Option<u64> = None;
    let mut generation = 0;
    let mut classes = ClassResolver::default();
    // Reuses the routes that did not change since the last snapshot; moved into the
    // blocking task and back.
    let mut translator = Translator::new();
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
        let (inputs, parameters, changes) = {
            let state = shared.lock();
            if !state.unsynced.is_empty() {
                debug!(waiting_for = ?state.unsynced, "kubernetes provider: not every kind listed yet");
                continue;
            }
            if published == Some(state.changes) {
                continue;
            }
            let parameters = classes.resolve(
                &state.objects.store.gateway_classes.to_vec(),
                &state.objects.class_configs,
                &config.options.controller_name,
            );
            (state.objects.store.snapshot(), parameters, state.changes)
        };
        // Exported with --otlp-endpoint: one span per translation, until it is published.
        let span = info_span!(
            target: otlp::SPAN_TARGET,
            "reconcile",
            portico.generation = Empty,
            portico.gateways = inputs.gateways.len(),
            portico.routes = inputs.http_routes.len()
                + inputs.grpc_routes.len()
                + inputs.tls_routes.len()
                + inputs.tcp_routes.len()
                + inputs.udp_routes.len(),
            error = Empty,
        );
        let mut options = config.options.clone();
        options.assigned_addresses = service::assigned_addresses(&inputs, &options.controller_name);
        // Expired listener certificates are InvalidCertificateRef as of this translation.
        options.now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let parameters = Arc::new(parameters);
        let for_translation = parameters.clone();
        // Translation is CPU work that grows with the cluster: keep it off the workers
        // that drive the watches.
        let mut routes = std::mem::take(&mut translator);
        let translated = tokio::task::spawn_blocking(move || {
            let mut inputs = inputs;
            let classes = class::for_translator(&mut inputs.gateway_classes, &for_translation);
            let mut output = routes.translate(&inputs, &options);
            inputs.gateway_classes = classes;
            class::report(&mut output.statuses, &for_translation);
            (inputs, options, output, routes)
        })
        .await;
        let (inputs, options, output) = match translated {
            Ok((inputs, options, output, routes)) => {
                translator = routes;
                (inputs, options, output)
            }
            // The translator that panicked is gone with its cache: the next one starts
            // from scratch (it is already a fresh one).
            Err(e) => {
                // A panic in the translator: keep the last snapshot and wait for the next
                // change rather than publish nothing ever again.
                error!(error = %e, "kubernetes provider: translation failed");
                span.record("error", tracing::field::display(&e));
                continue;
            }
        };
        generation += 1;
        span.record("portico.generation", generation);
        published = Some(changes);
        debug!(generation, "kubernetes provider: new snapshot");
        // Before the snapshot: a reconciler woken by the snapshot reads these.
        params_tx.send_if_modified(|current| {
            let modified = **current != *parameters;
            if modified {
                *current = parameters;
            }
            modified
        });
        tx.send_replace(Some(Arc::new(Snapshot {
            generation,
            inputs,
            options,
            output,
        })));
    }
}

/// Turns the watch events of cert-sync's copies into events of the Secrets they copy.
///
/// A copy names its source in the `portico.dev/source` annotation (`<namespace>/<name>`);
/// the event carries the copy's type and data under the source's namespace and name.
/// Secrets without a well-formed annotation (or without cert-sync's managed-by label)
/// are dropped. Each copy's last rewrite is kept, so that a deleted copy (or one that
/// lost its annotation or now names another source) deletes what it stood for, and so
/// that two copies naming one source (cert-sync never makes them; a user keeping the
/// namespace by hand might) leave the other in place when one goes.
#[derive(Debug, Default)]
struct SecretCopies {
    /// Copy name -> the Secret handed to the store for it.
    by_copy: BTreeMap<String, Secret>,
}

impl SecretCopies {
    /// The events the store sees for `event` on a copy.
    fn rewrite(&mut self, event: Event<Secret>) -> Vec<Event<Secret>> {
        match event {
            Event::Init => {
                self.by_copy.clear();
                vec![Event::Init]
            }
            Event::InitApply(copy) => {
                let Some(name) = copy.metadata.name.clone() else {
                    return Vec::new();
                };
                match as_source(copy) {
                    Some(source) => {
                        self.by_copy.insert(name, source.clone());
                        vec![Event::InitApply(source)]
                    }
                    None => Vec::new(),
                }
            }
            Event::InitDone => vec![Event::InitDone],
            Event::Apply(copy) => {
                let Some(name) = copy.metadata.name.clone() else {
                    return Vec::new();
                };
                let Some(source) = as_source(copy) else {
                    return self.forget(&name);
                };
                let mut events = match self.by_copy.get(&name) {
                    Some(old) if ObjectKey::of(old) != ObjectKey::of(&source) => self.forget(&name),
                    _ => Vec::new(),
                };
                self.by_copy.insert(name, source.clone());
                events.push(Event::Apply(source));
                events
            }
            Event::Delete(copy) => match copy.metadata.name {
                Some(name) => self.forget(&name),
                None => Vec::new(),
            },
        }
    }

    /// Drops copy `name`: its source is deleted, or stood for by another copy naming it.
    fn forget(&mut self, name: &str) -> Vec<Event<Secret>> {
        let Some(old) = self.by_copy.remove(name) else {
            return Vec::new();
        };
        let key = ObjectKey::of(&old);
        let other = self
            .by_copy
            .values()
            .find(|s| ObjectKey::of(*s) == key)
            .cloned();
        vec![match other {
            Some(other) => Event::Apply(other),
            None => Event::Delete(old),
        }]
    }
}

/// The copy as the Secret it copies: its namespace and name from the source annotation,
/// when the copy is cert-sync's and the annotation is `<namespace>/<name>`.
fn as_source(mut copy: Secret) -> Option<Secret> {
    let meta = &copy.metadata;
    let ours = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY_LABEL))
        .is_some_and(|v| v == names::CERT_SYNC_MANAGER);
    let source = meta.annotations.as_ref()?.get(names::SOURCE_ANNOTATION)?;
    let (ns, name) = source.split_once('/')?;
    if !ours || ns.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    let (ns, name) = (ns.to_owned(), name.to_owned());
    debug!(copy = ?meta.name, source = %format!("{ns}/{name}"), "kubernetes provider: certificate copy");
    copy.metadata.namespace = Some(ns);
    copy.metadata.name = Some(name);
    // The copy's uid and resourceVersion describe the copy; nothing reads them, and
    // keeping them would make the stand-in look like a different object than the source.
    copy.metadata.uid = None;
    copy.metadata.resource_version = None;
    Some(copy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::k8s::ObjectMeta;

    fn mk_copy(name: &str, source: Option<&str>, data: &str) -> Secret {
        let mut s = Secret {
            metadata: ObjectMeta {
                namespace: Some("portico-secrets".into()),
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    names::MANAGED_BY_LABEL.to_owned(),
                    names::CERT_SYNC_MANAGER.to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            string_data: Some(BTreeMap::from([("tls.crt".to_owned(), data.to_owned())])),
            ..Default::default()
        };
        if let Some(source) = source {
            s.metadata.annotations = Some(BTreeMap::from([(
                names::SOURCE_ANNOTATION.to_owned(),
                source.to_owned(),
            )]));
        }
        s
    }

    /// The events as (kind, key, data) for comparison.
    fn show(events: Vec<Event<Secret>>) -> Vec<String> {
        let one = |tag: &str, s: &Secret| {
            let data = s
                .string_data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .cloned()
                .unwrap_or_default();
            format!("{tag} {} {data}", ObjectKey::of(s))
        };
        events
            .iter()
            .map(|e| match e {
                Event::Init => "init".to_owned(),
                Event::InitDone => "done".to_owned(),
                Event::InitApply(s) => one("init-apply", s),
                Event::Apply(s) => one("apply", s),
                Event::Delete(s) => one("delete", s),
            })
            .collect()
    }

    #[test]
    fn copies_stand_in_for_their_sources_and_others_are_dropped() {
        let mut copies = SecretCopies::default();
        assert_eq!(show(copies.rewrite(Event::Init)), ["init"]);
        let listed = copies.rewrite(Event::InitApply(mk_copy("c1", Some("apps/cert"), "A")));
        assert_eq!(show(listed), ["init-apply apps/cert A"]);
        assert!(
            copies
                .rewrite(Event::InitApply(mk_copy("plain", None, "X")))
                .is_empty()
        );
        let malformed = mk_copy("bad", Some("no-slash"), "X");
        assert!(copies.rewrite(Event::InitApply(malformed)).is_empty());
        let mut foreign = mk_copy("foreign", Some("apps/cert"), "X");
        foreign.metadata.labels = None;
        assert!(copies.rewrite(Event::Apply(foreign)).is_empty());
        assert_eq!(show(copies.rewrite(Event::InitDone)), ["done"]);

        let updated = copies.rewrite(Event::Apply(mk_copy("c1", Some("apps/cert"), "B")));
        assert_eq!(show(updated), ["apply apps/cert B"]);
        let deleted = copies.rewrite(Event::Delete(mk_copy("c1", Some("apps/cert"), "B")));
        assert_eq!(show(deleted), ["delete apps/cert B"]);
        assert!(
            copies
                .rewrite(Event::Delete(mk_copy("plain", None, "X")))
                .is_empty()
        );
    }

    #[test]
    fn a_copy_that_changes_or_loses_its_source_deletes_the_old_one() {
        let mut copies = SecretCopies::default();
        copies.rewrite(Event::Apply(mk_copy("c1", Some("apps/cert"), "A")));
        let moved = copies.rewrite(Event::Apply(mk_copy("c1", Some("web/other"), "A")));
        assert_eq!(show(moved), ["delete apps/cert A", "apply web/other A"]);
        let unannotated = copies.rewrite(Event::Apply(mk_copy("c1", None, "A")));
        assert_eq!(show(unannotated), ["delete web/other A"]);
    }

    #[test]
    fn two_copies_of_one_source_leave_the_other_when_one_goes() {
        let mut copies = SecretCopies::default();
        copies.rewrite(Event::Apply(mk_copy("c1", Some("apps/cert"), "A")));
        copies.rewrite(Event::Apply(mk_copy("c2", Some("apps/cert"), "B")));
        let gone = copies.rewrite(Event::Delete(mk_copy("c2", Some("apps/cert"), "B")));
        assert_eq!(show(gone), ["apply apps/cert A"]);
    }
}
