//! HTTPRoutes and GRPCRoutes that claim the same hostname on one listener.
//!
//! Gateway API (GRPCRoute and HTTPRoute `spec.hostnames`): "If a Route (A) of type
//! HTTPRoute or GRPCRoute is attached to a Listener and that listener already has another
//! Route (B) of the other type attached and the intersection of the hostnames of A and B
//! is non-empty, then the implementation MUST accept exactly one of these two routes,
//! determined by the following criteria, in order:
//!
//! * The oldest Route based on creation timestamp.
//! * The Route appearing first in alphabetical order by "{namespace}/{name}".
//!
//! The rejected Route MUST raise an 'Accepted' condition with a status of 'False' in the
//! corresponding RouteParentStatus."
//!
//! ```text
//! for each listener: HTTPRoute attachments × GRPCRoute attachments
//!   hostnames intersect? ─> the newer route loses that attachment
//! a parentRef of the loser left with no attachment on its Gateway ─> Accepted=False
//! ```
//!
//! The Gateway API names no reason for this; Portico reports NotAllowedByListeners (the
//! listener does not take the route, because of the other one) with a message naming
//! the winner.

use std::cmp::Ordering;

use portico_api::names::{self, condition, kind, reason};

use crate::attach::Attachment;
use crate::hostname;
use crate::index::Index;
use crate::route::CompiledRoute;
use crate::status::{Condition, ConditionStatus, ObjectRef, RouteStatus};

/// A compiled route, its status (if any parentRef is ours) and its attachments.
pub(crate) type Attached = (
    std::sync::Arc<CompiledRoute>,
    Option<RouteStatus>,
    Vec<Attachment>,
);

/// Whether `a` was there first: the older one, then the first by "{namespace}/{name}".
fn older(a: &CompiledRoute, b: &CompiledRoute) -> bool {
    let by_time = match (&a.created, &b.created) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_time
        .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
        .is_lt()
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| {
        let listener = Some(x.as_str()).filter(|x| !x.is_empty());
        let other: Vec<String> = b.iter().filter(|y| !y.is_empty()).cloned().collect();
        !hostname::intersect(listener, &other).is_empty()
    })
}

pub(crate) fn settle(index: &Index<'_>, routes: &mut [Attached]) {
    // (route index, attachment index, winner) of every attachment that loses.
    let mut lost: Vec<(usize, usize, ObjectRef)> = Vec::new();
    // Only HTTPRoute × GRPCRoute pairs can conflict: list the GRPCRoutes once, so that
    // thousands of HTTPRoutes and no GRPCRoute cost one pass, not a square.
    let grpc: Vec<usize> = (0..routes.len())
        .filter(|&j| routes[j].0.kind == kind::GRPC_ROUTE)
        .collect();
    if grpc.is_empty() {
        return;
    }
    for (i, (a, _, a_attached)) in routes.iter().enumerate() {
        if a.kind != kind::HTTP_ROUTE {
            continue;
        }
        for &j in &grpc {
            let (b, _, b_attached) = &routes[j];
            for (x, at_a) in a_attached.iter().enumerate() {
                for (y, at_b) in b_attached.iter().enumerate() {
                    if at_a.gateway != at_b.gateway
                        || at_a.listener != at_b.listener
                        || !overlaps(&at_a.hostnames, &at_b.hostnames)
                    {
                        continue;
                    }
                    if older(a, b) {
                        lost.push((j, y, a.key.clone()));
                    } else {
                        lost.push((i, x, b.key.clone()));
                    }
                }
            }
        }
    }
    if lost.is_empty() {
        return;
    }
    lost.sort_by_key(|l| (l.0, l.1));
    lost.dedup_by(|p, q| (p.0, p.1) == (q.0, q.1));

    for (i, (route, status, attachments)) in routes.iter_mut().enumerate() {
        let losing: Vec<&(usize, usize, ObjectRef)> = lost.iter().filter(|l| l.0 == i).collect();
        if losing.is_empty() {
            continue;
        }
        let gone: Vec<(Attachment, ObjectRef)> = losing
            .iter()
            .filter_map(|(_, x, winner)| Some((attachments.get(*x)?.clone(), winner.clone())))
            .collect();
        let mut x = 0;
        attachments.retain(|_| {
            x += 1;
            !losing.iter().any(|l| l.1 == x - 1)
        });
        let Some(status) = status else {
            continue;
        };
        for parent in &mut status.parents {
            let Some(gateway) = parent_gateway(index, &route.key, &parent.parent_ref) else {
                continue;
            };
            let Some((_, winner)) = gone.iter().find(|(a, _)| a.gateway == gateway) else {
                continue;
            };
            if attachments.iter().any(|a| a.gateway == gateway) {
                continue;
            }
            for c in &mut parent.conditions {
                if c.type_ == condition::ACCEPTED && c.status == ConditionStatus::True {
                    *c = Condition::new(
                        condition::ACCEPTED,
                        false,
                        reason::NOT_ALLOWED_BY_LISTENERS,
                        format!(
                            "the listener(s) already take {} {winner} for an intersecting hostname; an HTTPRoute and a GRPCRoute cannot share a hostname on a listener",
                            other_kind(route.kind)
                        ),
                        route.generation,
                    );
                }
            }
        }
    }
}

fn other_kind(k: &str) -> &'static str {
    if k == kind::HTTP_ROUTE {
        kind::GRPC_ROUTE
    } else {
        kind::HTTP_ROUTE
    }
}

/// The Gateway a parentRef (as the status echoes it) leads to: the Gateway itself or the
/// parent of a ListenerSet.
fn parent_gateway(
    index: &Index<'_>,
    route: &ObjectRef,
    parent_ref: &crate::status::ParentReference,
) -> Option<ObjectRef> {
    let key = ObjectRef::new(
        parent_ref
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(&route.namespace),
        parent_ref.name.clone(),
    );
    if parent_ref.group.as_deref() != Some(names::GATEWAY_API_GROUP) {
        return None;
    }
    match parent_ref.kind.as_deref() {
        Some(kind::GATEWAY) => Some(key),
        Some(kind::LISTENER_SET) => index
            .listener_sets
            .get(&key)
            .and_then(|ls| index.listener_set_parent(ls)),
        _ => None,
    }
}
