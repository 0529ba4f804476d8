//! LB-IPAM against the API server: watches LoadBalancer Services and
//! LoadBalancerIPPools, runs the [`plan`](crate::ipam::plan) on every change, and writes
//! what it says. Only the leader writes.
//!
//! ```text
//!   watcher(Service, all namespaces) ──┐ reflector stores
//!   watcher(LoadBalancerIPPool) ───────┤──notify──> pass (debounced, leader only)
//!                                      ▼
//!        requests (Services of ours) + pools ──plan──> per Service: addresses | why not
//!          ├─ status.loadBalancer.ingress differs ──> PATCH services/<name>/status
//!          ├─ not assigned (new reason)           ──> Event AddressNotAssigned (Warning)
//!          └─ pool counts / Ready differ          ──> PATCH loadbalancerippools/<name>/status
//! ```
//!
//! Restart safety: the plan starts from the addresses Services show, so a new leader
//! keeps every assignment. Between our status write and the watch echoing it, the
//! address we wrote stands in for the one observed (`written`), so a second pass in
//! that window cannot give it to another Service.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use portico_api::k8s::{Condition, Service, Time};
use portico_api::names::{condition, event, reason};
use portico_api::portico::LoadBalancerIPPool;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::ipam::plan::{Assignment, Plan, PoolUsage, plan};
use crate::ipam::pool::Pool;
use crate::ipam::request::{Request, is_ours};
use crate::kube::reflect::spawn_reflector;
use crate::object::ObjectKey;

/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed write, run again after this long even if nothing changes.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Changes arriving within this long are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// The Events' reporting controller.
const REPORTER: &str = "portico-lb-ipam";

/// What LB-IPAM did, for tests and metrics.
#[derive(Debug, Default)]
pub struct IpamCounters {
    pub passes: std::sync::atomic::AtomicU64,
    pub service_writes: std::sync::atomic::AtomicU64,
    pub pool_writes: std::sync::atomic::AtomicU64,
    pub events: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
}

/// Configuration of [`run`].
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// The field manager of our status writes.
    pub field_manager: String,
    /// This replica, in Events' `reportingInstance`.
    pub identity: String,
}

/// Runs LB-IPAM until `shutdown`; writes only while `leader` is true.
pub async fn run(
    client: Client,
    config: IpamConfig,
    mut leader: watch::Receiver<bool>,
    counters: Arc<IpamCounters>,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let (services, services_synced) = spawn_reflector(
        "ipam",
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        &changed,
        &shutdown,
    );
    let (pools, pools_synced) = spawn_reflector(
        "ipam",
        Api::<LoadBalancerIPPool>::all(client.clone()),
        watcher::Config::default(),
        &changed,
        &shutdown,
    );
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.to_owned(),
            instance: Some(config.identity.clone()),
        },
    );
    let mut state = State::default();
    let mut retry = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changed.notified() => {}
            res = leader.changed() => if res.is_err() { break },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
        let synced =
            services_synced.load(Ordering::Acquire) && pools_synced.load(Ordering::Acquire);
        if !*leader.borrow_and_update() || !synced {
            retry = false;
            continue;
        }
        let span = info_span!("ipam_pass");
        let failed = pass(
            &client, &config, &recorder, &services, &pools, &mut state, &counters,
        )
        .instrument(span)
        .await;
        counters.passes.fetch_add(1, Ordering::Relaxed);
        retry = failed > 0;
    }
    debug!("ipam: ended");
}

/// What the controller remembers between passes.
#[derive(Debug, Default)]
struct State {
    /// Addresses we wrote, by Service and uid, until the watch shows them.
    written: BTreeMap<(ObjectKey, String), Vec<IpAddr>>,
    /// The last reason we reported per Service, so an Event is published once per
    /// change of reason, not on every pass.
    reported: BTreeMap<ObjectKey, String>,
}

/// One pass; returns how many writes failed.
async fn pass(
    client: &Client,
    config: &IpamConfig,
    recorder: &Recorder,
    services: &Store<Service>,
    pools: &Store<LoadBalancerIPPool>,
    state: &mut State,
    counters: &IpamCounters,
) -> usize {
    let ours: Vec<Arc<Service>> = services
        .state()
        .into_iter()
        .filter(|s| is_ours(s))
        .collect();
    let requests: Vec<Request> = ours
        .iter()
        .map(|s| {
            let mut r = Request::from_service(s);
            if r.current.is_empty()
                && let Some(uid) = &r.uid
                && let Some(ips) = state.written.get(&(r.key.clone(), uid.clone()))
            {
                r.current = ips.clone();
            }
            r
        })
        .collect();
    let pool_objects = pools.state();
    let parsed: Vec<Pool> = pool_objects
        .iter()
        .map(|p| Pool::from_resource(p))
        .collect();
    let Plan {
        services: assignments,
        pools: usage,
    } = plan(&parsed, &requests);

    // Forget what no longer exists.
    let live: BTreeMap<ObjectKey, Option<String>> = requests
        .iter()
        .map(|r| (r.key.clone(), r.uid.clone()))
        .collect();
    state
        .written
        .retain(|(k, uid), _| live.get(k).is_some_and(|u| u.as_deref() == Some(uid)));
    state.reported.retain(|k, _| live.contains_key(k));

    let params = PatchParams {
        field_manager: Some(config.field_manager.clone()),
        ..PatchParams::default()
    };
    let mut failed = 0;
    for service in &ours {
        let key = ObjectKey::of(service.as_ref());
        let Some(assignment) = assignments.get(&key) else {
            continue;
        };
        let observed = Request::from_service(service).current;
        let want: Vec<IpAddr> = match assignment {
            Assignment::Assigned(ips) => ips.clone(),
            Assignment::NotAssigned(_) => Vec::new(),
        };
        if observed != want {
            match write_ingress(client, &key, &want, &params).await {
                Ok(()) => {
                    counters.service_writes.fetch_add(1, Ordering::Relaxed);
                    if let Some(uid) = &service.metadata.uid {
                        state
                            .written
                            .insert((key.clone(), uid.clone()), want.clone());
                    }
                    if !want.is_empty() {
                        info!(service = %key, addresses = ?want, "ipam: assigned");
                    }
                }
                Err(e) => {
                    failed += 1;
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    warn!(service = %key, error = %e, "ipam: status write failed");
                    continue;
                }
            }
        }
        let (reason, note, type_) = match assignment {
            Assignment::Assigned(ips) => (
                event::ADDRESS_ASSIGNED,
                format!("assigned {}", join(ips)),
                EventType::Normal,
            ),
            Assignment::NotAssigned(why) => {
                (event::ADDRESS_NOT_ASSIGNED, why.clone(), EventType::Warning)
            }
        };
        if state.reported.get(&key) == Some(&note) {
            continue;
        }
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.clone()),
            action: "AssignAddress".to_owned(),
            secondary: None,
        };
        let reference = service.object_ref(&());
        match tokio::time::timeout(WRITE_TIMEOUT, recorder.publish(&ev, &reference)).await {
            Ok(Ok(())) => {
                counters.events.fetch_add(1, Ordering::Relaxed);
                if matches!(assignment, Assignment::NotAssigned(_)) {
                    warn!(service = %key, reason = %note, "ipam: no address");
                }
                state.reported.insert(key, note);
            }
            Ok(Err(e)) => {
                failed += 1;
                warn!(service = %key, error = %e, "ipam: event failed");
            }
            Err(_) => {
                failed += 1;
                warn!(service = %key, "ipam: event timed out");
            }
        }
    }

    for pool in &pool_objects {
        let Some(name) = pool.metadata.name.as_deref() else {
            continue;
        };
        let Some(usage) = usage.get(name) else {
            continue;
        };
        let desired = pool_status(pool, usage);
        let current = pool.status.as_ref().map(|s| {
            json!({"total": s.total, "used": s.used, "available": s.available,
                   "ready": s.conditions.iter().flatten().find(|c| c.type_ == condition::READY)
                       .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone(), c.observed_generation))})
        });
        if current.as_ref() == Some(&desired.compare) {
            continue;
        }
        let api: Api<LoadBalancerIPPool> = Api::all(client.clone());
        let patch = json!({"status": desired.status});
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => {
                counters.pool_writes.fetch_add(1, Ordering::Relaxed);
                debug!(pool = name, "ipam: pool status written");
            }
            Ok(Err(e)) => {
                failed += 1;
                counters.failures.fetch_add(1, Ordering::Relaxed);
                warn!(pool = name, error = %e, "ipam: pool status write failed");
            }
            Err(_) => {
                failed += 1;
                warn!(pool = name, "ipam: pool status write timed out");
            }
        }
    }
    failed
}

async fn write_ingress(
    client: &Client,
    key: &ObjectKey,
    ips: &[IpAddr],
    params: &PatchParams,
) -> Result<(), String> {
    let Some(ns) = key.namespace.as_deref() else {
        return Err("a Service without a namespace".to_owned());
    };
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    // Kubernetes (LoadBalancerIngress ipMode): "VIP" means traffic is delivered to the
    // node with the destination set to the load balancer's IP: the node datapath
    // (kube-proxy or the agent) must answer for it, which is what L2 announcement and
    // the agent do.
    let ingress: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
        .collect();
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    match tokio::time::timeout(
        WRITE_TIMEOUT,
        api.patch_status(&key.name, params, &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {WRITE_TIMEOUT:?}")),
    }
}

/// The status to write, and the part of it compared with what the pool shows.
struct PoolStatus {
    status: serde_json::Value,
    compare: serde_json::Value,
}

fn pool_status(pool: &LoadBalancerIPPool, usage: &PoolUsage) -> PoolStatus {
    let saturate = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    let (total, used) = (saturate(usage.total), saturate(usage.used));
    let available = saturate(usage.total.saturating_sub(usage.used));
    let generation = pool.metadata.generation;
    let (status, reason, message) = match &usage.problem {
        None => ("True", reason::READY, "every block is valid".to_owned()),
        Some(why) => ("False", reason::INVALID_BLOCK, why.clone()),
    };
    // Keep the transition time while the condition's status stays.
    let previous = pool
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == condition::READY));
    let since = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(portico_api::k8s_openapi::jiff::Timestamp::now()));
    let ready = Condition {
        type_: condition::READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    };
    PoolStatus {
        status: json!({"total": total, "used": used, "available": available, "conditions": [ready]}),
        compare: json!({"total": Some(total), "used": Some(used), "available": Some(available),
                        "ready": Some((status, reason, message, generation))}),
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
