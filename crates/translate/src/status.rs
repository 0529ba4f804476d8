//! The desired status of every object the translator is responsible for.
//!
//! These structs mirror the Gateway API status shapes (camelCase on the wire) minus
//! `lastTransitionTime`: the translator has no clock, so equal inputs give equal statuses
//! and a writer can compare them. Their `to_kube` methods turn them into the kopium
//! status types with a timestamp.
//!
//! ```text
//! Statuses
//! ├── gateway_classes   name -> conditions, supportedFeatures (only classes with our controllerName)
//! ├── gateways          ns/name -> addresses, attachedListenerSets, conditions, listeners[]
//! │                         │                              (only Gateways of our classes)
//! │                         └── name, supportedKinds, attachedRoutes, conditions
//! ├── listener_sets     ns/name -> conditions, listeners[] (only those whose parent is one of our Gateways)
//! ├── http_routes       ns/name -> parents[]               (only routes with a parentRef to one of our
//!                           │                               Gateways or to a ListenerSet of one)
//!                           └── parentRef, controllerName, conditions
//! └── backend_tls_policies  ns/name -> ancestors[]      (only policies that apply to a backend of a
//!                           │                               route attached to one of our Gateways)
//!                           └── ancestorRef (Gateway), controllerName, conditions
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// The namespace and name of an object; cluster-scoped objects have namespace `""`.
/// Serializes as `"<namespace>/<name>"` so that it can key a JSON or YAML map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Serialize for ObjectRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Everything the translator wants written to the API server.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Statuses {
    /// Keyed by GatewayClass name (cluster-scoped).
    pub gateway_classes: BTreeMap<String, GatewayClassStatus>,
    pub gateways: BTreeMap<ObjectRef, GatewayStatus>,
    /// ListenerSets whose parentRef names one of our Gateways, attached or not; left out
    /// of the YAML when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub listener_sets: BTreeMap<ObjectRef, ListenerSetStatus>,
    /// Routes with no parentRef to one of our Gateways (or to a ListenerSet of one) are
    /// absent: a writer should drop the parent entries that carry our controllerName from
    /// them (see [`HttpRouteStatus::to_kube`]).
    pub http_routes: BTreeMap<ObjectRef, HttpRouteStatus>,
    /// GRPCRoutes, TLSRoutes, TCPRoutes and UDPRoutes, on the same terms as `http_routes`
    /// (every route kind has the same status shape); left out of the YAML when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub grpc_routes: BTreeMap<ObjectRef, RouteStatus>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tls_routes: BTreeMap<ObjectRef, RouteStatus>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tcp_routes: BTreeMap<ObjectRef, RouteStatus>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub udp_routes: BTreeMap<ObjectRef, RouteStatus>,
    /// BackendTLSPolicies that apply to a backend of a route attached to one of our
    /// Gateways; left out of the YAML when there are none (see [`crate::backend_tls`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_tls_policies: BTreeMap<ObjectRef, PolicyStatus>,
}

impl Statuses {
    /// The status map of a route kind (`HTTPRoute`, `GRPCRoute`, ...); `None` for other
    /// kinds.
    pub fn routes_of_kind(&self, kind: &str) -> Option<&BTreeMap<ObjectRef, RouteStatus>> {
        use portico_api::names::kind as k;
        Some(match kind {
            k::HTTP_ROUTE => &self.http_routes,
            k::GRPC_ROUTE => &self.grpc_routes,
            k::TLS_ROUTE => &self.tls_routes,
            k::TCP_ROUTE => &self.tcp_routes,
            k::UDP_ROUTE => &self.udp_routes,
            _ => return None,
        })
    }

    pub(crate) fn routes_of_kind_mut(
        &mut self,
        kind: &str,
    ) -> Option<&mut BTreeMap<ObjectRef, RouteStatus>> {
        use portico_api::names::kind as k;
        Some(match kind {
            k::HTTP_ROUTE => &mut self.http_routes,
            k::GRPC_ROUTE => &mut self.grpc_routes,
            k::TLS_ROUTE => &mut self.tls_routes,
            k::TCP_ROUTE => &mut self.tcp_routes,
            k::UDP_ROUTE => &mut self.udp_routes,
            _ => return None,
        })
    }
}

/// The status of a route of any kind: the Gateway API gives every route kind the same
/// `RouteStatus` (a list of parent statuses).
pub type RouteStatus = HttpRouteStatus;

/// `"True"`, `"False"` or `"Unknown"`.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A status condition without `lastTransitionTime`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub(crate) fn new(
        type_: &str,
        status: impl Into<ConditionStatus>,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status: status.into(),
            reason: reason.to_owned(),
            message: message.into(),
            observed_generation,
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    pub conditions: Vec<Condition>,
    /// Sorted, as the Gateway API requires (see `portico_api::features`).
    pub supported_features: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The addresses the Gateway's listeners are bound to (empty when not programmed).
    pub addresses: Vec<GatewayStatusAddress>,
    /// How many ListenerSets are attached; only for Gateways that allow ListenerSets
    /// (`spec.allowedListeners`), the others leave the field unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
    pub conditions: Vec<Condition>,
    /// In `spec.listeners` order.
    pub listeners: Vec<ListenerStatus>,
}

/// The status of a ListenerSet whose parent is one of our Gateways.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    /// Accepted, Programmed.
    pub conditions: Vec<Condition>,
    /// In `spec.listeners` order; empty when the ListenerSet is not attached.
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    /// `IPAddress`.
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes whose parent status says Accepted=True and that attach to this listener.
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteStatus {
    /// One entry per distinct parentRef to one of our Gateways, in `spec.parentRefs` order.
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

/// The status of a policy (BackendTLSPolicy): one entry per ancestor, here the Gateways
/// whose routes send traffic to the policy's target.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Sorted by ancestor namespace and name.
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The Gateway (group, kind, namespace and name all set).
    pub ancestor_ref: ParentReference,
    pub controller_name: String,
    /// Accepted, ResolvedRefs.
    pub conditions: Vec<Condition>,
}

/// The parentRef as written in the route's spec (echoed back, so a writer can match it).
#[derive(Serialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn object_ref_keys_serialize_as_strings() {
        let mut map = BTreeMap::new();
        map.insert(ObjectRef::new("echo", "echo-1"), 1);
        map.insert(ObjectRef::new("", "cluster-wide"), 2);
        let yaml = serde_yaml_ng::to_string(&map).unwrap();
        assert_eq!(yaml, "/cluster-wide: 2\necho/echo-1: 1\n");
    }

    #[test]
    fn condition_serializes_in_the_gateway_api_shape() {
        let c = Condition::new("Accepted", true, "Accepted", "ok", Some(3));
        let yaml = serde_yaml_ng::to_string(&c).unwrap();
        assert_eq!(
            yaml,
            "type: Accepted\nstatus: 'True'\nreason: Accepted\nmessage: ok\nobservedGeneration: 3\n"
        );
    }
}
