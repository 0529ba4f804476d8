//! Gateways and their listeners: validation, conflicts, bind addresses and status.
//!
//! ```text
//! GatewayPlan                      one per Gateway of one of our GatewayClasses
//! ├── addresses: Vec<IpAddr>       where its listeners bind (spec.addresses or the default)
//! ├── address_problem              UnsupportedAddress / AddressNotAssigned
//! └── listeners: Vec<ListenerPlan> in spec order
//!     ├── supported_kinds          route kinds that may attach (allowedRoutes.kinds ∩ protocol)
//!     ├── allowed_namespaces       allowedRoutes.namespaces, resolved
//!     ├── unsupported_protocol     anything but HTTP for now
//!     └── conflict                 ProtocolConflict / HostnameConflict
//! ```
//!
//! A listener is *programmed* (gets a virtual host in the config) when its protocol is
//! supported, it conflicts with nothing and its Gateway is accepted with usable addresses.
//! Routes attach to listeners regardless (see [`crate::attach`]): the Gateway API counts
//! attachment by `allowedRoutes` and `parentRefs` alone. Statuses are rendered in
//! [`crate::gateway_status`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use portico_api::gateway::Gateway;
use portico_api::gateway::gateways::GatewayListeners;
use portico_api::k8s::Time;
use portico_api::names::{self, kind, reason};

use crate::index::object_ref;
use crate::selector::AllowedNamespaces;
use crate::status::{ObjectRef, RouteGroupKind};

/// The address type we can bind (`spec.addresses[].type`, defaulted by the CRD).
pub(crate) const IP_ADDRESS: &str = "IPAddress";

/// Protocols the data plane serves today. HTTPS, TLS, TCP and UDP come later.
const SUPPORTED_PROTOCOLS: &[&str] = &["HTTP"];

/// The Gateway API's core protocols. Conflicts are computed among these even while some
/// are unsupported, so that supporting one later does not flip the status of listeners
/// that were already there; listeners with unknown protocols never conflict.
const CORE_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP"];

#[derive(Debug)]
pub(crate) struct GatewayPlan<'a> {
    pub(crate) key: ObjectRef,
    pub(crate) generation: Option<i64>,
    pub(crate) created: Option<&'a Time>,
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) address_problem: Option<AddressProblem>,
    pub(crate) listeners: Vec<ListenerPlan>,
    /// Listeners dropped because an earlier one has the same name (the API server forbids
    /// it; standalone YAML may not). Listener status is a map keyed by name.
    pub(crate) duplicate_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum AddressProblem {
    /// An address type other than IPAddress: the Gateway is not accepted.
    Unsupported(String),
    /// An IPAddress we cannot parse: the Gateway is accepted but not programmed.
    NotAssigned(String),
}

#[derive(Debug)]
pub(crate) struct ListenerPlan {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) protocol: String,
    /// Lowercased; `None` when the listener matches any host.
    pub(crate) hostname: Option<String>,
    pub(crate) allowed_namespaces: AllowedNamespaces,
    pub(crate) supported_kinds: Vec<RouteGroupKind>,
    /// Kinds in `allowedRoutes.kinds` we cannot serve on this protocol.
    pub(crate) invalid_kinds: Vec<String>,
    pub(crate) unsupported_protocol: bool,
    /// A port outside 1..=65535 (the CRD forbids it; standalone YAML may not).
    pub(crate) invalid_port: bool,
    pub(crate) conflict: Option<Conflict>,
}

#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl ListenerPlan {
    fn from_spec(spec: &GatewayListeners) -> Self {
        let protocol = spec.protocol.clone();
        let unsupported_protocol = !SUPPORTED_PROTOCOLS.contains(&protocol.as_str());
        let (supported_kinds, invalid_kinds) = route_kinds(spec, &protocol);
        let port = u16::try_from(spec.port).ok().filter(|p| *p != 0);
        Self {
            name: spec.name.clone(),
            port: port.unwrap_or(0),
            protocol,
            hostname: spec
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
            allowed_namespaces: AllowedNamespaces::from_spec(
                spec.allowed_routes
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref()),
            ),
            supported_kinds,
            invalid_kinds,
            unsupported_protocol,
            invalid_port: port.is_none(),
            conflict: None,
        }
    }

    /// Valid on its own and free of conflicts: it may be given a virtual host.
    pub(crate) fn is_valid(&self) -> bool {
        !self.unsupported_protocol && !self.invalid_port && self.conflict.is_none()
    }

    pub(crate) fn allows_kind(&self, group: &str, kind: &str) -> bool {
        self.supported_kinds
            .iter()
            .any(|k| k.group == group && k.kind == kind)
    }
}

/// The route kinds a listener accepts, and the ones it was asked for but cannot serve.
///
/// Gateway API (allowedRoutes.kinds): "When unspecified or empty, the kinds of Routes
/// selected are determined using the Listener protocol. A RouteGroupKind MUST correspond
/// to kinds of Routes that are compatible with the application protocol specified in the
/// Listener's Protocol field. If an implementation does not support or recognize this
/// resource type, it MUST set the "ResolvedRefs" condition to False for this Listener with
/// the "InvalidRouteKinds" reason."
fn route_kinds(spec: &GatewayListeners, protocol: &str) -> (Vec<RouteGroupKind>, Vec<String>) {
    let for_protocol: Vec<RouteGroupKind> = match protocol {
        "HTTP" => vec![RouteGroupKind {
            group: names::GATEWAY_API_GROUP.to_owned(),
            kind: kind::HTTP_ROUTE.to_owned(),
        }],
        _ => Vec::new(),
    };
    let requested = spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty());
    let Some(requested) = requested else {
        return (for_protocol, Vec::new());
    };
    let mut supported = Vec::new();
    let mut invalid = Vec::new();
    for k in requested {
        let group = k.group.as_deref().unwrap_or(names::GATEWAY_API_GROUP);
        let wanted = RouteGroupKind {
            group: group.to_owned(),
            kind: k.kind.clone(),
        };
        if for_protocol.contains(&wanted) {
            if !supported.contains(&wanted) {
                supported.push(wanted);
            }
        } else {
            invalid.push(if group.is_empty() {
                k.kind.clone()
            } else {
                format!("{group}/{}", k.kind)
            });
        }
    }
    (supported, invalid)
}

/// Plans every Gateway of one of our classes, then settles conflicts between Gateways
/// that end up on the same socket.
pub(crate) fn plan_gateways<'a>(
    gateways: impl Iterator<Item = &'a Gateway>,
    default_address: IpAddr,
    assigned_addresses: &BTreeMap<ObjectRef, IpAddr>,
) -> BTreeMap<ObjectRef, GatewayPlan<'a>> {
    let mut plans: BTreeMap<ObjectRef, GatewayPlan<'a>> = gateways
        .map(|g| {
            let assigned = assigned_addresses.get(&object_ref(&g.metadata));
            let plan = plan_gateway(g, assigned.copied().unwrap_or(default_address));
            (plan.key.clone(), plan)
        })
        .collect();
    settle_cross_gateway_conflicts(&mut plans);
    plans
}

fn plan_gateway(gateway: &Gateway, default_address: IpAddr) -> GatewayPlan<'_> {
    let (addresses, address_problem) = bind_addresses(gateway, default_address);
    let mut listeners: Vec<ListenerPlan> = Vec::new();
    let mut duplicate_names = Vec::new();
    for spec in &gateway.spec.listeners {
        if listeners.iter().any(|l| l.name == spec.name) {
            duplicate_names.push(spec.name.clone());
        } else {
            listeners.push(ListenerPlan::from_spec(spec));
        }
    }
    mark_conflicts(&mut listeners);
    GatewayPlan {
        key: object_ref(&gateway.metadata),
        generation: gateway.metadata.generation,
        created: gateway.metadata.creation_timestamp.as_ref(),
        addresses,
        address_problem,
        listeners,
        duplicate_names,
    }
}

/// Where the Gateway's listeners bind: every distinct `IPAddress` in `spec.addresses`, or
/// the default address when there is none. An address entry without a value asks the
/// implementation to pick one, which is the default address too.
///
/// Gateway API (GatewayAddress): "Type of the address." and (Gateway conditions)
/// "UnsupportedAddress: [...] the addresses field contains an address type that is not
/// supported"; "AddressNotAssigned: [...] none of the requested addresses have been
/// assigned to the Gateway".
fn bind_addresses(
    gateway: &Gateway,
    default_address: IpAddr,
) -> (Vec<IpAddr>, Option<AddressProblem>) {
    let mut addresses = Vec::new();
    for address in gateway.spec.addresses.iter().flatten() {
        let type_ = address.r#type.as_deref().unwrap_or(IP_ADDRESS);
        if type_ != IP_ADDRESS {
            return (
                Vec::new(),
                Some(AddressProblem::Unsupported(format!(
                    "address type {type_:?} is not supported, only {IP_ADDRESS}"
                ))),
            );
        }
        let Some(value) = address.value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        match value.parse::<IpAddr>() {
            Ok(ip) if !addresses.contains(&ip) => addresses.push(ip),
            Ok(_) => {}
            Err(_) => {
                return (
                    Vec::new(),
                    Some(AddressProblem::NotAssigned(format!(
                        "{value:?} is not an IP address"
                    ))),
                );
            }
        }
    }
    if addresses.is_empty() {
        addresses.push(default_address);
    }
    (addresses, None)
}

/// Marks listeners of one Gateway that cannot be told apart.
///
/// Gateway API (Gateway listeners): "each listener in a set MUST have a unique combination
/// of Port, Protocol, and, if supported by the protocol, Hostname. [...] If a set of
/// Listeners contains Listeners that are not distinct, then those Listeners are
/// _Conflicted_ [...] The implementation MUST NOT pick one conflicting Listener as the
/// winner. ALL indistinct Listeners must not be accepted for processing."
///
/// Different protocols on one port conflict (ProtocolConflict), except UDP next to a
/// TCP-based protocol, which use different sockets. The same protocol, port and hostname
/// twice is a HostnameConflict.
fn mark_conflicts(listeners: &mut [ListenerPlan]) {
    let mut conflicts: Vec<Option<Conflict>> = vec![None; listeners.len()];
    for (i, a) in listeners.iter().enumerate() {
        if !CORE_PROTOCOLS.contains(&a.protocol.as_str()) || a.invalid_port {
            continue;
        }
        for (j, b) in listeners.iter().enumerate() {
            if i == j
                || a.port != b.port
                || !CORE_PROTOCOLS.contains(&b.protocol.as_str())
                || is_udp(&a.protocol) != is_udp(&b.protocol)
            {
                continue;
            }
            let found = if a.protocol != b.protocol {
                Conflict {
                    reason: reason::PROTOCOL_CONFLICT,
                    message: format!(
                        "port {} is also used by listener {:?} with protocol {}",
                        a.port, b.name, b.protocol
                    ),
                }
            } else if a.hostname == b.hostname {
                Conflict {
                    reason: reason::HOSTNAME_CONFLICT,
                    message: format!(
                        "listener {:?} has the same port, protocol and hostname",
                        b.name
                    ),
                }
            } else {
                continue;
            };
            // A protocol conflict says more than a hostname conflict: keep it.
            let slot = &mut conflicts[i];
            if slot
                .as_ref()
                .is_none_or(|c| c.reason == reason::HOSTNAME_CONFLICT && found.reason != c.reason)
            {
                *slot = Some(found);
            }
        }
    }
    for (listener, conflict) in listeners.iter_mut().zip(conflicts) {
        listener.conflict = conflict;
    }
}

fn is_udp(protocol: &str) -> bool {
    protocol == "UDP"
}

/// Several Gateways share the proxy's sockets. Gateway API: "implementations MAY merge
/// separate Gateways onto a single data plane, and these rules _also_ apply in that case".
/// Two valid listeners of different Gateways on the same address and port with the same
/// hostname cannot be told apart: the listener of the older Gateway (creation timestamp,
/// then namespace/name, the Gateway API's usual tie-break) keeps the socket and the newer
/// one is marked conflicted.
fn settle_cross_gateway_conflicts(plans: &mut BTreeMap<ObjectRef, GatewayPlan<'_>>) {
    let mut order: Vec<(Option<&Time>, ObjectRef)> = plans
        .values()
        .filter(|p| p.address_problem.is_none())
        .map(|p| (p.created, p.key.clone()))
        .collect();
    // Timestamps first, Gateways without one (standalone files) after them.
    order.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    let order: Vec<ObjectRef> = order.into_iter().map(|(_, key)| key).collect();

    // (socket, hostname) -> "<ns>/<gateway>/<listener>" that owns it.
    let mut owners: BTreeMap<(SocketAddr, Option<String>), String> = BTreeMap::new();
    for key in order {
        let Some(plan) = plans.get_mut(&key) else {
            continue;
        };
        let addresses = plan.addresses.clone();
        for listener in plan.listeners.iter_mut().filter(|l| l.is_valid()) {
            let owner = format!("{key}/{}", listener.name);
            let slots: Vec<(SocketAddr, Option<String>)> = addresses
                .iter()
                .map(|ip| {
                    (
                        SocketAddr::new(*ip, listener.port),
                        listener.hostname.clone(),
                    )
                })
                .collect();
            let taken = slots
                .iter()
                .find_map(|slot| owners.get(slot).map(|other| (slot.0, other)));
            if let Some((socket, other)) = taken {
                listener.conflict = Some(Conflict {
                    reason: reason::HOSTNAME_CONFLICT,
                    message: format!(
                        "{socket} with hostname {:?} is already served by listener {other} of an older Gateway",
                        listener.hostname.as_deref().unwrap_or("")
                    ),
                });
                continue;
            }
            for slot in slots {
                owners.insert(slot, owner.clone());
            }
        }
    }
}

impl GatewayPlan<'_> {
    pub(crate) fn accepted(&self) -> bool {
        !matches!(self.address_problem, Some(AddressProblem::Unsupported(_)))
            && self.listeners.iter().any(ListenerPlan::is_valid)
    }

    /// Accepted with addresses we can bind: its valid listeners go into the config.
    pub(crate) fn is_programmed(&self) -> bool {
        self.accepted() && self.address_problem.is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::gateways::{GatewayAddresses, GatewaySpec};
    use portico_api::k8s::ObjectMeta;
    use std::net::Ipv4Addr;

    fn listener(name: &str, port: i32, protocol: &str, hostname: Option<&str>) -> GatewayListeners {
        GatewayListeners {
            name: name.into(),
            port,
            protocol: protocol.into(),
            hostname: hostname.map(Into::into),
            ..Default::default()
        }
    }

    fn gateway(name: &str, listeners: Vec<GatewayListeners>) -> Gateway {
        Gateway {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: GatewaySpec {
                gateway_class_name: "portico".into(),
                listeners,
                ..Default::default()
            },
            status: None,
        }
    }

    fn conflicts(plan: &GatewayPlan<'_>) -> Vec<Option<&'static str>> {
        plan.listeners
            .iter()
            .map(|l| l.conflict.as_ref().map(|c| c.reason))
            .collect()
    }

    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    #[test]
    fn conflicts_within_a_gateway() {
        let g = gateway(
            "g",
            vec![
                listener("a", 80, "HTTP", Some("a.example.com")),
                listener("b", 80, "HTTP", Some("b.example.com")),
                listener("c", 80, "HTTP", Some("a.example.com")),
                listener("d", 8080, "HTTP", None),
                listener("e", 8080, "TCP", None),
                listener("f", 53, "UDP", None),
                listener("g", 53, "TCP", None),
                listener("h", 9000, "example.com/custom", None),
                listener("i", 9000, "HTTP", None),
            ],
        );
        let plan = plan_gateway(&g, ANY);
        assert_eq!(
            conflicts(&plan),
            vec![
                Some(reason::HOSTNAME_CONFLICT),
                None,
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                None,
                None,
                None,
                None,
            ]
        );
    }

    #[test]
    fn older_gateway_keeps_a_shared_socket() {
        let mut older = gateway("older", vec![listener("http", 80, "HTTP", None)]);
        older.metadata.creation_timestamp =
            Some(Time("2024-01-01T00:00:00Z".parse().unwrap_or_default()));
        let mut newer = gateway(
            "a-newer",
            vec![
                listener("http", 80, "HTTP", None),
                listener("named", 80, "HTTP", Some("x.example.com")),
            ],
        );
        newer.metadata.creation_timestamp =
            Some(Time("2024-06-01T00:00:00Z".parse().unwrap_or_default()));
        let plans = plan_gateways([&older, &newer].into_iter(), ANY, &BTreeMap::new());
        let older = &plans[&ObjectRef::new("ns", "older")];
        let newer = &plans[&ObjectRef::new("ns", "a-newer")];
        assert_eq!(conflicts(older), vec![None]);
        assert_eq!(
            conflicts(newer),
            vec![Some(reason::HOSTNAME_CONFLICT), None]
        );
    }

    #[test]
    fn gateways_with_assigned_addresses_do_not_share_a_socket() {
        let one = gateway("one", vec![listener("http", 80, "HTTP", None)]);
        let two = gateway("two", vec![listener("http", 80, "HTTP", None)]);
        let assigned: BTreeMap<ObjectRef, IpAddr> = [
            (ObjectRef::new("ns", "one"), "127.0.1.1".parse().unwrap()),
            (ObjectRef::new("ns", "two"), "127.0.1.2".parse().unwrap()),
        ]
        .into();
        let plans = plan_gateways([&one, &two].into_iter(), ANY, &assigned);
        for (name, ip) in [("one", "127.0.1.1"), ("two", "127.0.1.2")] {
            let plan = &plans[&ObjectRef::new("ns", name)];
            assert_eq!(plan.addresses, vec![ip.parse::<IpAddr>().unwrap()]);
            assert_eq!(conflicts(plan), vec![None]);
        }
    }

    #[test]
    fn addresses() {
        let mut g = gateway("g", vec![listener("http", 80, "HTTP", None)]);
        let addr = |t: Option<&str>, v: Option<&str>| GatewayAddresses {
            r#type: t.map(Into::into),
            value: v.map(Into::into),
        };
        assert_eq!(bind_addresses(&g, ANY).0, vec![ANY]);

        g.spec.addresses = Some(vec![
            addr(None, Some("10.0.0.1")),
            addr(Some("IPAddress"), Some("10.0.0.2")),
            addr(Some("IPAddress"), Some("10.0.0.1")),
        ]);
        let (ips, problem) = bind_addresses(&g, ANY);
        assert!(problem.is_none());
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap_or(ANY),
                "10.0.0.2".parse::<IpAddr>().unwrap_or(ANY),
            ]
        );

        g.spec.addresses = Some(vec![addr(Some("IPAddress"), None)]);
        assert_eq!(bind_addresses(&g, ANY).0, vec![ANY]);

        g.spec.addresses = Some(vec![addr(Some("Hostname"), Some("lb.example.com"))]);
        assert!(matches!(
            bind_addresses(&g, ANY).1,
            Some(AddressProblem::Unsupported(_))
        ));

        g.spec.addresses = Some(vec![addr(None, Some("not an ip"))]);
        assert!(matches!(
            bind_addresses(&g, ANY).1,
            Some(AddressProblem::NotAssigned(_))
        ));
    }
}
