//! One LoadBalancer Service per Gateway: `portico-gateway-<gateway>` in the Gateway's
//! namespace, owned by it, selecting the proxy pods.
//!
//! - [`name`]: the Service's name (a DNS label, hashed when the Gateway's name does not
//!   fit) and the gateway-name label value.
//! - [`build`]: the desired Service of a Gateway (shaped by its class's
//!   `PorticoGatewayClassConfig`), and the addresses Services give Gateways (the
//!   translator's `assigned_addresses`).
//! - [`reconcile`]: the leader's task applying desired Services by server-side apply.

pub mod build;
pub mod name;
pub mod reconcile;

pub use build::{
    PROXY_SELECTOR_LABEL, PROXY_SELECTOR_VALUE, assigned_addresses, attached_listener_sets,
    desired_service, desired_service_with, our_gateways, shape, stale_services,
};
pub use name::{SERVICE_PREFIX, gateway_label_value, service_name};
