//! Which namespaces may attach routes to a listener (`allowedRoutes.namespaces`), and
//! which may attach ListenerSets to a Gateway (`allowedListeners.namespaces`).
//!
//! Gateway API (allowedRoutes): "From indicates where Routes will be selected for this
//! Gateway. [...] All: Routes in all namespaces may be used by this Gateway. Selector:
//! Routes in namespaces selected by the selector may be used by this Gateway. Same: Only
//! Routes in the same namespace may be used by this Gateway." `from` defaults to `Same`.
//!
//! Gateway API (allowedListeners): "From indicates where ListenerSets can attach to this
//! Gateway. [...] None: Only listeners defined in the Gateway's spec are allowed. The
//! default value None".
//!
//! The selector is a Kubernetes label selector evaluated against the namespace's labels,
//! with the usual semantics: requirements are ANDed, an empty selector selects
//! everything, a missing one (with `from: Selector`) selects nothing.

use std::collections::BTreeMap;

use portico_api::gateway::gateways::{
    GatewayAllowedListeners, GatewayAllowedListenersNamespacesFrom,
    GatewayListenersAllowedRoutesNamespaces, GatewayListenersAllowedRoutesNamespacesFrom,
};
use portico_api::gateway::listenersets::{
    ListenerSetListenersAllowedRoutesNamespaces, ListenerSetListenersAllowedRoutesNamespacesFrom,
};

/// A namespace policy, resolved from the spec with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AllowedNamespaces {
    /// Nothing may attach (`allowedListeners` only).
    None,
    Same,
    All,
    /// `None` when `from: Selector` came without a selector: nothing is selected.
    Selector(Option<LabelSelector>),
}

/// The kopium types of the three selectors (Gateway listener, ListenerSet listener,
/// Gateway allowedListeners) are distinct structs of the same shape.
macro_rules! label_selector_from {
    ($selector:expr) => {
        $selector.map(|s| LabelSelector {
            match_labels: s.match_labels.clone().unwrap_or_default(),
            expressions: s
                .match_expressions
                .iter()
                .flatten()
                .map(|e| Requirement {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                    values: e.values.clone().unwrap_or_default(),
                })
                .collect(),
        })
    };
}

impl AllowedNamespaces {
    /// A Gateway listener's `allowedRoutes.namespaces`.
    pub(crate) fn from_spec(spec: Option<&GatewayListenersAllowedRoutesNamespaces>) -> Self {
        use GatewayListenersAllowedRoutesNamespacesFrom as From;
        match spec.and_then(|n| n.from.as_ref()) {
            None | Some(From::Same) => Self::Same,
            Some(From::All) => Self::All,
            Some(From::Selector) => {
                Self::Selector(label_selector_from!(spec.and_then(|n| n.selector.as_ref())))
            }
        }
    }

    /// A ListenerSet listener's `allowedRoutes.namespaces`; `Same` is the ListenerSet's
    /// namespace.
    pub(crate) fn from_listener_set_spec(
        spec: Option<&ListenerSetListenersAllowedRoutesNamespaces>,
    ) -> Self {
        use ListenerSetListenersAllowedRoutesNamespacesFrom as From;
        match spec.and_then(|n| n.from.as_ref()) {
            None | Some(From::Same) => Self::Same,
            Some(From::All) => Self::All,
            Some(From::Selector) => {
                Self::Selector(label_selector_from!(spec.and_then(|n| n.selector.as_ref())))
            }
        }
    }

    /// A Gateway's `allowedListeners`: which ListenerSets may attach to it.
    pub(crate) fn from_allowed_listeners(spec: Option<&GatewayAllowedListeners>) -> Self {
        use GatewayAllowedListenersNamespacesFrom as From;
        let namespaces = spec.and_then(|a| a.namespaces.as_ref());
        match namespaces.and_then(|n| n.from.as_ref()) {
            None | Some(From::None) => Self::None,
            Some(From::Same) => Self::Same,
            Some(From::All) => Self::All,
            Some(From::Selector) => Self::Selector(label_selector_from!(
                namespaces.and_then(|n| n.selector.as_ref())
            )),
        }
    }

    /// Whether an object in `namespace` (whose labels are `labels`) may attach to one in
    /// `owner_ns` (the Gateway, or the ListenerSet that declares the listener).
    pub(crate) fn allows(
        &self,
        owner_ns: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        match self {
            Self::None => false,
            Self::Same => owner_ns == namespace,
            Self::All => true,
            Self::Selector(None) => false,
            Self::Selector(Some(selector)) => selector.matches(labels),
        }
    }
}

/// A label selector: `matchLabels` plus `matchExpressions`, all ANDed.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct LabelSelector {
    pub(crate) match_labels: BTreeMap<String, String>,
    pub(crate) expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Requirement {
    pub(crate) key: String,
    pub(crate) operator: String,
    pub(crate) values: Vec<String>,
}

impl LabelSelector {
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !self.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // The API server rejects other operators; from an unvalidated file an unknown
            // operator selects nothing, which fails closed.
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::gateway::gateways::GatewayListenersAllowedRoutesNamespacesSelector;
    use portico_api::gateway::gateways::GatewayListenersAllowedRoutesNamespacesSelectorMatchExpressions as Expr;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> Expr {
        Expr {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector_policy(match_labels: &[(&str, &str)], exprs: Vec<Expr>) -> AllowedNamespaces {
        AllowedNamespaces::from_spec(Some(&GatewayListenersAllowedRoutesNamespaces {
            from: Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector),
            selector: Some(GatewayListenersAllowedRoutesNamespacesSelector {
                match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
                match_expressions: (!exprs.is_empty()).then_some(exprs),
            }),
        }))
    }

    #[test]
    fn allowed_routes_table() {
        let name = "kubernetes.io/metadata.name";
        let shared = selector_policy(
            &[],
            vec![expr(name, "In", &["observability", "flux-system"])],
        );
        // (what, policy, route namespace, its labels, allowed?)
        type Case<'a> = (
            &'a str,
            AllowedNamespaces,
            &'a str,
            BTreeMap<String, String>,
            bool,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "default is Same (same ns)",
                AllowedNamespaces::from_spec(None),
                "echo",
                labels(&[]),
                true,
            ),
            (
                "default is Same (other ns)",
                AllowedNamespaces::from_spec(None),
                "other",
                labels(&[]),
                false,
            ),
            ("All", AllowedNamespaces::All, "other", labels(&[]), true),
            (
                "In selects",
                shared.clone(),
                "observability",
                labels(&[(name, "observability")]),
                true,
            ),
            (
                "In selects 2",
                shared.clone(),
                "flux-system",
                labels(&[(name, "flux-system")]),
                true,
            ),
            (
                "In rejects",
                shared.clone(),
                "other",
                labels(&[(name, "other")]),
                false,
            ),
            (
                "NotIn",
                selector_policy(&[], vec![expr("env", "NotIn", &["prod"])]),
                "dev",
                labels(&[("env", "dev")]),
                true,
            ),
            (
                "NotIn matches a missing key",
                selector_policy(&[], vec![expr("env", "NotIn", &["prod"])]),
                "dev",
                labels(&[]),
                true,
            ),
            (
                "NotIn rejects",
                selector_policy(&[], vec![expr("env", "NotIn", &["prod"])]),
                "prod",
                labels(&[("env", "prod")]),
                false,
            ),
            (
                "Exists",
                selector_policy(&[], vec![expr("team", "Exists", &[])]),
                "a",
                labels(&[("team", "x")]),
                true,
            ),
            (
                "Exists rejects",
                selector_policy(&[], vec![expr("team", "Exists", &[])]),
                "a",
                labels(&[]),
                false,
            ),
            (
                "DoesNotExist",
                selector_policy(&[], vec![expr("team", "DoesNotExist", &[])]),
                "a",
                labels(&[]),
                true,
            ),
            (
                "matchLabels and expressions are ANDed",
                selector_policy(&[("env", "dev")], vec![expr("team", "Exists", &[])]),
                "a",
                labels(&[("env", "dev")]),
                false,
            ),
            (
                "matchLabels",
                selector_policy(&[("env", "dev")], vec![]),
                "a",
                labels(&[("env", "dev"), ("x", "y")]),
                true,
            ),
            (
                "empty selector selects all",
                selector_policy(&[], vec![]),
                "a",
                labels(&[]),
                true,
            ),
            (
                "missing selector selects none",
                AllowedNamespaces::Selector(None),
                "echo",
                labels(&[]),
                false,
            ),
            (
                "unknown operator selects none",
                selector_policy(&[], vec![expr("env", "Like", &["d"])]),
                "a",
                labels(&[("env", "d")]),
                false,
            ),
        ];
        for (what, policy, route_ns, ns_labels, want) in cases {
            assert_eq!(policy.allows("echo", route_ns, &ns_labels), want, "{what}");
        }
    }

    #[test]
    fn allowed_listeners_default_to_none() {
        use portico_api::gateway::gateways::{
            GatewayAllowedListenersNamespaces, GatewayAllowedListenersNamespacesSelector,
        };
        let none = AllowedNamespaces::from_allowed_listeners(None);
        assert_eq!(none, AllowedNamespaces::None);
        assert!(!none.allows("infra", "infra", &labels(&[])));

        let spec = |from, selector| GatewayAllowedListeners {
            namespaces: Some(GatewayAllowedListenersNamespaces { from, selector }),
        };
        let same = AllowedNamespaces::from_allowed_listeners(Some(&spec(
            Some(GatewayAllowedListenersNamespacesFrom::Same),
            None,
        )));
        assert!(same.allows("infra", "infra", &labels(&[])));
        assert!(!same.allows("infra", "other", &labels(&[])));

        let selected = AllowedNamespaces::from_allowed_listeners(Some(&spec(
            Some(GatewayAllowedListenersNamespacesFrom::Selector),
            Some(GatewayAllowedListenersNamespacesSelector {
                match_labels: Some(labels(&[("allowed", "ns")])),
                match_expressions: None,
            }),
        )));
        assert!(selected.allows("infra", "a", &labels(&[("allowed", "ns")])));
        assert!(!selected.allows("infra", "b", &labels(&[])));
        // An empty `allowedListeners` (no namespaces) is still None.
        assert_eq!(
            AllowedNamespaces::from_allowed_listeners(Some(&GatewayAllowedListeners::default())),
            AllowedNamespaces::None
        );
    }

    #[test]
    fn listener_set_allowed_routes() {
        use portico_api::gateway::listenersets::ListenerSetListenersAllowedRoutesNamespacesSelector;
        assert_eq!(
            AllowedNamespaces::from_listener_set_spec(None),
            AllowedNamespaces::Same
        );
        let selected = AllowedNamespaces::from_listener_set_spec(Some(
            &ListenerSetListenersAllowedRoutesNamespaces {
                from: Some(ListenerSetListenersAllowedRoutesNamespacesFrom::Selector),
                selector: Some(ListenerSetListenersAllowedRoutesNamespacesSelector {
                    match_labels: Some(labels(&[("allowed", "ns")])),
                    match_expressions: None,
                }),
            },
        ));
        assert!(selected.allows("ls-ns", "routes", &labels(&[("allowed", "ns")])));
        assert!(!selected.allows("ls-ns", "ls-ns", &labels(&[])));
    }
}
