//! cert-sync against the API server: five reflectors, one debounced pass per change (and
//! one per `--resync` period, because certificates expire without any watch event), the
//! [`plan`](crate::plan) of each pass carried out by the leader.
//!
//! ```text
//!   watcher(GatewayClass) ─┐
//!   watcher(Gateway) ──────┤
//!   watcher(ReferenceGrant)┤ reflector stores ──notify──> pass (debounced; every kind listed)
//!   watcher(Secret, type=kubernetes.io/tls, all namespaces) ─┤     │
//!   watcher(Secret, secrets namespace) ──────────────────────┘     │
//!        certificate_refs ─> plan ─┬─> metrics (every replica)     ▼
//!                                  └─> leader only: POST / PUT (resourceVersion) /
//!                                      DELETE (uid + resourceVersion preconditions) copies,
//!                                      Events on the Gateway, expiry warnings in the log
//! ```
//!
//! Writes are optimistic: a Create that finds the name taken (409) or a Replace over a
//! version that moved (409) fails, is counted, and the pass runs again shortly with what
//! the watches show then. Nothing is ever force-applied, so a Secret we do not own is
//! never overwritten, even one created between our read and our write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use portico_api::gateway::{Gateway, GatewayClass, ReferenceGrant};
use portico_api::k8s::Secret;
use portico_api::names::{self, event};
use portico_translate::{Inputs, ObjectRef, Options, certificate_refs};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use portico_operator::kube::reflect::spawn_reflector;

use crate::events::EventWriter;
use crate::metrics::{CertLabels, CertSyncMetrics};
use crate::plan::{Delete, Plan, PlanInput, Write, expiring_message, is_ours, plan};

/// How this controller names itself in watch errors.
const COMPONENT: &str = "cert-sync";

/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed write, run again after this long even if nothing changes.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// The field selector of the Secrets listeners can refer to: the other Secrets of the
/// cluster are none of our business.
const TLS_SECRETS: &str = "type=kubernetes.io/tls";

/// What the sync loop needs to know.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub secrets_namespace: String,
    pub controller_name: String,
    pub expiry_warning: Duration,
    pub resync: Duration,
    pub debounce: Duration,
    /// This replica, in Events' `reportingInstance`.
    pub identity: String,
}

/// The reflector stores of one sync loop.
struct Stores {
    classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    grants: Store<ReferenceGrant>,
    sources: Store<Secret>,
    copies: Store<Secret>,
    synced: Vec<Arc<AtomicBool>>,
}

impl Stores {
    fn spawn(
        client: &Client,
        secrets_namespace: &str,
        changed: &Arc<Notify>,
        shutdown: &CancellationToken,
    ) -> Self {
        let all = watcher::Config::default;
        let (classes, a) = spawn_reflector(
            COMPONENT,
            Api::all(client.clone()),
            all(),
            changed,
            shutdown,
        );
        let (gateways, b) = spawn_reflector(
            COMPONENT,
            Api::all(client.clone()),
            all(),
            changed,
            shutdown,
        );
        let (grants, c) = spawn_reflector(
            COMPONENT,
            Api::all(client.clone()),
            all(),
            changed,
            shutdown,
        );
        let sources_config = all().fields(TLS_SECRETS);
        let (sources, d) = spawn_reflector(
            COMPONENT,
            Api::all(client.clone()),
            sources_config,
            changed,
            shutdown,
        );
        let copies_api = Api::namespaced(client.clone(), secrets_namespace);
        let (copies, e) = spawn_reflector(COMPONENT, copies_api, all(), changed, shutdown);
        let synced = vec![a, b, c, d, e];
        Self {
            classes,
            gateways,
            grants,
            sources,
            copies,
            synced,
        }
    }

    fn synced(&self) -> bool {
        self.synced.iter().all(|f| f.load(Ordering::Acquire))
    }
}

/// What the loop remembers between passes.
#[derive(Debug, Default)]
struct State {
    /// The per-certificate series exported.
    exported: BTreeSet<CertLabels>,
    /// The problem last reported per (Gateway, Secret), so that an Event is published
    /// once per change, not on every pass.
    reported: BTreeMap<(ObjectRef, ObjectRef), String>,
    /// Certificates (Secret, notAfter) already warned about as expiring.
    warned: BTreeSet<(ObjectRef, i64)>,
}

/// Runs until `shutdown`; writes only while `leader` is true.
pub async fn run(
    client: Client,
    config: SyncConfig,
    metrics: CertSyncMetrics,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let stores = Stores::spawn(&client, &config.secrets_namespace, &changed, &shutdown);
    let recorder = EventWriter::new(client.clone(), config.identity.clone());
    let copies: Api<Secret> = Api::namespaced(client, &config.secrets_namespace);
    let mut state = State::default();
    let mut retry = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changed.notified() => {}
            res = leader.changed() => if res.is_err() { break },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
            () = tokio::time::sleep(config.resync) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.debounce) => {}
        }
        let is_leader = *leader.borrow_and_update();
        metrics.leader.set(i64::from(is_leader));
        if !stores.synced() {
            retry = false;
            continue;
        }
        let span = info_span!("cert_sync_pass", leader = is_leader);
        let failed = pass(
            &config, &stores, &copies, &recorder, &metrics, &mut state, is_leader,
        )
        .instrument(span)
        .await;
        metrics.passes.inc();
        retry = failed > 0;
    }
    debug!("cert-sync: ended");
}

/// One pass; returns how many writes failed.
async fn pass(
    config: &SyncConfig,
    stores: &Stores,
    copies: &Api<Secret>,
    recorder: &EventWriter,
    metrics: &CertSyncMetrics,
    state: &mut State,
    is_leader: bool,
) -> usize {
    let inputs = Inputs {
        gateway_classes: cloned(&stores.classes),
        gateways: cloned(&stores.gateways),
        reference_grants: cloned(&stores.grants),
        ..Inputs::default()
    };
    let options = Options {
        controller_name: config.controller_name.clone(),
        ..Options::default()
    };
    let refs = certificate_refs(&inputs, &options);
    let source_list = stores.sources.state();
    let sources: BTreeMap<ObjectRef, &Secret> = source_list
        .iter()
        .filter_map(|s| {
            let m = &s.metadata;
            Some((
                ObjectRef::new(m.namespace.clone()?, m.name.clone()?),
                s.as_ref(),
            ))
        })
        .collect();
    let copy_list = stores.copies.state();
    let existing: Vec<&Secret> = copy_list.iter().map(AsRef::as_ref).collect();
    let plan = plan(&PlanInput {
        refs: &refs,
        sources: &sources,
        existing: &existing,
        secrets_namespace: &config.secrets_namespace,
        now: unix_now(),
        expiry_warning: i64::try_from(config.expiry_warning.as_secs()).unwrap_or(i64::MAX),
    });

    let series: Vec<_> = plan
        .reports
        .iter()
        .map(|r| {
            let labels = CertLabels {
                namespace: r.secret.namespace.clone(),
                name: r.secret.name.clone(),
                gateway: r.gateway.to_string(),
            };
            (labels, r.not_after, r.problem.is_some())
        })
        .collect();
    state.exported = metrics.set_certificates(&state.exported, &series);
    // Deletions are of our copies only, so they never outnumber them.
    let ours = existing.iter().filter(|s| is_ours(s)).count();
    let created = plan
        .writes
        .iter()
        .filter(|w| matches!(w, Write::Create(_)))
        .count();
    let copy_count = (ours + created).saturating_sub(plan.deletes.len());
    metrics
        .copies
        .set(i64::try_from(copy_count).unwrap_or(i64::MAX));

    if !is_leader {
        return 0;
    }
    let mut failed = apply(copies, &plan, metrics).await;
    failed += report(&inputs, &plan, recorder, metrics, state).await;
    failed
}

fn cloned<K: Clone + Resource<DynamicType = ()> + 'static>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|k| K::clone(k)).collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes and deletes the copies; returns how many requests failed.
async fn apply(api: &Api<Secret>, plan: &Plan, metrics: &CertSyncMetrics) -> usize {
    let mut failed = 0;
    for write in &plan.writes {
        let secret = write.secret();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let source = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::SOURCE_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        let request = async {
            match write {
                Write::Create(s) => api.create(&PostParams::default(), s).await.map(drop),
                Write::Replace(s) => api
                    .replace(&name, &PostParams::default(), s)
                    .await
                    .map(drop),
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, request).await {
            Ok(Ok(())) => {
                metrics.writes.inc();
                let verb = if matches!(write, Write::Create(_)) {
                    "created"
                } else {
                    "updated"
                };
                info!(copy = %name, %source, "cert-sync: copy {verb}");
            }
            Ok(Err(e)) => {
                failed += 1;
                metrics.errors.inc();
                warn!(copy = %name, %source, error = %e, "cert-sync: write failed");
            }
            Err(_) => {
                failed += 1;
                metrics.errors.inc();
                warn!(copy = %name, %source, "cert-sync: write timed out");
            }
        }
    }
    for Delete {
        name,
        uid,
        resource_version,
    } in &plan.deletes
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match tokio::time::timeout(WRITE_TIMEOUT, api.delete(name, &params)).await {
            Ok(Ok(_)) => {
                metrics.writes.inc();
                info!(copy = %name, "cert-sync: stale copy deleted");
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
            Ok(Err(e)) => {
                failed += 1;
                metrics.errors.inc();
                warn!(copy = %name, error = %e, "cert-sync: delete failed");
            }
            Err(_) => {
                failed += 1;
                metrics.errors.inc();
                warn!(copy = %name, "cert-sync: delete timed out");
            }
        }
    }
    failed
}

/// Publishes an Event on the Gateway for every problem that is new (or changed) and
/// every certificate newly expiring, and logs them; returns how many Events failed.
async fn report(
    inputs: &Inputs,
    plan: &Plan,
    recorder: &EventWriter,
    metrics: &CertSyncMetrics,
    state: &mut State,
) -> usize {
    let gateways: BTreeMap<ObjectRef, &Gateway> = inputs
        .gateways
        .iter()
        .filter_map(|g| {
            let m = &g.metadata;
            Some((ObjectRef::new(m.namespace.clone()?, m.name.clone()?), g))
        })
        .collect();
    let current: BTreeSet<(ObjectRef, ObjectRef)> = plan
        .reports
        .iter()
        .filter(|r| r.problem.is_some())
        .map(|r| (r.gateway.clone(), r.secret.clone()))
        .collect();
    // Problems that cleared may be reported again if they come back.
    state.reported.retain(|k, _| current.contains(k));

    let mut failed = 0;
    for r in &plan.reports {
        let Some(gateway) = gateways.get(&r.gateway) else {
            continue;
        };
        let (reason, note, key_note) = match (&r.problem, r.expiring) {
            (Some(p), _) => {
                let key = (r.gateway.clone(), r.secret.clone());
                let text = format!("{}: {}", p.reason, p.message);
                if state.reported.get(&key) == Some(&text) {
                    continue;
                }
                warn!(gateway = %r.gateway, secret = %r.secret, reason = p.reason, problem = %p.message, "cert-sync: certificate problem");
                (p.reason, p.message.clone(), Some((key, text)))
            }
            (None, true) => {
                let Some(not_after) = r.not_after else {
                    continue;
                };
                if !state.warned.insert((r.secret.clone(), not_after)) {
                    continue;
                }
                let message = expiring_message(r);
                warn!(gateway = %r.gateway, secret = %r.secret, "cert-sync: {message}");
                (event::CERTIFICATE_EXPIRING, message, None)
            }
            (None, false) => continue,
        };
        match recorder.warn(gateway, &r.secret, reason, &note).await {
            Ok(()) => {
                metrics.events.inc();
                if let Some((key, text)) = key_note {
                    state.reported.insert(key, text);
                }
            }
            Err(e) => {
                failed += 1;
                metrics.errors.inc();
                if r.expiring
                    && let Some(not_after) = r.not_after
                {
                    state.warned.remove(&(r.secret.clone(), not_after));
                }
                warn!(gateway = %r.gateway, error = %e, "cert-sync: event failed");
            }
        }
    }
    failed
}
