//! What goes in and what comes out of [`crate::translate`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use portico_api::config::v1::Config;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use portico_api::k8s::{EndpointSlice, Namespace, Service};
use portico_api::names;

use crate::status::{ObjectRef, Statuses};

/// A snapshot of every object the translator reads. Order does not matter: the
/// translator sorts what it reads, so two snapshots with the same objects give the same
/// output.
#[derive(Default, Clone, Debug)]
pub struct Inputs {
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub http_routes: Vec<HttpRoute>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub namespaces: Vec<Namespace>,
    pub reference_grants: Vec<ReferenceGrant>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// GatewayClasses with this `spec.controllerName` are ours.
    pub controller_name: String,
    /// Bind address for listeners of Gateways that request no spec.addresses and have
    /// no entry in `assigned_addresses`.
    pub default_address: IpAddr,
    /// Addresses the environment assigned to Gateways that request none, like a
    /// LoadBalancer's ingress IP in a cluster, or a loopback address of its own in
    /// standalone mode (so that several Gateways can all listen on port 80).
    pub assigned_addresses: BTreeMap<ObjectRef, IpAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_name: names::CONTROLLER_NAME.to_owned(),
            default_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            assigned_addresses: BTreeMap::new(),
        }
    }
}

/// The data-plane config for every Gateway of ours, and the status of every object.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub config: Config,
    pub statuses: Statuses,
}
