//! Keeping each Gateway's Service as [`desired_service`] says, by server-side apply.
//!
//! ```text
//!   Snapshot ──> for each Gateway of ours: desired Service
//!                  │ current one (from the snapshot) already carries it?  ── yes ─> skip
//!                  │ no
//!                  ▼
//!   PATCH (apply, fieldManager portico.dev/gateway-controller, force) ──> API server
//! ```
//!
//! Server-side apply makes us the owner of exactly the fields we set: labels or
//! annotations added by others (a cloud controller, kubectl) stay, and the fields we
//! stop setting (a listener port removed, an infrastructure label dropped) are removed.
//! A field we stopped setting does not make the current Service look out of date (it
//! may be anyone's), so the reconciler also remembers what it last applied: a desired
//! Service that differs from that is applied again. Applying patches the Service in
//! place (same uid): a change of the class's `PorticoGatewayClassConfig` never recreates
//! a Service. While the class's parameters are unusable, Services that exist are left
//! with their last shape (see [`crate::class`]).
//! Services of deleted Gateways are removed by the garbage collector through their
//! ownerReference; Services of Gateways that moved to another controller's class are
//! deleted here. Only the leader writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use portico_api::k8s::{IntOrString, Service};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::class::{ClassParameters, ClassParametersMap};
use crate::kube::provider::{ClassParametersRx, Snapshot, Snapshots};
use crate::object::ObjectKey;
use portico_api::portico::ServiceConfig;
use portico_translate::ProxyPorts;

#[cfg(test)]
use crate::service::build::desired_service;
use crate::service::build::{
    attached_listener_sets, desired_service_with, our_gateways, shape, stale_services,
};

/// How long one apply may take.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// When an apply failed, try again after this long even if nothing changes.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whether `current` already carries everything `desired` sets: every label,
/// annotation and owner of `desired`, and the same type, selector and ports. Fields
/// others added are allowed.
pub fn covers(current: &Service, desired: &Service) -> bool {
    fn subset(
        want: Option<&BTreeMap<String, String>>,
        have: Option<&BTreeMap<String, String>>,
    ) -> bool {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    }
    let (cm, dm) = (&current.metadata, &desired.metadata);
    let owners_present = dm.owner_references.iter().flatten().all(|want| {
        cm.owner_references.iter().flatten().any(|have| {
            have.uid == want.uid
                && have.controller == want.controller
                && have.kind == want.kind
                && have.name == want.name
        })
    });
    let (Some(cs), Some(ds)) = (&current.spec, &desired.spec) else {
        return desired.spec.is_none();
    };
    let ports_match = {
        let key = |p: &portico_api::k8s::ServicePort| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.target_port.as_ref().map(|t| match t {
                    IntOrString::Int(i) => i.to_string(),
                    IntOrString::String(s) => s.clone(),
                }),
            )
        };
        let mut have: Vec<_> = cs.ports.iter().flatten().map(key).collect();
        let mut want: Vec<_> = ds.ports.iter().flatten().map(key).collect();
        have.sort();
        want.sort();
        have == want
    };
    subset(dm.labels.as_ref(), cm.labels.as_ref())
        && subset(dm.annotations.as_ref(), cm.annotations.as_ref())
        && owners_present
        && cs.type_ == ds.type_
        && cs.selector == ds.selector
        && cs.load_balancer_ip == ds.load_balancer_ip
        && cs.external_traffic_policy == ds.external_traffic_policy
        && cs.load_balancer_class == ds.load_balancer_class
        && non_empty(&cs.load_balancer_source_ranges) == non_empty(&ds.load_balancer_source_ranges)
        && ports_match
}

fn non_empty(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or_default()
}

/// Applies the Services of one snapshot, shaped by their classes' `parameters`;
/// returns how many applies failed. `applied` remembers what was last applied per
/// Service.
async fn reconcile(
    client: &Client,
    field_manager: &str,
    snapshot: &Snapshot,
    parameters: &ClassParametersMap,
    applied: &mut HashMap<ObjectKey, Service>,
) -> usize {
    let inputs = &snapshot.inputs;
    let current: BTreeMap<ObjectKey, &Service> = inputs
        .services
        .iter()
        .map(|s| (ObjectKey::of(s), s))
        .collect();
    let params = PatchParams::apply(field_manager).force();
    let mut failed = 0;
    // The same ports the translator gave the proxy listeners of this snapshot.
    let proxy_ports = ProxyPorts::assign(inputs, &snapshot.options);
    for gateway in our_gateways(inputs, &snapshot.options.controller_name) {
        let sets = attached_listener_sets(inputs, &snapshot.output.statuses, gateway);
        let Some(mut desired) = desired_service_with(gateway, &sets, &proxy_ports) else {
            continue;
        };
        let key = ObjectKey::of(&desired);
        let existing = current.get(&key);
        match parameters.get(&gateway.spec.gateway_class_name) {
            Some(ClassParameters {
                service: Some(config),
                ..
            }) => shape(&mut desired, config),
            Some(ClassParameters { service: None, .. }) if existing.is_some() => {
                debug!(service = %key, "service: class parameters unusable, left as it is");
                continue;
            }
            // No usable parameters ever: the default shape.
            _ => shape(&mut desired, &ServiceConfig::default()),
        }
        let as_applied = applied.get(&key).is_none_or(|last| *last == desired);
        if as_applied && existing.is_some_and(|c| covers(c, &desired)) {
            debug!(service = %key, "service: up to date");
            continue;
        }
        let (Some(ns), name) = (key.namespace.as_deref(), key.name.as_str()) else {
            continue;
        };
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let result = tokio::time::timeout(
            APPLY_TIMEOUT,
            api.patch(name, &params, &Patch::Apply(&desired)),
        )
        .await;
        match result {
            Ok(Ok(_)) => {
                info!(service = %key, "service: applied");
                applied.insert(key, desired);
            }
            Ok(Err(e)) => {
                failed += 1;
                warn!(service = %key, error = %e, "service: apply failed");
            }
            Err(_) => {
                failed += 1;
                warn!(service = %key, timeout = ?APPLY_TIMEOUT, "service: apply timed out");
            }
        }
    }
    for stale in stale_services(inputs, &snapshot.options.controller_name) {
        let key = ObjectKey::of(stale);
        let (Some(ns), Some(uid)) = (key.namespace.as_deref(), stale.metadata.uid.clone()) else {
            continue;
        };
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        // The uid precondition: never delete a Service recreated under the same name.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match tokio::time::timeout(APPLY_TIMEOUT, api.delete(&key.name, &params)).await {
            Ok(Ok(_)) => info!(service = %key, "service: deleted, its Gateway is no longer ours"),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
            Ok(Err(e)) => {
                failed += 1;
                warn!(service = %key, error = %e, "service: delete failed");
            }
            Err(_) => {
                failed += 1;
                warn!(service = %key, timeout = ?APPLY_TIMEOUT, "service: delete timed out");
            }
        }
    }
    failed
}

/// Keeps the Services of every snapshot applied while `leader` is true, until
/// `shutdown`.
pub async fn run(
    client: Client,
    field_manager: String,
    mut snapshots: Snapshots,
    class_parameters: ClassParametersRx,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut retry = false;
    let mut was_leader = false;
    let mut applied = HashMap::new();
    loop {
        let snapshot: Option<Arc<Snapshot>> = snapshots.borrow_and_update().clone();
        let is_leader = *leader.borrow_and_update();
        if is_leader && !was_leader {
            // Another replica may have applied since.
            applied.clear();
        }
        was_leader = is_leader;
        if is_leader && let Some(snapshot) = snapshot {
            let parameters = class_parameters.borrow().clone();
            let span = info_span!("service_pass", generation = snapshot.generation);
            retry = reconcile(
                &client,
                &field_manager,
                &snapshot,
                &parameters,
                &mut applied,
            )
            .instrument(span)
            .await
                > 0;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            changed = leader.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
    }
    debug!("service: reconciler ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::gateway::Gateway;
    use portico_api::gateway::gateways::GatewayListeners;

    fn mk_gateway(ports: &[i32]) -> Gateway {
        let mut g = Gateway::default();
        g.metadata.namespace = Some("a".into());
        g.metadata.name = Some("g".into());
        g.metadata.uid = Some("u1".into());
        g.spec.listeners = ports
            .iter()
            .map(|p| GatewayListeners {
                name: format!("l{p}"),
                port: *p,
                protocol: "HTTP".into(),
                ..Default::default()
            })
            .collect();
        g
    }

    #[test]
    fn a_service_carrying_our_fields_plus_others_is_covered() {
        let desired = desired_service(&mk_gateway(&[80]), &[]).unwrap_or_default();
        let mut current = desired.clone();
        current
            .metadata
            .labels
            .get_or_insert_default()
            .insert("added-by".into(), "someone".into());
        if let Some(spec) = current.spec.as_mut() {
            spec.cluster_ip = Some("10.96.0.10".into());
        }
        assert!(covers(&current, &desired));
    }

    #[test]
    fn drift_is_not_covered() {
        let desired = desired_service(&mk_gateway(&[80, 443]), &[]).unwrap_or_default();
        let fewer_ports = desired_service(&mk_gateway(&[80]), &[]).unwrap_or_default();
        assert!(!covers(&fewer_ports, &desired));
        assert!(!covers(&desired, &fewer_ports));

        let mut relabelled = desired.clone();
        relabelled.metadata.labels = None;
        assert!(!covers(&relabelled, &desired));

        let mut orphan = desired.clone();
        orphan.metadata.owner_references = None;
        assert!(!covers(&orphan, &desired));

        let mut node_port = desired.clone();
        if let Some(spec) = node_port.spec.as_mut() {
            spec.type_ = Some("NodePort".into());
        }
        assert!(!covers(&node_port, &desired));
    }
}
