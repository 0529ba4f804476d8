//! Status checks: conditions, listener status, Gateways with no routes, routes with no
//! accepted parent, and the generation checks of steps. Each is a pure function of one
//! observed state and the API server's objects; the caller polls it until it holds.

use portico_api::names::{self, condition, kind};

use super::super::case::{ConditionCheck, ExpectedCondition, ListenerStatusCheck, NsName};
use super::super::cluster::{Cluster, Key};
use super::super::observe::{Condition, ObjectStatus, ParentStatus, View, brief_all};

/// The object's `metadata.generation`, or why it cannot be read.
fn generation(cluster: &Cluster, key: &Key) -> Result<i64, String> {
    cluster
        .generation(key)
        .ok_or_else(|| format!("{key} does not exist (or has no generation)"))
}

fn status(view: &View, key: &Key) -> Result<ObjectStatus, String> {
    view.status(&key.kind, &key.namespace, &key.name)
        .ok_or_else(|| format!("{key} has no status from {}", names::CONTROLLER_NAME))
}

/// Whether `conditions` hold one of `type_` with `status` and, unless `None`, `reason`.
fn find<'a>(
    conditions: &'a [Condition],
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Option<&'a Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
}

fn wanted(type_: &str, status: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{type_}={status} reason {r}"),
        None => format!("{type_}={status}"),
    }
}

/// Every condition is at `generation`.
fn current(conditions: &[Condition], generation: i64) -> Result<(), String> {
    match conditions
        .iter()
        .find(|c| c.observed_generation != Some(generation))
    {
        None => Ok(()),
        Some(stale) => Err(format!(
            "condition {} is not at the current generation {generation}",
            stale.brief()
        )),
    }
}

/// One condition as CASES.md defines it, for a Gateway (with `listener: '*'` on every
/// listener) or a route parent.
pub(crate) fn condition(view: &View, cluster: &Cluster, c: &ConditionCheck) -> Result<(), String> {
    let key = Key::new(&c.kind, &c.namespace, &c.name);
    let generation = generation(cluster, &key)?;
    let status = status(view, &key)?;
    let what = format!("condition {key}");
    let wildcard = c.type_ == "*";

    if c.kind == kind::GATEWAY {
        if c.listener.is_some() {
            if status.listeners.is_empty() {
                return Err(format!("{what}: no listeners in status"));
            }
            for l in &status.listeners {
                holds(&l.conditions, c, generation, wildcard)
                    .map_err(|e| format!("{what} listener {}: {e}", l.name))?;
            }
            return Ok(());
        }
        return holds(&status.conditions, c, generation, wildcard)
            .map_err(|e| format!("{what}: {e}"));
    }

    // A route: the status.parents entry for the parent Gateway.
    let parent_name = c.parent.as_deref().unwrap_or_default();
    let parent_namespace = c.parent_namespace.as_deref().unwrap_or_default();
    let parent = route_parent(
        &status,
        &key,
        parent_namespace,
        parent_name,
        c.section.as_deref(),
    )
    .map_err(|e| format!("{what}: {e}"))?;
    holds(&parent.conditions, c, generation, wildcard)
        .map_err(|e| format!("{what} parent Gateway {parent_namespace}/{parent_name}: {e}"))
}

fn holds(
    conditions: &[Condition],
    c: &ConditionCheck,
    generation: i64,
    wildcard: bool,
) -> Result<(), String> {
    if wildcard {
        // "`type: '*'` with `status: '*'` means: at least one condition exists and
        // every condition present is at the current `observedGeneration`."
        if conditions.is_empty() {
            return Err("no conditions".to_owned());
        }
        return current(conditions, generation)
            .map_err(|e| format!("{e}; seen {}", brief_all(conditions)));
    }
    let want = wanted(&c.type_, &c.status, c.reason.as_deref());
    let Some(found) = find(conditions, &c.type_, &c.status, c.reason.as_deref()) else {
        return Err(format!("expected {want}, seen {}", brief_all(conditions)));
    };
    if found.observed_generation != Some(generation) {
        return Err(format!(
            "expected {want} at observedGeneration {generation}, seen {}",
            found.brief()
        ));
    }
    Ok(())
}

/// The `status.parents` entry of route `key` for the Gateway `namespace/name`, checked
/// the way upstream's `parentsForRouteMatch` does: our controllerName, a parentRef with
/// group and kind, and a namespace when the route lives elsewhere.
fn route_parent<'a>(
    status: &'a ObjectStatus,
    key: &Key,
    namespace: &str,
    name: &str,
    section: Option<&str>,
) -> Result<&'a ParentStatus, String> {
    let for_gateway: Vec<&ParentStatus> = status
        .parents
        .iter()
        .filter(|p| {
            p.parent_ref.name == name
                && p.parent_ref.namespace.as_deref().unwrap_or(&key.namespace) == namespace
                && p.parent_ref.kind.as_deref().unwrap_or(kind::GATEWAY) == kind::GATEWAY
        })
        .collect();
    let seen = || {
        let all: Vec<String> = status
            .parents
            .iter()
            .map(|p| format!("{} by {:?}", p.parent_ref.brief(), p.controller_name))
            .collect();
        if all.is_empty() {
            "status.parents is empty".to_owned()
        } else {
            format!("status.parents: {}", all.join("; "))
        }
    };
    // The section is informative, but when there are entries per section it says which.
    let parent = section
        .and_then(|s| {
            for_gateway
                .iter()
                .find(|p| p.parent_ref.section_name.as_deref() == Some(s))
        })
        .or_else(|| for_gateway.first())
        .copied()
        .ok_or_else(|| {
            format!(
                "no status.parents entry for Gateway {namespace}/{name} ({})",
                seen()
            )
        })?;

    if parent.controller_name != names::CONTROLLER_NAME {
        return Err(format!(
            "parent {}: controllerName {:?}, expected {:?}",
            parent.parent_ref.brief(),
            parent.controller_name,
            names::CONTROLLER_NAME
        ));
    }
    let r = &parent.parent_ref;
    if r.group.as_deref() != Some(names::GATEWAY_API_GROUP) {
        return Err(format!(
            "parent {}: parentRef.group {:?}, expected {:?}",
            r.brief(),
            r.group,
            names::GATEWAY_API_GROUP
        ));
    }
    if r.kind.as_deref() != Some(kind::GATEWAY) {
        return Err(format!(
            "parent {}: parentRef.kind {:?}, expected \"Gateway\"",
            r.brief(),
            r.kind
        ));
    }
    if namespace != key.namespace && r.namespace.as_deref() != Some(namespace) {
        return Err(format!(
            "parent {}: parentRef.namespace must be {namespace:?} for a route in {:?}",
            r.brief(),
            key.namespace
        ));
    }
    Ok(parent)
}

/// `listener_status`: each expected listener with its kinds, attached routes and
/// conditions; with `exact_listener_count`, no others.
pub(crate) fn listener_status(
    view: &View,
    cluster: &Cluster,
    check: &ListenerStatusCheck,
) -> Result<(), String> {
    let key = Key::new(kind::GATEWAY, &check.gateway.namespace, &check.gateway.name);
    let status = status(view, &key)?;
    let what = format!("listener status of {key}");
    if check.exact_listener_count && status.listeners.len() != check.listeners.len() {
        let names: Vec<&str> = status.listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(format!(
            "{what}: expected exactly {} listeners, seen {} ({})",
            check.listeners.len(),
            names.len(),
            names.join(", ")
        ));
    }
    let generation = generation(cluster, &key)?;
    for expected in &check.listeners {
        let Some(l) = status.listeners.iter().find(|l| l.name == expected.name) else {
            return Err(format!("{what}: no listener {:?} in status", expected.name));
        };
        let kinds: Vec<&str> = l.supported_kinds.iter().map(|k| k.kind.as_str()).collect();
        if expected.supported_kinds.is_empty() && !kinds.is_empty() {
            return Err(format!(
                "{what} listener {}: expected no supportedKinds, seen {kinds:?}",
                l.name
            ));
        }
        for k in &expected.supported_kinds {
            if !kinds.contains(&k.as_str()) {
                return Err(format!(
                    "{what} listener {}: supportedKinds {kinds:?} lacks {k}",
                    l.name
                ));
            }
        }
        if l.attached_routes != expected.attached_routes {
            return Err(format!(
                "{what} listener {}: expected attachedRoutes {}, seen {}",
                l.name, expected.attached_routes, l.attached_routes
            ));
        }
        for c in &expected.conditions {
            listener_condition(&l.conditions, c, generation)
                .map_err(|e| format!("{what} listener {}: {e}", l.name))?;
        }
    }
    Ok(())
}

fn listener_condition(
    conditions: &[Condition],
    c: &ExpectedCondition,
    generation: i64,
) -> Result<(), String> {
    if c.type_ == "*" {
        if conditions.is_empty() {
            return Err("no conditions".to_owned());
        }
        return current(conditions, generation);
    }
    let want = wanted(&c.type_, &c.status, c.reason.as_deref());
    match find(conditions, &c.type_, &c.status, c.reason.as_deref()) {
        Some(_) => Ok(()),
        None => Err(format!("expected {want}, seen {}", brief_all(conditions))),
    }
}

/// `gateway_zero_routes`: no listeners, or one listener with `attachedRoutes: 0`.
pub(crate) fn zero_routes(view: &View, gateway: &NsName) -> Result<(), String> {
    let key = Key::new(kind::GATEWAY, &gateway.namespace, &gateway.name);
    let status = status(view, &key)?;
    match status.listeners.as_slice() {
        [] => Ok(()),
        [only] if only.attached_routes == 0 => Ok(()),
        listeners => Err(format!(
            "{key}: expected no attached routes, seen {}",
            listeners
                .iter()
                .map(|l| format!(
                    "listener {} with attachedRoutes {}",
                    l.name, l.attached_routes
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What `route_parents` sees in one poll.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoParents {
    /// `status.parents` is empty (it must stay so on the next poll too).
    Empty,
    /// Exactly one entry, current, with Accepted=False.
    NotAccepted,
}

/// `route_parents`: the route's `status.parents` is empty, or has exactly one entry
/// whose conditions are current and include Accepted=False.
pub(crate) fn no_accepted_parent(
    view: &View,
    cluster: &Cluster,
    key: &Key,
) -> Result<NoParents, String> {
    let generation = generation(cluster, key)?;
    let Some(status) = view.status(&key.kind, &key.namespace, &key.name) else {
        return Ok(NoParents::Empty);
    };
    match status.parents.as_slice() {
        [] => Ok(NoParents::Empty),
        [only] => {
            current(&only.conditions, generation)
                .map_err(|e| format!("{key} parent {}: {e}", only.parent_ref.brief()))?;
            if find(&only.conditions, condition::ACCEPTED, "False", None).is_some() {
                Ok(NoParents::NotAccepted)
            } else {
                Err(format!(
                    "{key}: expected no accepted parent, parent {} has {}",
                    only.parent_ref.brief(),
                    brief_all(&only.conditions)
                ))
            }
        }
        many => Err(format!(
            "{key}: expected no accepted parent, seen {} parents: {}",
            many.len(),
            many.iter()
                .map(|p| p.parent_ref.brief())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// `observed_generation_current`: every condition of the object (for a Gateway its
/// listeners' too, for a route every parent's, for a policy every ancestor's) carries
/// its generation.
pub(crate) fn observed_generation_current(
    view: &View,
    cluster: &Cluster,
    key: &Key,
) -> Result<(), String> {
    let generation = generation(cluster, key)?;
    let status = status(view, key)?;
    let what = format!("{key} at generation {generation}");
    if status.conditions.is_empty() && status.parents.is_empty() && status.ancestors.is_empty() {
        return Err(format!("{what}: no conditions in status"));
    }
    current(&status.conditions, generation).map_err(|e| format!("{what}: {e}"))?;
    for l in &status.listeners {
        current(&l.conditions, generation)
            .map_err(|e| format!("{what} listener {}: {e}", l.name))?;
    }
    for p in &status.parents {
        current(&p.conditions, generation)
            .map_err(|e| format!("{what} parent {}: {e}", p.parent_ref.brief()))?;
    }
    for a in &status.ancestors {
        current(&a.conditions, generation)
            .map_err(|e| format!("{what} ancestor {}: {e}", a.ancestor_ref.brief()))?;
    }
    Ok(())
}

/// Whether a Gateway is ready as `namespaces_ready` wants: Accepted=True and
/// Programmed=True, every condition current.
pub(crate) fn gateway_ready(view: &View, cluster: &Cluster, key: &Key) -> Result<(), String> {
    let generation = generation(cluster, key)?;
    let status = status(view, key)?;
    for type_ in [condition::ACCEPTED, condition::PROGRAMMED] {
        if find(&status.conditions, type_, "True", None).is_none() {
            return Err(format!(
                "{key} not ready: expected {type_}=True, seen {}",
                brief_all(&status.conditions)
            ));
        }
    }
    current(&status.conditions, generation).map_err(|e| format!("{key} not ready: {e}"))
}
