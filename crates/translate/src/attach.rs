//! Which listeners a route attaches to, and its status per parentRef.
//!
//! For each parentRef to a Gateway of ours, listeners are narrowed in three steps, and
//! the first step that leaves none gives the `Accepted=False` reason:
//!
//! ```text
//! Gateway listeners
//!   └─ sectionName / port match the parentRef ......... else NoMatchingParent
//!      └─ allowedRoutes admits the kind and namespace . else NotAllowedByListeners
//!         └─ hostnames intersect ...................... else NoMatchingListenerHostname
//!            = the listeners the route attaches to (with the hostnames it answers there)
//! ```
//!
//! Gateway API (ParentReference sectionName): "When unspecified (empty string), this will
//! reference the entire resource. For the purpose of status, an attachment is considered
//! successful if at least one section in the parent resource accepts it." and (port):
//! "When both Port and SectionName are specified, the name and port of the selected
//! listener must match both specified values."
//!
//! A parentRef to something that is not a Gateway of one of our GatewayClasses gets no
//! status entry: another controller owns it.

use std::collections::BTreeMap;

use portico_api::gateway::httproutes::HttpRouteParentRefs;
use portico_api::names::{self, condition, kind, reason};

use crate::gateway::GatewayPlan;
use crate::hostname;
use crate::index::Index;
use crate::route::CompiledRoute;
use crate::status::{Condition, HttpRouteStatus, ObjectRef, ParentReference, RouteParentStatus};

/// A route attached to one Gateway listener, answering for `hostnames` there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attachment {
    pub(crate) gateway: ObjectRef,
    pub(crate) listener: String,
    pub(crate) hostnames: Vec<String>,
}

/// The route's parent statuses (`None` if no parentRef is ours) and its attachments.
pub(crate) fn attach(
    index: &Index<'_>,
    plans: &BTreeMap<ObjectRef, GatewayPlan<'_>>,
    route: &CompiledRoute<'_>,
) -> (Option<HttpRouteStatus>, Vec<Attachment>) {
    let generation = route.route.metadata.generation;
    let resolved_refs = resolved_refs(route, generation);
    let mut parents: Vec<RouteParentStatus> = Vec::new();
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut seen: Vec<&HttpRouteParentRefs> = Vec::new();

    for parent_ref in route.route.spec.parent_refs.iter().flatten() {
        if seen.contains(&parent_ref) {
            continue;
        }
        seen.push(parent_ref);
        let group = parent_ref
            .group
            .as_deref()
            .unwrap_or(names::GATEWAY_API_GROUP);
        let parent_kind = parent_ref.kind.as_deref().unwrap_or(kind::GATEWAY);
        if group != names::GATEWAY_API_GROUP || parent_kind != kind::GATEWAY {
            continue;
        }
        let gateway_key = ObjectRef::new(
            parent_ref
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(&route.key.namespace),
            parent_ref.name.clone(),
        );
        let Some(plan) = plans.get(&gateway_key) else {
            continue;
        };

        let (accepted, found) = match (
            attach_to_gateway(index, plan, route, parent_ref),
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
                            .map(|a| a.listener.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    generation,
                ),
                found,
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
            parent_ref: ParentReference {
                group: parent_ref.group.clone(),
                kind: parent_ref.kind.clone(),
                namespace: parent_ref.namespace.clone(),
                name: parent_ref.name.clone(),
                section_name: parent_ref.section_name.clone(),
                port: parent_ref.port,
            },
            controller_name: index.options.controller_name.clone(),
            conditions: vec![accepted, resolved_refs.clone()],
        });
    }
    let status = (!parents.is_empty()).then_some(HttpRouteStatus { parents });
    (status, attachments)
}

fn attach_to_gateway(
    index: &Index<'_>,
    plan: &GatewayPlan<'_>,
    route: &CompiledRoute<'_>,
    parent_ref: &HttpRouteParentRefs,
) -> Result<Vec<Attachment>, (&'static str, String)> {
    let section = parent_ref.section_name.as_deref().filter(|s| !s.is_empty());
    let selected: Vec<_> = plan
        .listeners
        .iter()
        .filter(|l| section.is_none_or(|s| s == l.name))
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
                "Gateway {} has no listener with {}",
                plan.key,
                wanted.join(" and ")
            ),
        ));
    }

    let of_kind: Vec<_> = selected
        .into_iter()
        .filter(|l| l.allows_kind(names::GATEWAY_API_GROUP, kind::HTTP_ROUTE))
        .collect();
    if of_kind.is_empty() {
        return Err((
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no matching listener of Gateway {} allows kind {}",
                plan.key,
                kind::HTTP_ROUTE
            ),
        ));
    }
    let labels = index.namespace_labels(&route.key.namespace);
    let allowed: Vec<_> = of_kind
        .into_iter()
        .filter(|l| {
            l.allowed_namespaces
                .allows(&plan.key.namespace, &route.key.namespace, &labels)
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no matching listener of Gateway {} allows routes from namespace {:?}",
                plan.key, route.key.namespace
            ),
        ));
    }

    let found: Vec<Attachment> = allowed
        .into_iter()
        .filter_map(|l| {
            let hostnames = hostname::intersect(l.hostname.as_deref(), &route.hostnames);
            (!hostnames.is_empty()).then(|| Attachment {
                gateway: plan.key.clone(),
                listener: l.name.clone(),
                hostnames,
            })
        })
        .collect();
    if found.is_empty() {
        return Err((
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no hostname of the route intersects the hostnames of the matching listeners of Gateway {}",
                plan.key
            ),
        ));
    }
    Ok(found)
}

/// The route's ResolvedRefs condition: the same for every parent, as backends do not
/// depend on where the route attaches.
fn resolved_refs(route: &CompiledRoute<'_>, generation: Option<i64>) -> Condition {
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
