//! Whether a status really changed.
//!
//! Two statuses are the same when they are equal once every `lastTransitionTime` is
//! removed: the time a condition last flipped is bookkeeping, and a writer that patched
//! whenever it differed would patch on every pass (its clock moves). Comparison is on the
//! JSON form, the one the API server stores: unset fields are absent on both sides.

use serde::Serialize;
use serde_json::Value;

/// The JSON key of a condition's transition time.
const LAST_TRANSITION_TIME: &str = "lastTransitionTime";

/// `status` as JSON with every `lastTransitionTime` removed, at any depth (Gateway
/// listeners and route parents have conditions of their own). `Null` when it cannot be
/// serialized, which the kopium types never fail to be.
pub fn normalized<S: Serialize>(status: &S) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    strip(&mut value);
    value
}

fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove(LAST_TRANSITION_TIME);
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Whether writing `desired` over `current` would change anything but transition times.
pub fn differs<S: Serialize>(current: Option<&S>, desired: &S) -> bool {
    match current {
        None => true,
        Some(current) => normalized(current) != normalized(desired),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::gateways::{GatewayStatus, GatewayStatusListeners};
    use portico_api::k8s::{Condition, Time};

    fn mk_condition(type_: &str, status: &str, at: &str, generation: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: type_.into(),
            message: String::new(),
            observed_generation: Some(generation),
            last_transition_time: Time(at.parse().unwrap()),
        }
    }

    fn mk_status(at: &str, programmed: &str, generation: i64) -> GatewayStatus {
        GatewayStatus {
            conditions: Some(vec![
                mk_condition("Accepted", "True", at, generation),
                mk_condition("Programmed", programmed, at, generation),
            ]),
            listeners: Some(vec![GatewayStatusListeners {
                name: "http".into(),
                attached_routes: 1,
                conditions: vec![mk_condition("Accepted", "True", at, generation)],
                supported_kinds: None,
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn transition_times_do_not_count() {
        let old = mk_status("2024-01-01T00:00:00Z", "True", 1);
        let new = mk_status("2025-06-01T12:00:00Z", "True", 1);
        assert!(!differs(Some(&old), &new));
        let stripped = normalized(&new);
        assert!(!stripped.to_string().contains(LAST_TRANSITION_TIME));
    }

    #[test]
    fn statuses_generations_and_missing_statuses_count() {
        let old = mk_status("2024-01-01T00:00:00Z", "True", 1);
        assert!(differs(
            Some(&old),
            &mk_status("2024-01-01T00:00:00Z", "False", 1)
        ));
        assert!(differs(
            Some(&old),
            &mk_status("2024-01-01T00:00:00Z", "True", 2)
        ));
        assert!(differs(None, &old));
        let mut more_routes = old.clone();
        if let Some(l) = more_routes.listeners.as_mut() {
            l[0].attached_routes = 2;
        }
        assert!(differs(Some(&old), &more_routes));
    }
}
