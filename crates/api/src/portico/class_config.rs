//! `PorticoGatewayClassConfig`: what a GatewayClass's `parametersRef` points at.
//!
//! ```yaml
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: GatewayClass
//! metadata: {name: portico-internal}
//! spec:
//!   controllerName: portico.dev/gateway-controller
//!   parametersRef: {group: portico.dev, kind: PorticoGatewayClassConfig,
//!                   namespace: portico-system, name: internal}
//! ---
//! apiVersion: portico.dev/v1alpha1
//! kind: PorticoGatewayClassConfig
//! metadata: {namespace: portico-system, name: internal}
//! spec:
//!   service:
//!     type: LoadBalancer
//!     externalTrafficPolicy: Local
//!     loadBalancerClass: service.k8s.aws/nlb
//!     loadBalancerSourceRanges: [10.0.0.0/8]
//!     annotations: {service.beta.kubernetes.io/aws-load-balancer-scheme: internal}
//! ```
//!
//! Namespaced, as the Gateway API recommends for parameters that an operator team owns
//! (`parametersRef.namespace` must then be set). Every Gateway of the class gets a
//! Service shaped by `spec.service`; the Gateway's own `spec.infrastructure.labels` and
//! `.annotations` are still copied onto it and win over the class's annotations, being
//! the more specific request.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "PorticoGatewayClassConfig",
    plural = "porticogatewayclassconfigs",
    shortname = "pgcc",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "Parameters of a Portico GatewayClass: how the Service of each of its Gateways looks."
)]
#[serde(rename_all = "camelCase")]
pub struct PorticoGatewayClassConfigSpec {
    /// The Service Portico creates for every Gateway of the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceConfig>,
}

/// The fields of a Gateway's Service that the class decides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// The Service type; LoadBalancer when unset.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Whether external traffic is routed to node-local proxies only (`Local`, keeps the
    /// client address) or to any (`Cluster`, the Kubernetes default). Only for
    /// LoadBalancer and NodePort Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    /// The load balancer implementation that should serve the Service (LoadBalancer
    /// only). Unset or `portico.dev/lb`: Portico's LB-IPAM assigns the address; anything
    /// else leaves it to that implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Client CIDRs allowed to reach the load balancer (LoadBalancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// Annotations put on every Service of the class (for example a cloud load
    /// balancer's settings); a Gateway's `spec.infrastructure.annotations` win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels put on every Service of the class; a Gateway's
    /// `spec.infrastructure.labels` win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `spec.type` of a Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

impl ServiceType {
    /// As the Service's `spec.type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
            Self::ClusterIP => "ClusterIP",
        }
    }
}

/// `spec.externalTrafficPolicy` of a Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

impl ExternalTrafficPolicy {
    /// As the Service's `spec.externalTrafficPolicy` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster",
            Self::Local => "Local",
        }
    }
}
