//! The checks of a phase (the case's first phase or a step), polled until they hold or
//! the case's time bound runs out, in the order CASES.md lists them: readiness,
//! conditions, listener status, negative checks, zero routes; requests come after.

pub(crate) mod conditions;

use tokio::time::Instant;

use super::case::{ConditionCheck, ListenerStatusCheck, NsName, ObjectId};
use super::cluster::Key;
use super::target::Target;
use conditions::NoParents;

/// The annotation that excludes a Gateway from readiness (upstream's
/// `gateway-api/skip-this-for-readiness`).
const SKIP_READINESS: &str = "gateway-api/skip-this-for-readiness";

/// `namespaces_ready`: every Gateway there (but the annotated ones) is Accepted and
/// Programmed at its current generation, and every stand-in pod there is serving.
pub(crate) async fn namespaces_ready(
    target: &mut Target,
    namespaces: &[String],
    deadline: Instant,
) -> Result<(), String> {
    if namespaces.is_empty() {
        return Ok(());
    }
    target
        .poll(deadline, |view, cluster, kubelet| {
            for namespace in namespaces {
                let gateways: Vec<Key> = cluster
                    .list("Gateway")
                    .filter(|(k, _)| k.namespace == *namespace)
                    .filter(|(_, g)| {
                        g.pointer("/metadata/annotations")
                            .and_then(|a| a.get(SKIP_READINESS))
                            .and_then(serde_json::Value::as_str)
                            != Some("true")
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gateways {
                    conditions::gateway_ready(view, cluster, &key)
                        .map_err(|e| format!("namespace {namespace} not ready: {e}"))?;
                }
                let unready = kubelet.unready_pods(namespace);
                if !unready.is_empty() {
                    return Err(format!(
                        "namespace {namespace} not ready: pods not running: {}",
                        unready.join(", ")
                    ));
                }
            }
            Ok(())
        })
        .await
}

pub(crate) async fn conditions(
    target: &mut Target,
    checks: &[ConditionCheck],
    deadline: Instant,
) -> Result<(), String> {
    for check in checks {
        target
            .poll(deadline, |view, cluster, _| {
                conditions::condition(view, cluster, check)
            })
            .await?;
    }
    Ok(())
}

pub(crate) async fn listener_status(
    target: &mut Target,
    checks: &[ListenerStatusCheck],
    deadline: Instant,
) -> Result<(), String> {
    for check in checks {
        target
            .poll(deadline, |view, cluster, _| {
                conditions::listener_status(view, cluster, check)
            })
            .await?;
    }
    Ok(())
}

/// `route_parents`: an empty `status.parents` must be seen on two polls in a row (a
/// status that is merely late would otherwise pass).
pub(crate) async fn route_parents(
    target: &mut Target,
    routes: &[ObjectId],
    deadline: Instant,
) -> Result<(), String> {
    for route in routes {
        let key = Key::new(&route.kind, &route.namespace, &route.name);
        let mut empty_before = false;
        target
            .poll(
                deadline,
                |view, cluster, _| match conditions::no_accepted_parent(view, cluster, &key) {
                    Ok(NoParents::NotAccepted) => Ok(()),
                    Ok(NoParents::Empty) if empty_before => Ok(()),
                    Ok(NoParents::Empty) => {
                        empty_before = true;
                        Err(format!("{key}: status.parents empty once, polling again"))
                    }
                    Err(e) => {
                        empty_before = false;
                        Err(e)
                    }
                },
            )
            .await?;
    }
    Ok(())
}

pub(crate) async fn zero_routes(
    target: &mut Target,
    gateways: &[NsName],
    deadline: Instant,
) -> Result<(), String> {
    for gateway in gateways {
        target
            .poll(deadline, |view, _, _| {
                conditions::zero_routes(view, gateway)
            })
            .await?;
    }
    Ok(())
}

/// `address_required: true`: the Gateway must get an address in its status.
pub(crate) async fn address(
    target: &mut Target,
    gateway: &NsName,
    deadline: Instant,
) -> Result<(), String> {
    target
        .poll(deadline, |view, _, _| {
            view.gateway_address(&gateway.namespace, &gateway.name)
                .map(|_| ())
                .ok_or_else(|| format!("Gateway {gateway} has no address in its status"))
        })
        .await
}
