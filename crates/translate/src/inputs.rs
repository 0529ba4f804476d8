//! What goes in and what comes out of [`crate::translate`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use portico_api::config::v1::Config;
use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::names;

use crate::status::{ObjectRef, Statuses};

/// A snapshot of every object the translator reads. Order does not matter: the
/// translator sorts what it reads, so two snapshots with the same objects give the same
/// output.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Inputs {
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    /// Listeners contributed to Gateways (possibly from other namespaces), see
    /// [`crate::listener_set`].
    pub listener_sets: Vec<ListenerSet>,
    pub http_routes: Vec<HttpRoute>,
    pub grpc_routes: Vec<GrpcRoute>,
    /// TLSRoutes (Passthrough and Terminate listeners), TCPRoutes and UDPRoutes, see
    /// [`crate::stream`].
    pub tls_routes: Vec<TlsRoute>,
    pub tcp_routes: Vec<TcpRoute>,
    pub udp_routes: Vec<UdpRoute>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub namespaces: Vec<Namespace>,
    pub reference_grants: Vec<ReferenceGrant>,
    /// Certificates for HTTPS listeners (`kubernetes.io/tls`), see [`crate::tls`]. Other
    /// Secrets may be listed too; only the ones a listener refers to are read.
    pub secrets: Vec<Secret>,
    /// TLS from the proxies to Services, see [`crate::backend_tls`].
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    /// CA bundles (`ca.crt`) that BackendTLSPolicies refer to; other ConfigMaps may be
    /// listed too and are ignored.
    pub config_maps: Vec<ConfigMap>,
}

#[derive(Clone, Debug, PartialEq)]
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
    /// Which static addresses (`spec.addresses` with a value) a Gateway may ask for: the
    /// addresses the proxies can bind, or an LB-IPAM pool hands out. Others make the
    /// Gateway `Programmed=False` with reason AddressNotUsable.
    pub usable_addresses: UsableAddresses,
    /// The `gateway.networking.k8s.io/bundle-version` annotation of the installed
    /// GatewayClass CRD, reported on by the GatewayClass `SupportedVersion` condition;
    /// `None` when the CRD has no such annotation. Standalone mode has no CRDs: it runs
    /// on the schema Portico is built for, [`names::GATEWAY_API_BUNDLE_VERSION`], the
    /// default.
    pub crd_bundle_version: Option<String>,
    /// How traffic reaches the proxies: standalone mode binds each Gateway's own
    /// address and ports; in a cluster each Gateway is reached through its Service.
    pub exposure: Exposure,
    /// The time certificates are checked against, in seconds since the Unix epoch: a
    /// listener certificate whose leaf notAfter is at or before it is
    /// InvalidCertificateRef. The translator has no clock, so the caller passes it (the
    /// operator: the time of each translation); `None` checks no expiry (golden tests,
    /// which must not change with the date).
    pub now: Option<i64>,
}

/// How clients reach a Gateway's listeners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exposure {
    /// The proxy binds the Gateway's address (`spec.addresses`, `assigned_addresses` or
    /// `default_address`) and each listener's own port: standalone mode.
    #[default]
    Direct,
    /// In a cluster: clients reach the Gateway's Service, whose load balancer ingress
    /// (`assigned_addresses`) is the Gateway's address. The proxy binds
    /// `default_address` and, per listener port, the proxy port of
    /// [`ProxyPorts`](crate::ProxyPorts) that the Service targets. A Gateway whose
    /// Service has no address yet (or not the one it asks for) is
    /// `Programmed=False` with reason AddressNotAssigned.
    Service,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_name: names::CONTROLLER_NAME.to_owned(),
            default_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            assigned_addresses: BTreeMap::new(),
            usable_addresses: UsableAddresses::Any,
            crd_bundle_version: Some(names::GATEWAY_API_BUNDLE_VERSION.to_owned()),
            exposure: Exposure::Direct,
            now: None,
        }
    }
}

/// The static addresses Gateways may request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UsableAddresses {
    /// Any IP address: the environment does not say (the translator cannot know what a
    /// host can bind).
    #[default]
    Any,
    /// Only addresses inside one of these networks.
    Within(Vec<IpNet>),
}

impl UsableAddresses {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Within(networks) => networks.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// The data-plane config for every Gateway of ours, and the status of every object.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub config: Config,
    pub statuses: Statuses,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn usable_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(UsableAddresses::Any.contains(ip("203.0.113.9")));
        let loopback = UsableAddresses::Within(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(loopback.contains(ip("127.0.1.7")));
        assert!(loopback.contains(ip("::1")));
        assert!(!loopback.contains(ip("203.0.113.9")));
        assert!(!UsableAddresses::Within(Vec::new()).contains(ip("127.0.0.1")));
    }
}
