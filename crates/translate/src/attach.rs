//! Which listeners a route attaches to, and its status per parentRef.
//!
//! A parentRef names a Gateway (its own listeners) or a ListenerSet (the listeners it
//! contributes to its Gateway). Within that parent, listeners are narrowed in steps, and
//! the first step that leaves none gives the `Accepted=False` reason:
//!
//! ```text
//! the parent's listeners
//!   └─ sectionName / port match the parentRef ......... else NoMatchingParent
//!      └─ allowedRoutes admits the kind ............... else NotAllowedByListeners
//!         └─ allowedRoutes admits the namespace ....... else NotAllowedByListeners
//!            └─ hostnames intersect ................... else NoMatchingListenerHostname
//!               = the listeners the route attaches to (with the hostnames it answers there)
//! ```
//!
//! Gateway API (ParentReference sectionName): "When unspecified (empty string), this will
//! reference the entire resource. For the purpose of status, an attachment is considered
//! successful if at least one section in the parent resource accepts it." and (port):
//! "When both Port and SectionName are specified, the name and port of the selected
//! listener must match both specified values."
//!
//! A parentRef to a Gateway reaches the Gateway's own listeners only, never those of its
//! ListenerSets, and a parentRef to a ListenerSet only that set's: each parentRef gets its
//! own status entry, evaluated on its own.
//!
//! A parentRef to something that is not a Gateway of one of our GatewayClasses (or a
//! ListenerSet of one) gets no status entry: another controller owns it.

use std::collections::BTreeMap;

use portico_api::names::{self, condition, kind, reason};

use crate::gateway::GatewayPlan;
use crate::hostname;
use crate::index::Index;
use crate::listener::{ListenerPlan, Origin};
use crate::route::CompiledRoute;
use crate::status::{Condition, HttpRouteStatus, ObjectRef, ParentReference, RouteParentStatus};

/// A route attached to one listener of a Gateway's merged list, answering for
/// `hostnames` there. `listener` is [`ListenerPlan::name`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attachment {
    pub(crate) gateway: ObjectRef,
    pub(crate) listener: String,
    pub(crate) hostnames: Vec<String>,
}

/// What a parentRef names, once found among our objects.
struct Parent<'p, 'a> {
    plan: &'p GatewayPlan<'a>,
    origin: Origin,
    /// `Gateway infra/gw` or `ListenerSet apps/extra`, for messages.
    what: String,
    /// Why the parent takes no routes at all (a ListenerSet that is not attached).
    unavailable: Option<String>,
}

/// The route's parent statuses (`None` if no parentRef is ours) and its attachments.
pub(crate) fn attach(
    index: &Index<'_>,
    plans: &BTreeMap<ObjectRef, GatewayPlan<'_>>,
    route: &CompiledRoute,
) -> (Option<HttpRouteStatus>, Vec<Attachment>) {
    let generation = route.generation;
    let resolved_refs = resolved_refs(route, generation);
    let mut parents: Vec<RouteParentStatus> = Vec::new();
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut seen: Vec<&ParentReference> = Vec::new();

    for parent_ref in &route.parent_refs {
        if seen.contains(&parent_ref) {
            continue;
        }
        seen.push(parent_ref);
        let Some(parent) = find_parent(index, plans, &route.key.namespace, parent_ref) else {
            continue;
        };

        let (accepted, found) = match (
            attach_to_parent(index, &parent, route, parent_ref),
            route.errors.first(),
        ) {
            (Ok(found), None) => (
                Condition::new(
                    condition::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    format!(
                        "attached to listener(s) {}",
                        found
                            .iter()
                            .map(|(section, _)| section.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    generation,
                ),
                found.into_iter().map(|(_, a)| a).collect(),
            ),
            (Ok(_), Some(first)) => (
                Condition::new(
                    condition::ACCEPTED,
                    false,
                    first.reason(),
                    join(route.errors.iter().map(ToString::to_string)),
                    generation,
                ),
                Vec::new(),
            ),
            (Err((why, message)), _) => (
                Condition::new(condition::ACCEPTED, false, why, message, generation),
                Vec::new(),
            ),
        };
        for a in found {
            if !attachments.contains(&a) {
                attachments.push(a);
            }
        }
        parents.push(RouteParentStatus {
            parent_ref: status_parent_ref(parent_ref),
            controller_name: index.options.controller_name.clone(),
            conditions: vec![accepted, resolved_refs.clone()],
        });
    }
    let status = (!parents.is_empty()).then_some(HttpRouteStatus { parents });
    (status, attachments)
}

/// The parentRef as the route's status echoes it: as written, with the defaults the API
/// server applies to the spec (group `gateway.networking.k8s.io`, kind `Gateway`), so
/// that the entry matches the stored parentRef whether or not the route came through an
/// API server.
fn status_parent_ref(parent_ref: &ParentReference) -> ParentReference {
    ParentReference {
        group: Some(
            parent_ref
                .group
                .clone()
                .unwrap_or_else(|| names::GATEWAY_API_GROUP.to_owned()),
        ),
        kind: Some(
            parent_ref
                .kind
                .clone()
                .unwrap_or_else(|| kind::GATEWAY.to_owned()),
        ),
        namespace: parent_ref.namespace.clone(),
        name: parent_ref.name.clone(),
        section_name: parent_ref.section_name.clone(),
        port: parent_ref.port,
    }
}

/// The Gateway of ours, or ListenerSet of a Gateway of ours, that a parentRef names.
fn find_parent<'p, 'a>(
    index: &Index<'_>,
    plans: &'p BTreeMap<ObjectRef, GatewayPlan<'a>>,
    route_namespace: &str,
    parent_ref: &ParentReference,
) -> Option<Parent<'p, 'a>> {
    let group = parent_ref
        .group
        .as_deref()
        .unwrap_or(names::GATEWAY_API_GROUP);
    if group != names::GATEWAY_API_GROUP {
        return None;
    }
    let key = ObjectRef::new(
        parent_ref
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(route_namespace),
        parent_ref.name.clone(),
    );
    match parent_ref.kind.as_deref().unwrap_or(kind::GATEWAY) {
        kind::GATEWAY => Some(Parent {
            plan: plans.get(&key)?,
            origin: Origin::Gateway,
            what: format!("{} {key}", kind::GATEWAY),
            unavailable: None,
        }),
        kind::LISTENER_SET => {
            let listener_set = index.listener_sets.get(&key)?;
            let plan = plans.get(&index.listener_set_parent(listener_set)?)?;
            let child = plan.listener_sets.iter().find(|c| c.key == key)?;
            Some(Parent {
                plan,
                origin: child.origin(),
                what: format!("{} {key}", kind::LISTENER_SET),
                unavailable: child
                    .rejected
                    .as_ref()
                    .map(|(_, message)| format!("ListenerSet {key} is not attached: {message}")),
            })
        }
        _ => None,
    }
}

/// The listeners of `parent` the route attaches to, as (sectionName, attachment).
fn attach_to_parent(
    index: &Index<'_>,
    parent: &Parent<'_, '_>,
    route: &CompiledRoute,
    parent_ref: &ParentReference,
) -> Result<Vec<(String, Attachment)>, (&'static str, String)> {
    if let Some(why) = &parent.unavailable {
        return Err((reason::NO_MATCHING_PARENT, why.clone()));
    }
    let section = parent_ref.section_name.as_deref().filter(|s| !s.is_empty());
    let selected: Vec<&ListenerPlan> = parent
        .plan
        .listeners_of(&parent.origin)
        .filter(|l| section.is_none_or(|s| s == l.section_name))
        .filter(|l| parent_ref.port.is_none_or(|p| p == i32::from(l.port)))
        .collect();
    if selected.is_empty() {
        let mut wanted = Vec::new();
        if let Some(s) = section {
            wanted.push(format!("sectionName {s:?}"));
        }
        if let Some(p) = parent_ref.port {
            wanted.push(format!("port {p}"));
        }
        return Err((
            reason::NO_MATCHING_PARENT,
            format!(
                "{} has no listener with {}",
                parent.what,
                wanted.join(" and ")
            ),
        ));
    }

    let of_kind: Vec<&ListenerPlan> = selected
        .into_iter()
        .filter(|l| l.allows_kind(names::GATEWAY_API_GROUP, route.kind))
        .collect();
    if of_kind.is_empty() {
        return Err((
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no matching listener of {} allows kind {}",
                parent.what, route.kind
            ),
        ));
    }
    let labels = index.namespace_labels(&route.key.namespace);
    let allowed: Vec<&ListenerPlan> = of_kind
        .into_iter()
        .filter(|l| {
            l.allowed_namespaces
                .allows(&l.namespace, &route.key.namespace, &labels)
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no matching listener of {} allows routes from namespace {:?}",
                parent.what, route.key.namespace
            ),
        ));
    }

    let found: Vec<(String, Attachment)> = allowed
        .into_iter()
        .filter_map(|l| {
            let hostnames = hostname::intersect(l.hostname.as_deref(), &route.hostnames);
            (!hostnames.is_empty()).then(|| {
                (
                    l.section_name.clone(),
                    Attachment {
                        gateway: parent.plan.key.clone(),
                        listener: l.name.clone(),
                        hostnames,
                    },
                )
            })
        })
        .collect();
    if found.is_empty() {
        return Err((
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no hostname of the route intersects the hostnames of the matching listeners of {}",
                parent.what
            ),
        ));
    }
    Ok(found)
}

/// The route's ResolvedRefs condition: the same for every parent, as backends do not
/// depend on where the route attaches.
fn resolved_refs(route: &CompiledRoute, generation: Option<i64>) -> Condition {
    match route.backend_errors.first() {
        None => Condition::new(
            condition::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "all references are resolved",
            generation,
        ),
        Some(first) => Condition::new(
            condition::RESOLVED_REFS,
            false,
            first.reason(),
            join(route.backend_errors.iter().map(ToString::to_string)),
            generation,
        ),
    }
}

fn join(messages: impl Iterator<Item = String>) -> String {
    let mut all: Vec<String> = Vec::new();
    for m in messages {
        if !all.contains(&m) {
            all.push(m);
        }
    }
    all.join("; ")
}
