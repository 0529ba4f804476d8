//! ListenerSets: listeners contributed to a Gateway by another object, possibly from
//! another namespace.
//!
//! ```text
//! ListenerSet ── parentRef ──> Gateway of ours ── allowedListeners admits its namespace?
//!    │                             no ──> NotAllowed (its listeners stay out)
//!    │                             yes, Gateway not accepted ──> ParentNotAccepted
//!    └── yes ──> its listeners join the Gateway's merged list, after the Gateway's own
//!                and those of ListenerSets of higher precedence, losing any conflict
//!                with them
//! ```
//!
//! Gateway API (ListenerSet): "The parent Gateway must explicitly allow ListenerSet
//! attachment through its AllowedListeners configuration. By default, Gateways do not
//! allow ListenerSet attachment." and "Implementations MUST treat the parent Gateway as
//! having the merged list of all listeners from itself and attached ListenerSets using
//! the following precedence: 1. "parent" Gateway 2. ListenerSet ordered by creation time
//! (oldest first) 3. ListenerSet ordered alphabetically by "{namespace}/{name}"."
//!
//! A ListenerSet whose parentRef is not a Gateway of ours gets no status from us: another
//! controller, or nobody, owns it. Routes attach to a ListenerSet's listeners through a
//! parentRef to the ListenerSet (see [`crate::attach`]).

use portico_api::gateway::ListenerSet;
use portico_api::names::reason;

use crate::conflict;
use crate::gateway::GatewayPlan;
use crate::index::{Index, object_ref};
use crate::listener::{ListenerPlan, Origin};
use crate::status::ObjectRef;

#[derive(Debug)]
pub(crate) struct ListenerSetPlan {
    pub(crate) key: ObjectRef,
    pub(crate) generation: Option<i64>,
    /// Why its listeners are not part of the Gateway: (reason, message).
    pub(crate) rejected: Option<(&'static str, String)>,
    /// Listeners dropped because an earlier one of the set has the same name.
    pub(crate) duplicate_names: Vec<String>,
}

impl ListenerSetPlan {
    pub(crate) fn origin(&self) -> Origin {
        Origin::ListenerSet(self.key.clone())
    }
}

/// Adds every ListenerSet naming `plan`'s Gateway as parent to the plan, in precedence
/// order, merging the listeners of those the Gateway admits.
pub(crate) fn attach_all<'a>(
    index: &Index<'_>,
    plan: &mut GatewayPlan<'a>,
    mut listener_sets: Vec<&'a ListenerSet>,
) {
    // Oldest first; sets without a timestamp (standalone files) after those with one;
    // then namespace/name.
    listener_sets.sort_by(|a, b| {
        let key = |l: &'a ListenerSet| {
            let created = l.metadata.creation_timestamp.as_ref();
            (created.is_none(), created, object_ref(&l.metadata))
        };
        key(a).cmp(&key(b))
    });
    for listener_set in listener_sets {
        let child = attach(index, plan, listener_set);
        plan.listener_sets.push(child);
    }
}

fn attach<'a>(
    index: &Index<'_>,
    plan: &mut GatewayPlan<'a>,
    listener_set: &'a ListenerSet,
) -> ListenerSetPlan {
    let key = object_ref(&listener_set.metadata);
    let mut child = ListenerSetPlan {
        generation: listener_set.metadata.generation,
        rejected: None,
        duplicate_names: Vec::new(),
        key,
    };
    let labels = index.namespace_labels(&child.key.namespace);
    if !plan
        .allowed_listeners
        .allows(&plan.key.namespace, &child.key.namespace, &labels)
    {
        child.rejected = Some((
            reason::NOT_ALLOWED,
            format!(
                "Gateway {} does not allow ListenerSets from namespace {:?} (spec.allowedListeners)",
                plan.key, child.key.namespace
            ),
        ));
        return child;
    }
    if !plan.accepted() {
        child.rejected = Some((
            reason::PARENT_NOT_ACCEPTED,
            format!("Gateway {} is not accepted", plan.key),
        ));
        return child;
    }

    let mut listeners: Vec<ListenerPlan> = Vec::new();
    for spec in &listener_set.spec.listeners {
        if listeners.iter().any(|l| l.section_name == spec.name) {
            child.duplicate_names.push(spec.name.clone());
        } else {
            listeners.push(ListenerPlan::from_listener_set(spec, &child.key));
        }
    }
    conflict::mark_within(&mut listeners);
    conflict::mark_against_earlier(&plan.listeners, &mut listeners);
    plan.listeners.extend(listeners);
    child
}

impl GatewayPlan<'_> {
    /// Whether the ListenerSet is accepted: attached, with at least one valid listener.
    pub(crate) fn listener_set_accepted(&self, child: &ListenerSetPlan) -> bool {
        child.rejected.is_none()
            && self
                .listeners_of(&child.origin())
                .any(ListenerPlan::is_valid)
    }

    /// Gateway API (GatewayStatus attachedListenerSets): "A ListenerSet is successfully
    /// attached to a Gateway when all the following conditions are met: The ListenerSet
    /// is selected by the Gateway's AllowedListeners field; The ListenerSet has a valid
    /// ParentRef selecting the Gateway; The ListenerSet's status has the condition
    /// "Accepted: true"".
    pub(crate) fn attached_listener_sets(&self) -> i32 {
        let count = self
            .listener_sets
            .iter()
            .filter(|c| self.listener_set_accepted(c))
            .count();
        i32::try_from(count).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gateway::plan_gateways;
    use crate::inputs::{Inputs, Options};
    use portico_api::gateway::gatewayclasses::GatewayClassSpec;
    use portico_api::gateway::gateways::{
        GatewayAllowedListeners, GatewayAllowedListenersNamespaces,
        GatewayAllowedListenersNamespacesFrom, GatewayListeners, GatewaySpec,
    };
    use portico_api::gateway::listenersets::{
        ListenerSetListeners, ListenerSetParentRef, ListenerSetSpec,
    };
    use portico_api::gateway::{Gateway, GatewayClass};
    use portico_api::k8s::{Namespace, ObjectMeta, Time};
    use portico_api::names;

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
            ..Default::default()
        }
    }

    fn gateway(from: Option<GatewayAllowedListenersNamespacesFrom>) -> Gateway {
        Gateway {
            metadata: meta(Some("infra"), "gw"),
            spec: GatewaySpec {
                gateway_class_name: "portico".into(),
                listeners: vec![
                    GatewayListeners {
                        name: "gateway-listener".into(),
                        port: 80,
                        protocol: "HTTP".into(),
                        hostname: Some("gateway-listener.com".into()),
                        ..Default::default()
                    },
                    GatewayListeners {
                        name: "conflict-with-gateway".into(),
                        port: 80,
                        protocol: "HTTP".into(),
                        hostname: Some("conflict-with-gateway.com".into()),
                        ..Default::default()
                    },
                ],
                allowed_listeners: Some(GatewayAllowedListeners {
                    namespaces: Some(GatewayAllowedListenersNamespaces {
                        from,
                        selector: None,
                    }),
                }),
                ..Default::default()
            },
            status: None,
        }
    }

    fn listener_set(
        namespace: &str,
        name: &str,
        listeners: &[(&str, &str, Option<&str>)],
    ) -> ListenerSet {
        ListenerSet {
            metadata: meta(Some(namespace), name),
            spec: ListenerSetSpec {
                parent_ref: ListenerSetParentRef {
                    name: "gw".into(),
                    namespace: Some("infra".into()),
                    ..Default::default()
                },
                listeners: listeners
                    .iter()
                    .map(|(name, protocol, hostname)| ListenerSetListeners {
                        name: (*name).into(),
                        port: 80,
                        protocol: (*protocol).into(),
                        hostname: hostname.map(Into::into),
                        ..Default::default()
                    })
                    .collect(),
            },
            status: None,
        }
    }

    fn inputs(gateway: Gateway, listener_sets: Vec<ListenerSet>) -> Inputs {
        Inputs {
            gateway_classes: vec![GatewayClass {
                metadata: meta(None, "portico"),
                spec: GatewayClassSpec {
                    controller_name: names::CONTROLLER_NAME.into(),
                    ..Default::default()
                },
                status: None,
            }],
            gateways: vec![gateway],
            listener_sets,
            namespaces: vec![Namespace {
                metadata: meta(None, "other"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// (listener set, rejected reason, accepted, [(section, conflict reason)])
    type Verdict = (
        String,
        Option<&'static str>,
        bool,
        Vec<(String, Option<&'static str>)>,
    );

    fn verdicts(inputs: &Inputs) -> (i32, Vec<Verdict>) {
        let options = Options::default();
        let index = Index::new(inputs, &options);
        let plans = plan_gateways(&index);
        let plan = &plans[&ObjectRef::new("infra", "gw")];
        let sets = plan
            .listener_sets
            .iter()
            .map(|c| {
                (
                    c.key.to_string(),
                    c.rejected.as_ref().map(|r| r.0),
                    plan.listener_set_accepted(c),
                    plan.listeners_of(&c.origin())
                        .map(|l| {
                            (
                                l.section_name.clone(),
                                l.conflict.as_ref().map(|c| c.reason),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        (plan.attached_listener_sets(), sets)
    }

    #[test]
    fn gateways_allow_no_listener_sets_by_default() {
        let ls = listener_set("infra", "ls", &[("l", "HTTP", Some("ls.com"))]);
        for from in [None, Some(GatewayAllowedListenersNamespacesFrom::None)] {
            let (attached, sets) = verdicts(&inputs(gateway(from), vec![ls.clone()]));
            assert_eq!(attached, 0);
            assert_eq!(
                sets,
                vec![("infra/ls".into(), Some(reason::NOT_ALLOWED), false, vec![])]
            );
        }
        let mut no_allowed = gateway(None);
        no_allowed.spec.allowed_listeners = None;
        let (attached, _) = verdicts(&inputs(no_allowed, vec![ls]));
        assert_eq!(attached, 0);
    }

    #[test]
    fn same_namespace_only() {
        let here = listener_set("infra", "here", &[("l", "HTTP", Some("here.com"))]);
        let there = listener_set("other", "there", &[("l", "HTTP", Some("there.com"))]);
        let (attached, sets) = verdicts(&inputs(
            gateway(Some(GatewayAllowedListenersNamespacesFrom::Same)),
            vec![there, here],
        ));
        assert_eq!(attached, 1);
        assert_eq!(
            sets,
            vec![
                ("infra/here".into(), None, true, vec![("l".into(), None)]),
                (
                    "other/there".into(),
                    Some(reason::NOT_ALLOWED),
                    false,
                    vec![]
                ),
            ]
        );
    }

    /// The upstream ListenerSetHostnameConflict and ListenerSetProtocolConflict layouts:
    /// the Gateway's listeners always win, then the older (here: alphabetically first)
    /// ListenerSet; a set left without a valid listener is not accepted.
    #[test]
    fn precedence_settles_conflicts() {
        let sets = vec![
            listener_set(
                "infra",
                "b-with-listener-set-1",
                &[
                    ("listener-set-2-listener", "HTTP", Some("ls2.com")),
                    (
                        "conflict-with-listener-set",
                        "HTTP",
                        Some("conflict-with-listener-set.com"),
                    ),
                ],
            ),
            listener_set(
                "infra",
                "a-with-gateway-1",
                &[
                    ("listener-set-1-listener", "HTTP", Some("ls1.com")),
                    (
                        "conflict-with-gateway",
                        "HTTP",
                        Some("conflict-with-gateway.com"),
                    ),
                    (
                        "conflict-with-listener-set",
                        "HTTP",
                        Some("conflict-with-listener-set.com"),
                    ),
                ],
            ),
            listener_set("infra", "a-with-gateway-2", &[("tcp", "TCP", None)]),
        ];
        let (attached, got) = verdicts(&inputs(
            gateway(Some(GatewayAllowedListenersNamespacesFrom::All)),
            sets,
        ));
        assert_eq!(
            got,
            vec![
                (
                    "infra/a-with-gateway-1".into(),
                    None,
                    true,
                    vec![
                        ("listener-set-1-listener".into(), None),
                        (
                            "conflict-with-gateway".into(),
                            Some(reason::HOSTNAME_CONFLICT)
                        ),
                        ("conflict-with-listener-set".into(), None),
                    ]
                ),
                (
                    "infra/a-with-gateway-2".into(),
                    None,
                    false,
                    vec![("tcp".into(), Some(reason::PROTOCOL_CONFLICT))]
                ),
                (
                    "infra/b-with-listener-set-1".into(),
                    None,
                    true,
                    vec![
                        ("listener-set-2-listener".into(), None),
                        (
                            "conflict-with-listener-set".into(),
                            Some(reason::HOSTNAME_CONFLICT)
                        ),
                    ]
                ),
            ]
        );
        assert_eq!(attached, 2);
    }

    #[test]
    fn older_listener_sets_come_first() {
        let mut young = listener_set("infra", "a-young", &[("l", "HTTP", Some("same.com"))]);
        young.metadata.creation_timestamp = Some(Time("2025-02-01T00:00:00Z".parse().unwrap()));
        let mut old = listener_set("infra", "b-old", &[("l", "HTTP", Some("same.com"))]);
        old.metadata.creation_timestamp = Some(Time("2025-01-01T00:00:00Z".parse().unwrap()));
        let (_, got) = verdicts(&inputs(
            gateway(Some(GatewayAllowedListenersNamespacesFrom::Same)),
            vec![young, old],
        ));
        assert_eq!(got[0].0, "infra/b-old");
        assert!(got[0].2);
        assert_eq!(got[1].0, "infra/a-young");
        assert!(!got[1].2);
    }

    #[test]
    fn listener_sets_of_a_rejected_gateway() {
        let mut gw = gateway(Some(GatewayAllowedListenersNamespacesFrom::Same));
        for l in &mut gw.spec.listeners {
            l.protocol = "INVALID".into();
        }
        let ls = listener_set("infra", "ls", &[("l", "HTTP", Some("ls.com"))]);
        let (attached, got) = verdicts(&inputs(gw, vec![ls]));
        assert_eq!(attached, 0);
        assert_eq!(got[0].1, Some(reason::PARENT_NOT_ACCEPTED));
    }
}
