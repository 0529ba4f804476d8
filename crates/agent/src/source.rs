//! Kubernetes Services and EndpointSlices into the datapath's service entries: a pure
//! function, the same for the API server's objects and a folder's.
//!
//! ```text
//!   Service { clusterIPs, ports: [ServicePort { name, protocol, port }] }
//!     + EndpointSlices labelled kubernetes.io/service-name=<service>, same namespace, IPv4
//!       { ports: [{ name, protocol, port }], endpoints: [{ addresses, conditions }] }
//!   ──> one ServiceEntry per (IPv4 cluster IP, service port), backends weight 1
//! ```
//!
//! Besides the cluster IPs (flags 0), NodePort and LoadBalancer Services get frontends for
//! traffic from outside the node (flag `EXTERNAL`, served by the tc programs):
//! `0.0.0.0:<nodePort>` (any node address) and `<status.loadBalancer.ingress[].ip>:<port>`.
//! With `externalTrafficPolicy: Local` those frontends get only the endpoints whose
//! `nodeName` is this node (flag `LOCAL`): "Local preserves the client source IP and
//! avoids a second hop for LoadBalancer and NodePort type services, but risks potentially
//! imbalanced traffic spreading"; a node without local endpoints drops the traffic.
//!
//! A Service labelled `portico.dev/gateway-steering: "true"` (`names::GATEWAY_STEERING_LABEL`;
//! the operator puts it on the Services it makes for Gateways) has its cluster IPs and load-balancer IPs flagged
//! `GATEWAY`: the socket LB and the tc programs leave them alone and the node delivers
//! them to the local proxy (see `steering`). Its node ports stay ordinary external
//! frontends, balanced to the Service's endpoints (the proxy pods).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use portico_api::k8s::{Endpoint, EndpointSlice, Service, ServicePort};
use portico_api::names::{ENDPOINT_SLICE_SERVICE_LABEL, GATEWAY_STEERING_LABEL};

use crate::maps::flags;
use crate::service::{BackendEntry, Frontend, Protocol, ServiceEntry};

/// What the source needs to know about the node it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// This node's name, to tell its endpoints for `externalTrafficPolicy: Local`. Without
    /// it no endpoint is local, and Local frontends drop.
    pub node_name: Option<String>,
}

/// The service entries for `services`, backed by the matching `slices`, sorted by frontend,
/// for a node whose name is not known (see [`SourceOptions::node_name`]).
pub fn service_entries(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServiceEntry> {
    service_entries_with(&SourceOptions::default(), services, slices)
}

/// The service entries for `services` on the node `opts` describes, sorted by frontend.
pub fn service_entries_with(
    opts: &SourceOptions,
    services: &[Service],
    slices: &[EndpointSlice],
) -> Vec<ServiceEntry> {
    let mut entries: Vec<ServiceEntry> = services
        .iter()
        .flat_map(|svc| entries_of(opts, svc, slices))
        .collect();
    entries.sort();
    entries.dedup_by(|a, b| a.frontend == b.frontend);
    entries
}

/// Which endpoints a frontend may use.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Cluster,
    /// Those on this node (`None`: the node is not known, so none).
    Node(Option<&'a str>),
}

fn entries_of(opts: &SourceOptions, svc: &Service, slices: &[EndpointSlice]) -> Vec<ServiceEntry> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Vec::new();
    }
    let gateway = svc
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(GATEWAY_STEERING_LABEL))
        .is_some_and(|v| v == "true");
    let gateway_flag = if gateway { flags::GATEWAY } else { 0 };
    let external = kind == "NodePort" || kind == "LoadBalancer";
    // "externalTrafficPolicy ... Cluster" is the default; it applies to node ports and
    // load-balancer IPs only.
    let local = spec.external_traffic_policy.as_deref() == Some("Local");
    let (external_flags, external_scope) = if local {
        (
            flags::EXTERNAL | flags::LOCAL,
            Scope::Node(opts.node_name.as_deref()),
        )
    } else {
        (flags::EXTERNAL, Scope::Cluster)
    };
    let lb_ips: BTreeSet<Ipv4Addr> = if kind == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect()
    } else {
        BTreeSet::new()
    };
    // "clusterIPs ... If this field is specified, clusterIP must match clusterIPs[0]";
    // older objects only carry clusterIP. "None" (headless) does not parse and is skipped.
    let ips: BTreeSet<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let mine: Vec<&EndpointSlice> = slices.iter().filter(|s| belongs_to(s, svc)).collect();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = protocol_of(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let backends = backends_for(port, protocol, &mine, Scope::Cluster);
        let mut push = |ip: Ipv4Addr, port: u16, flags: u32, backends: &Vec<BackendEntry>| {
            out.push(ServiceEntry {
                frontend: Frontend::new(SocketAddrV4::new(ip, port), protocol),
                flags,
                backends: backends.clone(),
            });
        };
        for ip in &ips {
            push(*ip, number, gateway_flag, &backends);
        }
        if !external {
            continue;
        }
        let external_backends = match external_scope {
            Scope::Cluster => backends.clone(),
            scope => backends_for(port, protocol, &mine, scope),
        };
        if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
            push(
                Ipv4Addr::UNSPECIFIED,
                node_port,
                external_flags,
                &external_backends,
            );
        }
        for ip in &lb_ips {
            push(
                *ip,
                number,
                external_flags | gateway_flag,
                &external_backends,
            );
        }
    }
    out
}

/// "protocol ... Supports TCP, UDP, and SCTP. Default is TCP." SCTP is not balanced.
fn protocol_of(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

fn belongs_to(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.address_type == "IPv4"
        && slice.metadata.namespace == svc.metadata.namespace
        && svc.metadata.name.as_ref().is_some_and(|name| {
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ENDPOINT_SLICE_SERVICE_LABEL))
                == Some(name)
        })
}

/// The endpoints of `mine` that serve `port`, by the rules kube-proxy follows:
/// - a slice port matches the service port by name ("The name of this port ... must match
///   the name of the service port"; both empty for a single unnamed port) and protocol;
/// - "ready ... nil should be interpreted as true"; "serving ... nil should be interpreted
///   as ready"; ready endpoints are used, and only when there is none, the serving ones
///   that are terminating (KEP-1669: traffic drains to terminating pods rather than fail);
/// - only the first address is used ("consumers ... may use only the first");
/// - an endpoint listed by two slices counts once;
/// - for a `Scope::Node`, only endpoints whose `nodeName` is the node count, and the
///   ready/terminating choice is made among them.
fn backends_for(
    port: &ServicePort,
    protocol: Protocol,
    mine: &[&EndpointSlice],
    scope: Scope<'_>,
) -> Vec<BackendEntry> {
    let name = port.name.as_deref().unwrap_or_default();
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in mine {
        let Some(target) = slice.ports.iter().flatten().find_map(|p| {
            let same = p.name.as_deref().unwrap_or_default() == name
                && protocol_of(p.protocol.as_deref()) == Some(protocol);
            same.then_some(p.port).flatten()
        }) else {
            continue;
        };
        let Ok(target) = u16::try_from(target) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            if let Scope::Node(node) = scope
                && (node.is_none() || ep.node_name.as_deref() != node)
            {
                continue;
            }
            let Some(addr) = first_ipv4(ep) else {
                continue;
            };
            let addr = SocketAddrV4::new(addr, target);
            let (is_ready, serving, is_terminating) = conditions(ep);
            if is_ready {
                ready.insert(addr);
            } else if serving && is_terminating {
                terminating.insert(addr);
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen
        .into_iter()
        .map(|addr| BackendEntry { addr, weight: 1 })
        .collect()
}

fn first_ipv4(ep: &Endpoint) -> Option<Ipv4Addr> {
    ep.addresses.first()?.parse().ok()
}

fn conditions(ep: &Endpoint) -> (bool, bool, bool) {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving, terminating)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use portico_api::k8s::{EndpointPort, ObjectMeta};
    use portico_api::k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use portico_api::k8s_openapi::api::discovery::v1::EndpointConditions;

    use super::*;

    fn mk_service(name: &str, ip: &str, ports: &[(Option<&str>, &str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                cluster_ips: Some(vec![ip.into()]),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, proto, port)| ServicePort {
                            name: n.map(Into::into),
                            protocol: Some((*proto).into()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An endpoint: address, ready, serving, terminating (None leaves a condition unset).
    type Ep<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

    fn mk_slice(
        service: &str,
        ports: &[(Option<&str>, &str, i32)],
        eps: &[Ep<'_>],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-abc")),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    ENDPOINT_SLICE_SERVICE_LABEL.to_string(),
                    service.to_string(),
                )])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, proto, port)| EndpointPort {
                        name: n.map(Into::into),
                        protocol: Some((*proto).into()),
                        port: Some(*port),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: Some(
                eps.iter()
                    .map(|(a, ready, serving, terminating)| Endpoint {
                        addresses: vec![(*a).into()],
                        conditions: Some(EndpointConditions {
                            ready: *ready,
                            serving: *serving,
                            terminating: *terminating,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    fn backends(e: &ServiceEntry) -> Vec<String> {
        e.backends
            .iter()
            .map(|b| format!("{}*{}", b.addr, b.weight))
            .collect()
    }

    #[test]
    fn cluster_ip_ports_map_to_slice_ports_by_name_and_protocol() {
        let svc = mk_service(
            "web",
            "10.96.0.10",
            &[(Some("http"), "TCP", 80), (Some("dns"), "UDP", 53)],
        );
        let slice = mk_slice(
            "web",
            &[(Some("http"), "TCP", 8080), (Some("dns"), "UDP", 5353)],
            &[
                ("10.0.0.2", None, None, None),
                ("10.0.0.1", Some(true), None, None),
            ],
        );
        let entries = service_entries(&[svc], &[slice]);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].frontend.to_string(), "10.96.0.10:53/UDP");
        assert_eq!(
            backends(&entries[0]),
            ["10.0.0.1:5353*1", "10.0.0.2:5353*1"]
        );
        assert_eq!(entries[1].frontend.to_string(), "10.96.0.10:80/TCP");
        assert_eq!(
            backends(&entries[1]),
            ["10.0.0.1:8080*1", "10.0.0.2:8080*1"]
        );
    }

    #[test]
    fn unready_endpoints_are_skipped_and_terminating_ones_used_only_when_none_is_ready() {
        let svc = mk_service("web", "10.96.0.10", &[(None, "TCP", 80)]);
        let mixed = mk_slice(
            "web",
            &[(None, "TCP", 8080)],
            &[
                ("10.0.0.1", Some(true), None, None),
                ("10.0.0.2", Some(false), Some(false), None),
                ("10.0.0.3", Some(false), Some(true), Some(true)),
            ],
        );
        let entries = service_entries(std::slice::from_ref(&svc), &[mixed]);
        assert_eq!(backends(&entries[0]), ["10.0.0.1:8080*1"]);

        let draining = mk_slice(
            "web",
            &[(None, "TCP", 8080)],
            &[
                ("10.0.0.2", Some(false), Some(false), None),
                ("10.0.0.3", Some(false), Some(true), Some(true)),
            ],
        );
        let entries = service_entries(&[svc], &[draining]);
        assert_eq!(backends(&entries[0]), ["10.0.0.3:8080*1"]);
    }

    #[test]
    fn a_service_without_endpoints_has_an_entry_with_no_backends() {
        let svc = mk_service("web", "10.96.0.10", &[(None, "TCP", 80)]);
        let other = mk_slice(
            "other",
            &[(None, "TCP", 8080)],
            &[("10.0.0.1", None, None, None)],
        );
        let entries = service_entries(&[svc], &[other]);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].backends.is_empty());
    }

    #[test]
    fn headless_external_name_and_sctp_are_skipped() {
        let headless = mk_service("h", "None", &[(None, "TCP", 80)]);
        let mut external = mk_service("e", "10.96.0.11", &[(None, "TCP", 80)]);
        if let Some(spec) = external.spec.as_mut() {
            spec.type_ = Some("ExternalName".into());
        }
        let sctp = mk_service("s", "10.96.0.12", &[(None, "SCTP", 80)]);
        assert!(service_entries(&[headless, external, sctp], &[]).is_empty());
    }

    #[test]
    fn an_endpoint_in_two_slices_counts_once() {
        let svc = mk_service("web", "10.96.0.10", &[(None, "TCP", 80)]);
        let a = mk_slice(
            "web",
            &[(None, "TCP", 8080)],
            &[("10.0.0.1", None, None, None)],
        );
        let mut b = a.clone();
        b.metadata.name = Some("web-def".into());
        let entries = service_entries(&[svc], &[a, b]);
        assert_eq!(backends(&entries[0]), ["10.0.0.1:8080*1"]);
    }

    fn external_service(kind: &str, policy: &str) -> Service {
        let mut svc = mk_service("web", "10.96.0.10", &[(Some("http"), "TCP", 80)]);
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some(kind.into());
        spec.external_traffic_policy = Some(policy.into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("172.18.0.200".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        svc
    }

    /// A slice with one endpoint on node-a and one on node-b.
    fn two_node_slice() -> EndpointSlice {
        let mut slice = mk_slice(
            "web",
            &[(Some("http"), "TCP", 8080)],
            &[
                ("10.0.0.1", None, None, None),
                ("10.0.0.2", None, None, None),
            ],
        );
        let eps = slice.endpoints.as_mut().unwrap();
        eps[0].node_name = Some("node-a".into());
        eps[1].node_name = Some("node-b".into());
        slice
    }

    fn summary(entries: &[ServiceEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| format!("{} {:#x} {}", e.frontend, e.flags, backends(e).join(",")))
            .collect()
    }

    #[test]
    fn load_balancer_services_get_node_port_and_ingress_ip_frontends() {
        let entries = service_entries(
            &[external_service("LoadBalancer", "Cluster")],
            &[two_node_slice()],
        );
        assert_eq!(
            summary(&entries),
            [
                "0.0.0.0:30080/TCP 0x2 10.0.0.1:8080*1,10.0.0.2:8080*1",
                "10.96.0.10:80/TCP 0x0 10.0.0.1:8080*1,10.0.0.2:8080*1",
                "172.18.0.200:80/TCP 0x2 10.0.0.1:8080*1,10.0.0.2:8080*1",
            ]
        );
        // A NodePort Service has no load-balancer frontend, whatever its status says.
        let entries = service_entries(
            &[external_service("NodePort", "Cluster")],
            &[two_node_slice()],
        );
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn external_traffic_policy_local_keeps_this_nodes_endpoints_for_external_frontends_only() {
        let opts = SourceOptions {
            node_name: Some("node-b".into()),
        };
        let svc = external_service("LoadBalancer", "Local");
        let entries = service_entries_with(&opts, std::slice::from_ref(&svc), &[two_node_slice()]);
        assert_eq!(
            summary(&entries),
            [
                "0.0.0.0:30080/TCP 0x6 10.0.0.2:8080*1",
                "10.96.0.10:80/TCP 0x0 10.0.0.1:8080*1,10.0.0.2:8080*1",
                "172.18.0.200:80/TCP 0x6 10.0.0.2:8080*1",
            ]
        );
        // A node with no endpoint of the Service, or an unknown node: nothing (drop).
        for opts in [
            SourceOptions {
                node_name: Some("node-c".into()),
            },
            SourceOptions::default(),
        ] {
            let entries =
                service_entries_with(&opts, std::slice::from_ref(&svc), &[two_node_slice()]);
            assert!(entries[0].backends.is_empty(), "{opts:?}");
            assert!(entries[2].backends.is_empty(), "{opts:?}");
        }
    }

    #[test]
    fn gateway_services_are_flagged_on_cluster_and_load_balancer_ips() {
        let mut svc = external_service("LoadBalancer", "Cluster");
        svc.metadata.labels = Some(BTreeMap::from([(
            GATEWAY_STEERING_LABEL.to_string(),
            "true".to_string(),
        )]));
        let entries = service_entries(&[svc], &[two_node_slice()]);
        let flags: Vec<(String, u32)> = entries
            .iter()
            .map(|e| (e.frontend.to_string(), e.flags))
            .collect();
        assert_eq!(
            flags,
            [
                ("0.0.0.0:30080/TCP".to_string(), flags::EXTERNAL),
                ("10.96.0.10:80/TCP".to_string(), flags::GATEWAY),
                (
                    "172.18.0.200:80/TCP".to_string(),
                    flags::EXTERNAL | flags::GATEWAY
                ),
            ]
        );
    }
}
