//! `LoadBalancerIPPool`: addresses LB-IPAM may give LoadBalancer Services.
//!
//! ```yaml
//! apiVersion: portico.dev/v1alpha1
//! kind: LoadBalancerIPPool
//! metadata: {name: public}
//! spec:
//!   blocks:
//!     - cidr: 203.0.113.0/28          # every address of the network
//!     - start: 198.51.100.10          # an inclusive range
//!       stop: 198.51.100.19
//!   serviceSelector:                  # optional: only Services with these labels
//!     matchLabels: {gateway.networking.k8s.io/gateway-name: public}
//!   disabled: false                   # true: no new assignments (existing ones stay)
//! status:
//!   conditions: [{type: Ready, ...}]  # False with the reason when a block is invalid
//!   total: 26
//!   used: 3
//!   available: 23
//! ```
//!
//! Cluster-scoped: address space belongs to the cluster, not to a namespace. A CIDR
//! block hands out every address of the network, network and broadcast addresses
//! included (they are load balancer addresses, not hosts on a subnet); an address in
//! several pools is handed out once.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::k8s::{Condition, LabelSelector};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "LoadBalancerIPPool",
    plural = "loadbalancerippools",
    shortname = "lbpool",
    status = "LoadBalancerIPPoolStatus",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.used"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.available"}"#,
    doc = "Addresses Portico's LB-IPAM may assign to LoadBalancer Services."
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIPPoolSpec {
    /// The addresses of the pool: CIDRs or start/stop ranges, IPv4 or IPv6.
    pub blocks: Vec<IpBlock>,
    /// Only Services whose labels match get addresses of this pool; every Service when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::portico::schema::label_selector")]
    pub service_selector: Option<LabelSelector>,
    /// No new assignments from this pool; addresses already assigned stay.
    #[serde(default)]
    pub disabled: bool,
}

/// One block of addresses: `cidr`, or `start` and `stop` (inclusive; `stop` defaults
/// to `start`, a single address).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

/// What LB-IPAM reports on a pool. Counts saturate at `i64::MAX` (an IPv6 /64 is
/// larger).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIPPoolStatus {
    /// `Ready`: True when every block is valid; False (InvalidBlock) with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::portico::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
    /// Addresses in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Addresses of the pool assigned to Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    /// `total - used`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}
