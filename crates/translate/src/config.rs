//! Assembles the data-plane `Config` from planned Gateways and attached routes.
//!
//! ```text
//! Config
//! ├── listeners[]        one per (bind address, port), sorted by port then address
//! │   └── virtual_hosts  one per programmed Gateway listener on that socket, most
//! │       │              specific hostname first ("<ns>/<gateway>/<listener>")
//! │       └── host_routes  one per effective hostname (route hostnames ∩ listener
//! │           │            hostname), exact (longest first), wildcards, then ""
//! │           └── routes   every (rule, match) of the routes answering for that
//! │                        hostname, in HTTPRoute precedence order
//! ├── clusters[]         one per Service port a programmed route sends traffic to
//! └── version            sha256 of the prost encoding of the rest, in hex
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use portico_api::config::v1::{
    ClusterProtocol, Config, HostRoutes, Listener, Protocol, VirtualHost,
};
use portico_api::names::kind;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::attach::Attachment;
use crate::backend::{self, ClusterRef};
use crate::gateway::GatewayPlan;
use crate::hostname;
use crate::index::Index;
use crate::listener::ListenerPlan;
use crate::route::{CompiledRoute, RouteEntry};
use crate::status::ObjectRef;

/// The routes attached to one listener, each with the hostnames it answers for there.
type AttachedRoutes<'r> = Vec<(&'r CompiledRoute, &'r [String])>;

pub(crate) fn build(
    index: &Index<'_>,
    plans: &BTreeMap<ObjectRef, GatewayPlan<'_>>,
    routes: &[(Arc<CompiledRoute>, Vec<Attachment>)],
) -> Config {
    // (gateway, listener) -> the routes attached there, with their hostnames on it.
    let mut attached: BTreeMap<(&ObjectRef, &str), AttachedRoutes<'_>> = BTreeMap::new();
    for (route, attachments) in routes {
        for a in attachments {
            attached
                .entry((&a.gateway, a.listener.as_str()))
                .or_default()
                .push((&**route, &a.hostnames));
        }
    }

    let mut sockets: BTreeMap<(u16, IpAddr), Vec<VirtualHost>> = BTreeMap::new();
    // Bind port -> the Gateway listener port clients dial, where the two differ (behind
    // a Service every (Gateway, port) has its own proxy port, so one socket has one).
    let mut gateway_ports: BTreeMap<u16, u16> = BTreeMap::new();
    let mut clusters: BTreeSet<ClusterRef> = BTreeSet::new();
    // Service ports GRPCRoutes send to: HTTP/2 unless their appProtocol says otherwise.
    let mut grpc_clusters: BTreeSet<ClusterRef> = BTreeSet::new();
    for plan in plans.values().filter(|p| p.is_programmed()) {
        for listener in plan.listeners.iter().filter(|l| l.is_valid()) {
            let routes = attached
                .get(&(&plan.key, listener.name.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (route, _) in routes {
                clusters.extend(route.clusters.iter().cloned());
                if route.kind == kind::GRPC_ROUTE {
                    grpc_clusters.extend(route.clusters.iter().cloned());
                }
            }
            // TLS, TCP and UDP listeners carry stream routes (crate::stream), not
            // virtual hosts.
            if !carries_http(listener) {
                continue;
            }
            let vhost = VirtualHost {
                name: format!("{}/{}", plan.key, listener.name),
                hostname: listener.hostname.clone().unwrap_or_default(),
                host_routes: host_routes(routes),
                // Set for HTTPS listeners by crate::tls::apply.
                tls: None,
                access_log_disabled: !plan.access_log,
            };
            let bind_port = plan.bind_port(listener);
            if bind_port != listener.port {
                gateway_ports.insert(bind_port, listener.port);
            }
            for address in &plan.addresses {
                sockets
                    .entry((bind_port, *address))
                    .or_default()
                    .push(vhost.clone());
            }
        }
    }

    let listeners = sockets
        .into_iter()
        .map(|((port, address), mut virtual_hosts)| {
            virtual_hosts.sort_by(|a, b| {
                hostname::specificity(&a.hostname, &b.hostname).then_with(|| a.name.cmp(&b.name))
            });
            Listener {
                name: SocketAddr::new(address, port).to_string(),
                address: address.to_string(),
                port: u32::from(port),
                protocol: Protocol::Http as i32,
                virtual_hosts,
                stream_routes: Vec::new(),
                gateway_port: gateway_ports.get(&port).copied().map_or(0, u32::from),
            }
        })
        .collect();
    let mut config = Config {
        version: String::new(),
        listeners,
        clusters: clusters
            .iter()
            .map(|c| {
                let mut cluster = backend::build_cluster(index, c);
                if grpc_clusters.contains(c) && !has_app_protocol(index, c) {
                    cluster.protocol = ClusterProtocol::H2c as i32;
                }
                cluster
            })
            .collect(),
    };
    config.version = version(&config);
    config
}

/// Whether a Gateway listener routes HTTP: HTTP, and HTTPS once TLS is terminated.
pub(crate) fn carries_http(listener: &ListenerPlan) -> bool {
    listener.protocol == "HTTP" || listener.protocol == crate::tls::HTTPS
}

/// Whether the Service port names its protocol (`appProtocol`).
///
/// gRPC is HTTP/2 only ("gRPC [...] is built on HTTP/2"), so a Service port that only
/// GRPCRoutes reach and that says nothing about its protocol is spoken to in cleartext
/// HTTP/2 (h2c, prior knowledge); Gateway API (GRPCRoute): "Implementations supporting
/// GRPCRoute with the HTTP ProtocolType MUST support HTTP/2 over cleartext TCP (h2c)".
fn has_app_protocol(index: &Index<'_>, cluster: &ClusterRef) -> bool {
    index
        .services
        .get(&cluster.service)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == cluster.port))
        .is_some_and(|p| p.app_protocol.is_some())
}

/// Groups the entries of the attached routes by the hostnames they answer for, most
/// specific hostname first, each group in precedence order.
fn host_routes(routes: &[(&CompiledRoute, &[String])]) -> Vec<HostRoutes> {
    let mut groups: BTreeMap<&str, Vec<&RouteEntry>> = BTreeMap::new();
    for (route, hostnames) in routes {
        for h in hostnames.iter() {
            groups.entry(h).or_default().extend(route.entries.iter());
        }
    }
    let mut groups: Vec<(&str, Vec<&RouteEntry>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| hostname::specificity(a.0, b.0));
    groups
        .into_iter()
        .map(|(hostname, mut entries)| {
            entries.sort_by(|a, b| a.precedence.cmp(&b.precedence));
            HostRoutes {
                hostname: hostname.to_owned(),
                routes: entries.into_iter().map(|e| e.route.clone()).collect(),
            }
        })
        .collect()
}

/// A content hash of the config without its version: equal configs, equal versions.
pub(crate) fn version(config: &Config) -> String {
    let digest = Sha256::digest(config.encode_to_vec());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
