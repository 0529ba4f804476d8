//! Statuses as one line each: what a user of `kubectl get gateway,httproute` would read,
//! with the reason of every condition that is not True.

use portico_api::names::condition;
use portico_translate::{Condition, ConditionStatus, ParentReference, Statuses};

/// Appends one line per Gateway and one per (route, parent) to `gateways` and `routes`.
pub(crate) fn describe(statuses: &Statuses, gateways: &mut Vec<String>, routes: &mut Vec<String>) {
    for (key, gateway) in &statuses.gateways {
        let addresses: Vec<&str> = gateway.addresses.iter().map(|a| a.value.as_str()).collect();
        let listeners: Vec<String> = gateway
            .listeners
            .iter()
            .map(|l| {
                let problems = problems(&l.conditions);
                let routes = match l.attached_routes {
                    1 => "1 route".to_owned(),
                    n => format!("{n} routes"),
                };
                if problems.is_empty() {
                    format!("{} ({routes})", l.name)
                } else {
                    format!("{} ({routes}; {problems})", l.name)
                }
            })
            .collect();
        gateways.push(format!(
            "{mark} Gateway {key} [{addresses}] {verdict}; listeners: {listeners}",
            mark = mark(&gateway.conditions),
            addresses = addresses.join(", "),
            verdict = verdict(&gateway.conditions),
            listeners = listeners.join(", "),
        ));
    }
    for (key, route) in &statuses.http_routes {
        for parent in &route.parents {
            routes.push(format!(
                "{mark} HTTPRoute {key} -> {parent}: {verdict}",
                mark = mark(&parent.conditions),
                parent = parent_name(&parent.parent_ref, &key.namespace),
                verdict = verdict(&parent.conditions),
            ));
        }
    }
}

/// "ok" when every condition holds as it should, "!!" otherwise.
fn mark(conditions: &[Condition]) -> &'static str {
    if conditions.iter().all(healthy) {
        "ok"
    } else {
        "!!"
    }
}

/// `Conflicted` is the one condition whose healthy value is False.
fn healthy(c: &Condition) -> bool {
    let want = if c.type_ == condition::CONFLICTED {
        ConditionStatus::False
    } else {
        ConditionStatus::True
    };
    c.status == want
}

/// "Accepted, ResolvedRefs" when all is well, else the failing conditions with reasons.
fn verdict(conditions: &[Condition]) -> String {
    let problems = problems(conditions);
    if problems.is_empty() {
        conditions
            .iter()
            .filter(|c| c.type_ != condition::CONFLICTED)
            .map(|c| c.type_.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        problems
    }
}

fn problems(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .filter(|c| !healthy(c))
        .map(|c| {
            format!(
                "{}={} {}: {}",
                c.type_,
                c.status.as_str(),
                c.reason,
                c.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parent_name(parent: &ParentReference, route_namespace: &str) -> String {
    let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
    let mut name = format!("Gateway {namespace}/{}", parent.name);
    if let Some(section) = &parent.section_name {
        name.push_str(&format!(" section {section}"));
    }
    if let Some(port) = parent.port {
        name.push_str(&format!(" port {port}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::names::reason;

    fn cond(type_: &str, status: ConditionStatus, reason: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: "msg".to_owned(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn healthy_conditions_are_listed_by_type() {
        let conditions = [
            cond(condition::ACCEPTED, ConditionStatus::True, reason::ACCEPTED),
            cond(
                condition::RESOLVED_REFS,
                ConditionStatus::True,
                reason::RESOLVED_REFS,
            ),
        ];
        assert_eq!(mark(&conditions), "ok");
        assert_eq!(verdict(&conditions), "Accepted, ResolvedRefs");
    }

    #[test]
    fn failing_conditions_carry_their_reason() {
        let conditions = [
            cond(condition::ACCEPTED, ConditionStatus::True, reason::ACCEPTED),
            cond(
                condition::RESOLVED_REFS,
                ConditionStatus::False,
                reason::BACKEND_NOT_FOUND,
            ),
        ];
        assert_eq!(mark(&conditions), "!!");
        assert_eq!(
            verdict(&conditions),
            "ResolvedRefs=False BackendNotFound: msg"
        );
    }

    #[test]
    fn conflicted_false_is_healthy() {
        let conditions = [cond(
            condition::CONFLICTED,
            ConditionStatus::False,
            reason::NO_CONFLICTS,
        )];
        assert_eq!(mark(&conditions), "ok");
    }
}
