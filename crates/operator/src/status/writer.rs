//! The status writer: one task that makes the API server carry the statuses the
//! translator computed, while this replica holds the leader Lease.
//!
//! ```text
//!   Snapshot { inputs (current objects), output.statuses (desired) }
//!      │ per GatewayClass, Gateway, ListenerSet, BackendTLSPolicy, and route of every
//!      │ kind (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute: one generic path):
//!      │   desired.to_kube(now, current.status)   (keeps transition times, other
//!      │                                            controllers' route parents)
//!      │   differs(current, desired)?  no ─> skip
//!      ▼ yes
//!   PATCH …/status  (JSON merge, metadata.resourceVersion = current one,
//!                    fieldManager portico.dev/gateway-controller, timeout)
//!      │ 409 Conflict (someone wrote in between) ─> GET, recompute, retry (bounded, backoff)
//!      ▼
//!   counters: patched / unchanged / conflicts / failed
//! ```
//!
//! The resourceVersion precondition matters for routes: `status.parents` is one list
//! shared by every controller whose Gateways a route attaches to, and a merge patch
//! replaces it whole. Writing it only over the version we read means another
//! controller's entry, added meanwhile, is never lost: we get a conflict and merge again.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use portico_api::gateway::{
    BackendTlsPolicy, Gateway, GatewayClass, GrpcRoute, HttpRoute, ListenerSet, TcpRoute, TlsRoute,
    UdpRoute, backendtlspolicies, gatewayclasses, gateways, grpcroutes, httproutes, listenersets,
    tcproutes, tlsroutes, udproutes,
};
use portico_api::k8s::Time;
use portico_api::k8s_openapi::jiff::Timestamp;
use portico_api::otlp;
use portico_translate::{ObjectRef, PolicyStatus, RouteStatus, Statuses};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, debug, debug_span, info, info_span, warn};

use crate::kube::provider::{Snapshot, Snapshots};
use crate::object::ObjectKey;
use crate::status::diff::{differs, normalized};

/// How long one status patch may take.
const PATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per object and pass (the first try included).
const MAX_ATTEMPTS: u32 = 4;
/// The wait before the second attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Route status patches in flight at once. Routes are many and independent (each its own
/// object, its own resourceVersion precondition), so one slow round trip need not hold
/// up the rest: with one at a time, 1,000 routes took 1,000 sequential round trips (and
/// a conflict's backoff stalled all that followed).
const ROUTE_CONCURRENCY: usize = 32;
/// When a pass left failures, the next one starts after this long even if nothing
/// changes.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the writer did, for metrics and tests.
#[derive(Debug, Default)]
pub struct StatusCounters {
    /// Passes over a snapshot (complete or cut short by losing the Lease).
    pub passes: AtomicU64,
    /// Passes that found nothing to write and nothing failing: the statuses had
    /// converged.
    pub quiet_passes: AtomicU64,
    /// The snapshot generation of the latest quiet pass.
    pub last_quiet_generation: AtomicU64,
    pub patched: AtomicU64,
    pub unchanged: AtomicU64,
    pub conflicts: AtomicU64,
    pub failed: AtomicU64,
}

impl StatusCounters {
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    pub fn quiet_passes(&self) -> u64 {
        self.quiet_passes.load(Ordering::Relaxed)
    }

    pub fn last_quiet_generation(&self) -> u64 {
        self.last_quiet_generation.load(Ordering::Relaxed)
    }

    pub fn patched(&self) -> u64 {
        self.patched.load(Ordering::Relaxed)
    }

    pub fn unchanged(&self) -> u64 {
        self.unchanged.load(Ordering::Relaxed)
    }

    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A kind whose status the writer owns.
trait WithStatus: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned {
    type Status: Serialize + Debug;
    fn status(&self) -> Option<&Self::Status>;
}

impl WithStatus for GatewayClass {
    type Status = gatewayclasses::GatewayClassStatus;
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
}

impl WithStatus for Gateway {
    type Status = gateways::GatewayStatus;
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
}

impl WithStatus for ListenerSet {
    type Status = listenersets::ListenerSetStatus;
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
}

impl WithStatus for BackendTlsPolicy {
    type Status = backendtlspolicies::BackendTlsPolicyStatus;
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
}

/// A route kind. Gateway API gives every route kind the same status, `RouteStatus`: a
/// list of `parents`, one per (parentRef, controllerName), each with its conditions.
trait RouteKind:
    WithStatus<Status: DeserializeOwned>
    + kube::Resource<Scope = portico_api::k8s_openapi::NamespaceResourceScope>
{
    /// Whether the route's status has a parent entry written by `controller_name`.
    fn has_parents_of(&self, controller_name: &str) -> bool;
}

macro_rules! route_kinds {
    ($($ty:ty => $status:ty),* $(,)?) => {
        $(
            impl WithStatus for $ty {
                type Status = $status;
                fn status(&self) -> Option<&Self::Status> {
                    self.status.as_ref()
                }
            }

            impl RouteKind for $ty {
                fn has_parents_of(&self, controller_name: &str) -> bool {
                    self.status
                        .iter()
                        .flat_map(|s| s.parents.iter())
                        .any(|p| p.controller_name == controller_name)
                }
            }
        )*
    };
}

route_kinds!(
    HttpRoute => httproutes::HttpRouteStatus,
    GrpcRoute => grpcroutes::GrpcRouteStatus,
    TlsRoute => tlsroutes::TlsRouteStatus,
    TcpRoute => tcproutes::TcpRouteStatus,
    UdpRoute => udproutes::UdpRouteStatus,
);

/// The status to write on a route of any kind: `desired` (our parents) merged into
/// `current` (other controllers' parents kept, transition times of unchanged conditions
/// kept) by [`RouteStatus::to_kube`]. That works on the HTTPRoute shape; kopium gives
/// each kind its own (identical) Rust types, so the other kinds pass through their JSON
/// form, the one the API server stores for all of them alike.
fn route_status<S: Serialize + DeserializeOwned>(
    desired: &RouteStatus,
    controller_name: &str,
    now: &Time,
    current: Option<&S>,
) -> Result<S, serde_json::Error> {
    let previous: Option<httproutes::HttpRouteStatus> = current
        .map(|c| serde_json::to_value(c).and_then(serde_json::from_value))
        .transpose()?;
    let status = desired.to_kube(controller_name, now, previous.as_ref());
    serde_json::from_value(serde_json::to_value(status)?)
}

/// How one object's write went.
enum Outcome {
    Patched,
    Unchanged,
    Failed,
    /// Not tried: the Lease was lost before (routes, written concurrently).
    NotLeader,
}

/// What one write learnt for [`StatusWriter::written`], applied once it is done (the
/// route writes run concurrently and only read the map).
enum Learnt {
    Nothing,
    Wrote(Value, String),
    Gone,
}

/// What one write needs of the writer, shared by concurrent writes.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    field_manager: &'a str,
    counters: &'a StatusCounters,
    written: &'a HashMap<(&'static str, ObjectKey), (Value, String)>,
}

/// The writer's state between passes.
pub struct StatusWriter {
    client: Client,
    field_manager: String,
    controller_name: String,
    counters: Arc<StatusCounters>,
    /// Per object, what we last wrote and the resourceVersion the API server answered
    /// with: if the object is still at that version and we would write the same again,
    /// there is nothing to do, even if the server normalized what it stored.
    written: HashMap<(&'static str, ObjectKey), (Value, String)>,
}

impl fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusWriter")
            .field("field_manager", &self.field_manager)
            .field("controller_name", &self.controller_name)
            .field("counters", &self.counters)
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

impl StatusWriter {
    pub fn new(client: Client, field_manager: String, controller_name: String) -> Self {
        Self {
            client,
            field_manager,
            controller_name,
            counters: Arc::default(),
            written: HashMap::new(),
        }
    }

    pub fn counters(&self) -> Arc<StatusCounters> {
        self.counters.clone()
    }

    /// Writes every status of `snapshot` that differs from the object's; returns how many
    /// writes failed. Stops early when `leader` turns false.
    pub async fn write(&mut self, snapshot: &Snapshot, leader: &watch::Receiver<bool>) -> usize {
        self.forget_deleted(snapshot);
        let patched_before = self.counters.patched();
        let failed = self.write_all(snapshot, leader).await;
        StatusCounters::add(&self.counters.passes);
        if failed == 0 && self.counters.patched() == patched_before {
            StatusCounters::add(&self.counters.quiet_passes);
            self.counters
                .last_quiet_generation
                .fetch_max(snapshot.generation, Ordering::Relaxed);
        }
        failed
    }

    async fn write_all(&mut self, snapshot: &Snapshot, leader: &watch::Receiver<bool>) -> usize {
        let statuses: &Statuses = &snapshot.output.statuses;
        let inputs = &snapshot.inputs;
        let now = Time(Timestamp::now());
        let mut failed = 0;

        for class in &inputs.gateway_classes {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            let Some(desired) = statuses.gateway_classes.get(name) else {
                continue;
            };
            if !*leader.borrow() {
                return failed;
            }
            let api: Api<GatewayClass> = Api::all(self.client.clone());
            let outcome = self
                .write_one(&api, class, |current| Ok(desired.to_kube(&now, current)))
                .await;
            failed += usize::from(matches!(outcome, Outcome::Failed));
        }

        for gateway in &inputs.gateways {
            let key = ObjectKey::of(gateway);
            let Some(desired) = statuses.gateways.get(&object_ref(&key)) else {
                continue;
            };
            if !*leader.borrow() {
                return failed;
            }
            let api: Api<Gateway> = namespaced_api(&self.client, &key);
            let outcome = self
                .write_one(&api, gateway, |current| Ok(desired.to_kube(&now, current)))
                .await;
            failed += usize::from(matches!(outcome, Outcome::Failed));
        }

        for set in &inputs.listener_sets {
            let key = ObjectKey::of(set);
            let Some(desired) = statuses.listener_sets.get(&object_ref(&key)) else {
                continue;
            };
            if !*leader.borrow() {
                return failed;
            }
            let api: Api<ListenerSet> = namespaced_api(&self.client, &key);
            let outcome = self
                .write_one(&api, set, |current| Ok(desired.to_kube(&now, current)))
                .await;
            failed += usize::from(matches!(outcome, Outcome::Failed));
        }

        // Every route kind, through one generic path (their statuses share one shape).
        for (failures, lost) in [
            self.write_routes(&inputs.http_routes, &statuses.http_routes, &now, leader)
                .await,
            self.write_routes(&inputs.grpc_routes, &statuses.grpc_routes, &now, leader)
                .await,
            self.write_routes(&inputs.tls_routes, &statuses.tls_routes, &now, leader)
                .await,
            self.write_routes(&inputs.tcp_routes, &statuses.tcp_routes, &now, leader)
                .await,
            self.write_routes(&inputs.udp_routes, &statuses.udp_routes, &now, leader)
                .await,
        ] {
            failed += failures;
            if lost {
                return failed;
            }
        }

        let no_ancestors = PolicyStatus::default();
        for policy in &inputs.backend_tls_policies {
            let key = ObjectKey::of(policy);
            // As for routes: a policy no Gateway of ours uses any more loses our
            // ancestor entries; policies we never wrote to are left alone.
            let desired = match statuses.backend_tls_policies.get(&object_ref(&key)) {
                Some(desired) => desired,
                None if self.has_our_ancestors(policy) => &no_ancestors,
                None => continue,
            };
            if !*leader.borrow() {
                return failed;
            }
            let api: Api<BackendTlsPolicy> = namespaced_api(&self.client, &key);
            let controller_name = self.controller_name.clone();
            let outcome = self
                .write_one(&api, policy, |current| {
                    Ok(desired.to_kube(&controller_name, &now, current))
                })
                .await;
            failed += usize::from(matches!(outcome, Outcome::Failed));
        }
        failed
    }

    fn has_our_ancestors(&self, policy: &BackendTlsPolicy) -> bool {
        policy.status.as_ref().is_some_and(|s| {
            s.ancestors
                .iter()
                .any(|a| a.controller_name == self.controller_name)
        })
    }

    /// Writes the status of every route of one kind, [`ROUTE_CONCURRENCY`] at a time;
    /// returns how many writes failed and whether the Lease was lost on the way (the
    /// pass must stop).
    async fn write_routes<K: RouteKind>(
        &mut self,
        routes: &[K],
        statuses: &BTreeMap<ObjectRef, RouteStatus>,
        now: &Time,
        leader: &watch::Receiver<bool>,
    ) -> (usize, bool) {
        use futures::StreamExt;

        let none = RouteStatus::default();
        let controller_name = self.controller_name.as_str();
        let ctx = Ctx {
            field_manager: &self.field_manager,
            counters: &self.counters,
            written: &self.written,
        };
        // A loop, not a closure: futures made in a closure do not prove `Send` for
        // every lifetime, which the spawned writer task needs.
        let mut writes = Vec::new();
        for route in routes {
            let key = ObjectKey::of(route);
            // Routes no longer attached to our Gateways lose our parent entries (an
            // empty desired status keeps only the other controllers' ones); routes we
            // never wrote to are left alone.
            let desired = match statuses.get(&object_ref(&key)) {
                Some(desired) => desired,
                None if route.has_parents_of(controller_name) => &none,
                None => continue,
            };
            let api: Api<K> = namespaced_api(&self.client, &key);
            writes.push(async move {
                if !*leader.borrow() {
                    return (key, Outcome::NotLeader, Learnt::Nothing);
                }
                let (outcome, learnt) = write_one(ctx, &api, route, |current| {
                    route_status(desired, controller_name, now, current)
                })
                .await;
                (key, outcome, learnt)
            });
        }
        let results: Vec<_> = futures::stream::iter(writes)
            .buffer_unordered(ROUTE_CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        let mut lost = false;
        for (key, outcome, learnt) in results {
            failed += usize::from(matches!(outcome, Outcome::Failed));
            lost |= matches!(outcome, Outcome::NotLeader);
            self.learn((kind_id::<K>(), key), learnt);
        }
        (failed, lost)
    }

    fn learn(&mut self, id: (&'static str, ObjectKey), learnt: Learnt) {
        match learnt {
            Learnt::Nothing => {}
            Learnt::Wrote(json, rv) => {
                self.written.insert(id, (json, rv));
            }
            Learnt::Gone => {
                self.written.remove(&id);
            }
        }
    }

    /// Drops the memory of objects that are gone, so that it does not grow with every
    /// object ever written.
    fn forget_deleted(&mut self, snapshot: &Snapshot) {
        fn keys<'a, K: WithStatus>(
            objs: &'a [K],
        ) -> impl Iterator<Item = (&'static str, ObjectKey)> + 'a {
            objs.iter().map(|o| (kind_id::<K>(), ObjectKey::of(o)))
        }
        let i = &snapshot.inputs;
        let live: std::collections::HashSet<(&'static str, ObjectKey)> = keys(&i.gateway_classes)
            .chain(keys(&i.gateways))
            .chain(keys(&i.listener_sets))
            .chain(keys(&i.http_routes))
            .chain(keys(&i.grpc_routes))
            .chain(keys(&i.tls_routes))
            .chain(keys(&i.tcp_routes))
            .chain(keys(&i.udp_routes))
            .chain(keys(&i.backend_tls_policies))
            .collect();
        self.written.retain(|id, _| live.contains(id));
    }

    /// Forgets what was written: after a leadership change another replica may have
    /// written since.
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Writes `to_status(current status)` on `obj` if it differs (see [`write_one`]).
    async fn write_one<K, F>(&mut self, api: &Api<K>, obj: &K, to_status: F) -> Outcome
    where
        K: WithStatus,
        F: Fn(Option<&K::Status>) -> Result<K::Status, serde_json::Error>,
    {
        let ctx = Ctx {
            field_manager: &self.field_manager,
            counters: &self.counters,
            written: &self.written,
        };
        let (outcome, learnt) = write_one(ctx, api, obj, to_status).await;
        self.learn((kind_id::<K>(), ObjectKey::of(obj)), learnt);
        outcome
    }
}

/// Writes `to_status(current status)` on `obj` if it differs, re-reading the object
/// and recomputing on conflicts.
async fn write_one<K, F>(ctx: Ctx<'_>, api: &Api<K>, obj: &K, to_status: F) -> (Outcome, Learnt)
where
    K: WithStatus,
    F: Fn(Option<&K::Status>) -> Result<K::Status, serde_json::Error>,
{
    let kind = K::kind(&());
    let key = ObjectKey::of(obj);
    let span = debug_span!("status_write", %kind, namespace = key.namespace.as_deref().unwrap_or(""), name = %key.name);
    write_one_in(ctx, api, obj, to_status, kind, key)
        .instrument(span)
        .await
}

async fn write_one_in<K, F>(
    ctx: Ctx<'_>,
    api: &Api<K>,
    obj: &K,
    to_status: F,
    kind: std::borrow::Cow<'static, str>,
    key: ObjectKey,
) -> (Outcome, Learnt)
where
    K: WithStatus,
    F: Fn(Option<&K::Status>) -> Result<K::Status, serde_json::Error>,
{
    let id = (kind_id::<K>(), key.clone());
    let mut current = obj.clone();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let desired = match to_status(current.status()) {
            Ok(desired) => desired,
            Err(e) => {
                // Only a status that does not fit its kind's schema gets here.
                warn!(%kind, object = %key, error = %e, "status: cannot build the status");
                break;
            }
        };
        let version = current.meta().resource_version.clone().unwrap_or_default();
        let desired_json = normalized(&desired);
        let already_written = ctx
            .written
            .get(&id)
            .is_some_and(|(json, rv)| *json == desired_json && *rv == version);
        if already_written || !differs(current.status(), &desired) {
            StatusCounters::add(&ctx.counters.unchanged);
            debug!(%kind, object = %key, "status: unchanged");
            return (Outcome::Unchanged, Learnt::Nothing);
        }
        let body = json!({
            "metadata": { "resourceVersion": version },
            "status": desired,
        });
        let params = PatchParams {
            field_manager: Some(ctx.field_manager.to_owned()),
            ..Default::default()
        };
        let result = tokio::time::timeout(
            PATCH_TIMEOUT,
            api.patch_status(&key.name, &params, &Patch::Merge(&body)),
        )
        .await;
        match result {
            Ok(Ok(updated)) => {
                let rv = updated.meta().resource_version.clone().unwrap_or_default();
                StatusCounters::add(&ctx.counters.patched);
                info!(%kind, object = %key, "status: patched");
                return (Outcome::Patched, Learnt::Wrote(desired_json, rv));
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                StatusCounters::add(&ctx.counters.conflicts);
                debug!(%kind, object = %key, attempt, "status: conflict, re-reading");
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                debug!(%kind, object = %key, "status: object is gone");
                return (Outcome::Unchanged, Learnt::Gone);
            }
            Ok(Err(e)) => {
                warn!(%kind, object = %key, attempt, error = %e, "status: patch failed");
            }
            Err(_) => {
                warn!(%kind, object = %key, attempt, timeout = ?PATCH_TIMEOUT, "status: patch timed out");
            }
        }
        if attempt == MAX_ATTEMPTS {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        // Whatever went wrong, the next attempt starts from the object as it is now.
        match tokio::time::timeout(PATCH_TIMEOUT, api.get_status(&key.name)).await {
            Ok(Ok(fresh)) => current = fresh,
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                return (Outcome::Unchanged, Learnt::Nothing);
            }
            Ok(Err(e)) => warn!(%kind, object = %key, error = %e, "status: re-read failed"),
            Err(_) => warn!(%kind, object = %key, "status: re-read timed out"),
        }
    }
    StatusCounters::add(&ctx.counters.failed);
    warn!(%kind, object = %key, attempts = MAX_ATTEMPTS, "status: giving up until the next pass");
    (Outcome::Failed, Learnt::Nothing)
}

fn kind_id<K: kube::Resource<DynamicType = ()>>() -> &'static str {
    // The kinds' names are 'static in their kopium Resource impls; matching keeps
    // the cache key free of allocations.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(k) => k,
        std::borrow::Cow::Owned(_) => "?",
    }
}

fn object_ref(key: &ObjectKey) -> portico_translate::ObjectRef {
    portico_translate::ObjectRef::new(key.namespace.clone().unwrap_or_default(), &key.name)
}

fn namespaced_api<K>(client: &Client, key: &ObjectKey) -> Api<K>
where
    K: kube::Resource<Scope = portico_api::k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), key.namespace.as_deref().unwrap_or_default())
}

/// Writes the statuses of every snapshot while `leader` is true, until `shutdown`.
pub async fn run(
    mut writer: StatusWriter,
    mut snapshots: Snapshots,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut retry = false;
    let mut was_leader = false;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let is_leader = *leader.borrow_and_update();
        if is_leader && !was_leader {
            info!("status: leading, writing statuses");
            writer.forget();
        }
        was_leader = is_leader;
        if is_leader && let Some(snapshot) = snapshot {
            // Exported with --otlp-endpoint: one span per batch of status writes.
            let span = info_span!(
                target: otlp::SPAN_TARGET,
                "status write",
                portico.generation = snapshot.generation,
                portico.patched = Empty,
                portico.failed = Empty,
            );
            let patched = writer.counters.patched();
            let failed = writer
                .write(&snapshot, &leader)
                .instrument(span.clone())
                .await;
            span.record(
                "portico.patched",
                writer.counters.patched().saturating_sub(patched),
            );
            span.record("portico.failed", failed);
            retry = failed > 0;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            changed = leader.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
    }
    debug!("status: writer ended");
}
