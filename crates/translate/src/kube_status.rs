//! Conversion of the desired statuses into the kopium status types, for a status writer.
//!
//! The writer supplies the clock (`now`) and the status currently on the object. Following
//! the Kubernetes condition convention, `lastTransitionTime` only moves when a condition's
//! status changes: an unchanged condition keeps the time it already had, so rewriting the
//! same status is a no-op patch.

use portico_api::gateway::{
    backendtlspolicies, gatewayclasses, gateways, httproutes, listenersets,
};
use portico_api::k8s::{self, Time};

use crate::status::{
    Condition, GatewayClassStatus, GatewayStatus, HttpRouteStatus, ListenerSetStatus,
    ListenerStatus, PolicyStatus, RouteGroupKind,
};

impl Condition {
    /// This condition with a `lastTransitionTime`: the one of the same type in `previous`
    /// if its status is unchanged, else `now`.
    pub fn to_kube(&self, now: &Time, previous: &[k8s::Condition]) -> k8s::Condition {
        let last_transition_time = previous
            .iter()
            .find(|p| p.type_ == self.type_ && p.status == self.status.as_str())
            .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
        k8s::Condition {
            last_transition_time,
            message: self.message.clone(),
            observed_generation: self.observed_generation,
            reason: self.reason.clone(),
            status: self.status.as_str().to_owned(),
            type_: self.type_.clone(),
        }
    }
}

fn conditions(
    desired: &[Condition],
    now: &Time,
    previous: &[k8s::Condition],
) -> Vec<k8s::Condition> {
    desired.iter().map(|c| c.to_kube(now, previous)).collect()
}

impl GatewayClassStatus {
    /// The full status to write.
    pub fn to_kube(
        &self,
        now: &Time,
        previous: Option<&gatewayclasses::GatewayClassStatus>,
    ) -> gatewayclasses::GatewayClassStatus {
        let old = previous
            .and_then(|p| p.conditions.as_deref())
            .unwrap_or_default();
        gatewayclasses::GatewayClassStatus {
            conditions: Some(conditions(&self.conditions, now, old)),
            supported_features: Some(
                self.supported_features
                    .iter()
                    .map(|name| gatewayclasses::GatewayClassStatusSupportedFeatures {
                        name: name.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

impl GatewayStatus {
    /// The full status to write.
    pub fn to_kube(
        &self,
        now: &Time,
        previous: Option<&gateways::GatewayStatus>,
    ) -> gateways::GatewayStatus {
        let old = previous
            .and_then(|p| p.conditions.as_deref())
            .unwrap_or_default();
        let old_listeners = previous
            .and_then(|p| p.listeners.as_deref())
            .unwrap_or_default();
        gateways::GatewayStatus {
            addresses: Some(
                self.addresses
                    .iter()
                    .map(|a| gateways::GatewayStatusAddresses {
                        r#type: Some(a.type_.clone()),
                        value: a.value.clone(),
                    })
                    .collect(),
            ),
            attached_listener_sets: self.attached_listener_sets,
            conditions: Some(conditions(&self.conditions, now, old)),
            listeners: Some(
                self.listeners
                    .iter()
                    .map(|l| {
                        let old = old_listeners
                            .iter()
                            .find(|o| o.name == l.name)
                            .map(|o| o.conditions.as_slice())
                            .unwrap_or_default();
                        let (conditions, supported_kinds) = listener_parts(l, now, old);
                        gateways::GatewayStatusListeners {
                            attached_routes: l.attached_routes,
                            conditions,
                            name: l.name.clone(),
                            supported_kinds: Some(
                                supported_kinds
                                    .map(|k| gateways::GatewayStatusListenersSupportedKinds {
                                        group: Some(k.group.clone()),
                                        kind: k.kind.clone(),
                                    })
                                    .collect(),
                            ),
                        }
                    })
                    .collect(),
            ),
        }
    }
}

/// A listener's conditions (with transition times) and its supported kinds.
fn listener_parts<'l>(
    listener: &'l ListenerStatus,
    now: &Time,
    previous: &[k8s::Condition],
) -> (
    Vec<k8s::Condition>,
    impl Iterator<Item = &'l RouteGroupKind> + 'l,
) {
    (
        conditions(&listener.conditions, now, previous),
        listener.supported_kinds.iter(),
    )
}

impl ListenerSetStatus {
    /// The full status to write.
    pub fn to_kube(
        &self,
        now: &Time,
        previous: Option<&listenersets::ListenerSetStatus>,
    ) -> listenersets::ListenerSetStatus {
        let old = previous
            .and_then(|p| p.conditions.as_deref())
            .unwrap_or_default();
        let old_listeners = previous
            .and_then(|p| p.listeners.as_deref())
            .unwrap_or_default();
        listenersets::ListenerSetStatus {
            conditions: Some(conditions(&self.conditions, now, old)),
            listeners: Some(
                self.listeners
                    .iter()
                    .map(|l| {
                        let old = old_listeners
                            .iter()
                            .find(|o| o.name == l.name)
                            .map(|o| o.conditions.as_slice())
                            .unwrap_or_default();
                        let (conditions, supported_kinds) = listener_parts(l, now, old);
                        listenersets::ListenerSetStatusListeners {
                            attached_routes: l.attached_routes,
                            conditions,
                            name: l.name.clone(),
                            supported_kinds: Some(
                                supported_kinds
                                    .map(|k| {
                                        listenersets::ListenerSetStatusListenersSupportedKinds {
                                            group: Some(k.group.clone()),
                                            kind: k.kind.clone(),
                                        }
                                    })
                                    .collect(),
                            ),
                        }
                    })
                    .collect(),
            ),
        }
    }
}

impl HttpRouteStatus {
    /// The full status to write: the parent entries of other controllers in `previous`
    /// are kept, the ones of `controller_name` are replaced by these. Calling it on an
    /// empty `HttpRouteStatus` removes our entries from a route we no longer handle.
    pub fn to_kube(
        &self,
        controller_name: &str,
        now: &Time,
        previous: Option<&httproutes::HttpRouteStatus>,
    ) -> httproutes::HttpRouteStatus {
        let old = previous.map(|p| p.parents.as_slice()).unwrap_or_default();
        let mut parents: Vec<httproutes::HttpRouteStatusParents> = old
            .iter()
            .filter(|p| p.controller_name != controller_name)
            .cloned()
            .collect();
        for parent in &self.parents {
            let parent_ref = httproutes::HttpRouteStatusParentsParentRef {
                group: parent.parent_ref.group.clone(),
                kind: parent.parent_ref.kind.clone(),
                name: parent.parent_ref.name.clone(),
                namespace: parent.parent_ref.namespace.clone(),
                port: parent.parent_ref.port,
                section_name: parent.parent_ref.section_name.clone(),
            };
            let old_conditions = old
                .iter()
                .find(|p| p.controller_name == parent.controller_name && p.parent_ref == parent_ref)
                .map(|p| p.conditions.as_slice())
                .unwrap_or_default();
            parents.push(httproutes::HttpRouteStatusParents {
                conditions: conditions(&parent.conditions, now, old_conditions),
                controller_name: parent.controller_name.clone(),
                parent_ref,
            });
        }
        httproutes::HttpRouteStatus { parents }
    }
}

impl PolicyStatus {
    /// The full BackendTLSPolicy status to write: ancestors of other controllers in
    /// `previous` are kept, ours replaced by these. An empty `PolicyStatus` removes our
    /// ancestors from a policy no Gateway of ours uses any more.
    pub fn to_kube(
        &self,
        controller_name: &str,
        now: &Time,
        previous: Option<&backendtlspolicies::BackendTlsPolicyStatus>,
    ) -> backendtlspolicies::BackendTlsPolicyStatus {
        let old = previous.map(|p| p.ancestors.as_slice()).unwrap_or_default();
        let mut ancestors: Vec<backendtlspolicies::BackendTlsPolicyStatusAncestors> = old
            .iter()
            .filter(|a| a.controller_name != controller_name)
            .cloned()
            .collect();
        for ancestor in &self.ancestors {
            let r = &ancestor.ancestor_ref;
            let ancestor_ref = backendtlspolicies::BackendTlsPolicyStatusAncestorsAncestorRef {
                group: r.group.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                namespace: r.namespace.clone(),
                port: r.port,
                section_name: r.section_name.clone(),
            };
            let old_conditions = old
                .iter()
                .find(|a| {
                    a.controller_name == ancestor.controller_name && a.ancestor_ref == ancestor_ref
                })
                .map(|a| a.conditions.as_slice())
                .unwrap_or_default();
            ancestors.push(backendtlspolicies::BackendTlsPolicyStatusAncestors {
                ancestor_ref,
                conditions: conditions(&ancestor.conditions, now, old_conditions),
                controller_name: ancestor.controller_name.clone(),
            });
        }
        backendtlspolicies::BackendTlsPolicyStatus { ancestors }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::status::{ConditionStatus, ParentReference, RouteParentStatus};

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn accepted(status: bool) -> Condition {
        Condition::new("Accepted", status, "Accepted", "m", Some(2))
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let then = at("2024-01-01T00:00:00Z");
        let now = at("2024-02-01T00:00:00Z");
        let first = accepted(true).to_kube(&then, &[]);
        assert_eq!(first.last_transition_time, then);
        assert_eq!(first.status, "True");
        assert_eq!(first.observed_generation, Some(2));

        let same = accepted(true).to_kube(&now, std::slice::from_ref(&first));
        assert_eq!(same.last_transition_time, then);

        let flipped = accepted(false).to_kube(&now, &[first]);
        assert_eq!(flipped.last_transition_time, now);
        assert_eq!(flipped.status, ConditionStatus::False.as_str());
    }

    #[test]
    fn route_status_keeps_other_controllers_parents() {
        let now = at("2024-02-01T00:00:00Z");
        let foreign = httproutes::HttpRouteStatusParents {
            conditions: vec![],
            controller_name: "example.com/other".into(),
            parent_ref: httproutes::HttpRouteStatusParentsParentRef {
                name: "theirs".into(),
                ..Default::default()
            },
        };
        let stale_ours = httproutes::HttpRouteStatusParents {
            controller_name: "portico.dev/gateway-controller".into(),
            ..foreign.clone()
        };
        let previous = httproutes::HttpRouteStatus {
            parents: vec![foreign.clone(), stale_ours],
        };
        let desired = HttpRouteStatus {
            parents: vec![RouteParentStatus {
                parent_ref: ParentReference {
                    name: "ours".into(),
                    ..Default::default()
                },
                controller_name: "portico.dev/gateway-controller".into(),
                conditions: vec![accepted(true)],
            }],
        };
        let got = desired.to_kube("portico.dev/gateway-controller", &now, Some(&previous));
        assert_eq!(got.parents.len(), 2);
        assert_eq!(got.parents[0], foreign);
        assert_eq!(got.parents[1].parent_ref.name, "ours");

        let cleared = HttpRouteStatus::default().to_kube(
            "portico.dev/gateway-controller",
            &now,
            Some(&previous),
        );
        assert_eq!(cleared.parents, vec![foreign]);
    }

    #[test]
    fn class_status_publishes_supported_features() {
        let now = at("2024-02-01T00:00:00Z");
        let desired = GatewayClassStatus {
            conditions: vec![accepted(true)],
            supported_features: vec!["Gateway".into(), "HTTPRoute".into()],
        };
        let previous = gatewayclasses::GatewayClassStatus {
            conditions: None,
            supported_features: Some(vec![gatewayclasses::GatewayClassStatusSupportedFeatures {
                name: "Stale".into(),
            }]),
        };
        let got = desired.to_kube(&now, Some(&previous));
        let names: Vec<String> = got
            .supported_features
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["Gateway", "HTTPRoute"]);
    }

    #[test]
    fn listener_set_status_keeps_listener_transition_times() {
        let then = at("2024-01-01T00:00:00Z");
        let now = at("2024-02-01T00:00:00Z");
        let desired = ListenerSetStatus {
            conditions: vec![accepted(true)],
            listeners: vec![ListenerStatus {
                name: "l".into(),
                supported_kinds: vec![RouteGroupKind {
                    group: "gateway.networking.k8s.io".into(),
                    kind: "HTTPRoute".into(),
                }],
                attached_routes: 2,
                conditions: vec![accepted(true)],
            }],
        };
        let first = desired.to_kube(&then, None);
        let again = desired.to_kube(&now, Some(&first));
        assert_eq!(again, first);
        let listener = &again.listeners.as_deref().unwrap_or_default()[0];
        assert_eq!(listener.attached_routes, 2);
        assert_eq!(listener.conditions[0].last_transition_time, then);
        assert_eq!(
            listener.supported_kinds.as_deref().unwrap_or_default()[0].kind,
            "HTTPRoute"
        );
    }

    #[test]
    fn gateway_status_reports_attached_listener_sets() {
        let now = at("2024-02-01T00:00:00Z");
        let desired = GatewayStatus {
            attached_listener_sets: Some(2),
            ..Default::default()
        };
        assert_eq!(desired.to_kube(&now, None).attached_listener_sets, Some(2));
        let none = GatewayStatus::default().to_kube(
            &now,
            Some(&gateways::GatewayStatus {
                attached_listener_sets: Some(5),
                ..Default::default()
            }),
        );
        assert_eq!(none.attached_listener_sets, None);
    }
}
