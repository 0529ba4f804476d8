//! Portico's own custom resources (group `portico.dev`, version `v1alpha1`).
//!
//! ```text
//!   GatewayClass portico ── spec.parametersRef ──> PorticoGatewayClassConfig ns/name
//!                                                    └─ spec.service: how every Gateway's
//!                                                       Service of that class looks (type,
//!                                                       externalTrafficPolicy, class, ...)
//!   LoadBalancerIPPool (cluster-scoped) ── blocks (CIDRs, start/stop ranges)
//!     └─ serviceSelector ──> which LoadBalancer Services LB-IPAM may give its addresses
//! ```
//!
//! The CRD manifests are generated from these types by `make generate`
//! (`crates/api/crds/`, see [`crds`]); nobody writes them by hand.

mod class_config;
mod ip_pool;
mod schema;

pub use class_config::{
    ExternalTrafficPolicy, PorticoGatewayClassConfig, PorticoGatewayClassConfigSpec, ServiceConfig,
    ServiceType,
};
pub use ip_pool::{IpBlock, LoadBalancerIPPool, LoadBalancerIPPoolSpec, LoadBalancerIPPoolStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of Portico's own kinds.
pub const GROUP: &str = "portico.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD Portico defines, with the file name `make generate` writes it to.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        (
            "portico.dev_porticogatewayclassconfigs.yaml",
            PorticoGatewayClassConfig::crd(),
        ),
        (
            "portico.dev_loadbalancerippools.yaml",
            LoadBalancerIPPool::crd(),
        ),
    ]
}
