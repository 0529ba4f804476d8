//! One listener of a Gateway's merged listener list, whether the Gateway declares it or a
//! ListenerSet contributes it.
//!
//! ```text
//! ListenerPlan
//! ├── name                 unique in the merged list: the spec name for the Gateway's own
//! │                        listeners, "<ns>/<listenerset>/<name>" for a ListenerSet's
//! ├── section_name         the spec name (parentRef sectionName, status)
//! ├── origin, namespace    who declares it; allowedRoutes `Same` means that namespace
//! ├── supported_kinds      route kinds that may attach (allowedRoutes.kinds ∩ protocol)
//! ├── invalid_kinds        kinds asked for that the protocol cannot carry
//! ├── unsupported_protocol anything Portico does not serve yet
//! └── conflict             ProtocolConflict / HostnameConflict (see crate::conflict)
//! ```
//!
//! A listener is *valid* (may get a virtual host) when its protocol is supported, its port
//! is usable and it conflicts with nothing.

use portico_api::gateway::gateways::GatewayListeners;
use portico_api::gateway::listenersets::ListenerSetListeners;
use portico_api::names::{self, kind};

use crate::selector::AllowedNamespaces;
use crate::status::{ObjectRef, RouteGroupKind};

/// Protocols the data plane serves. HTTPS listeners are planned as HTTP ones (see
/// [`crate::gateway`]), so HTTPS is not listed here.
const SUPPORTED_PROTOCOLS: &[&str] = &["HTTP", "TLS", "TCP", "UDP"];

/// The route kinds a protocol carries, as far as Portico serves them.
///
/// Gateway API (allowedRoutes.kinds): "A RouteGroupKind MUST correspond to kinds of
/// Routes that are compatible with the application protocol specified in the Listener's
/// Protocol field." and (listener status supportedKinds): "This MUST represent the kinds
/// supported by an implementation for that Listener configuration." HTTP (and HTTPS,
/// planned as HTTP) carries HTTPRoute and GRPCRoute (GRPCRoute: "Implementations
/// supporting GRPCRoute with the HTTPS ProtocolType MUST accept HTTP/2 connections
/// without an initial upgrade from HTTP/1.1 [...] Implementations supporting GRPCRoute
/// with the HTTP ProtocolType MUST support HTTP/2 over cleartext TCP (h2c)"). A TLS
/// listener carries TLSRoutes whether it passes TLS through or terminates it (the
/// upstream TLSRouteListenerTerminateSupportedKinds test); TCP and UDP their own kinds.
fn kinds_for_protocol(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "HTTP" => &[kind::HTTP_ROUTE, kind::GRPC_ROUTE],
        "TLS" => &[kind::TLS_ROUTE],
        "TCP" => &[kind::TCP_ROUTE],
        "UDP" => &[kind::UDP_ROUTE],
        _ => &[],
    }
}

/// Who declares a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Gateway,
    ListenerSet(ObjectRef),
}

#[derive(Debug)]
pub(crate) struct ListenerPlan {
    pub(crate) name: String,
    pub(crate) section_name: String,
    pub(crate) origin: Origin,
    pub(crate) namespace: String,
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

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflict {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// The fields every listener spec has, whichever kind declares it.
struct Fields<'s> {
    name: &'s str,
    port: i32,
    protocol: &'s str,
    hostname: Option<&'s str>,
    allowed_namespaces: AllowedNamespaces,
    /// `allowedRoutes.kinds` as (group, kind).
    requested_kinds: Vec<(Option<&'s str>, &'s str)>,
}

impl ListenerPlan {
    /// A listener from the Gateway's own `spec.listeners`.
    pub(crate) fn from_gateway(spec: &GatewayListeners, gateway: &ObjectRef) -> Self {
        let allowed = spec.allowed_routes.as_ref();
        Self::new(
            Fields {
                name: &spec.name,
                port: spec.port,
                protocol: &spec.protocol,
                hostname: spec.hostname.as_deref(),
                allowed_namespaces: AllowedNamespaces::from_spec(
                    allowed.and_then(|a| a.namespaces.as_ref()),
                ),
                requested_kinds: allowed
                    .and_then(|a| a.kinds.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|k| (k.group.as_deref(), k.kind.as_str()))
                    .collect(),
            },
            spec.name.clone(),
            Origin::Gateway,
            &gateway.namespace,
        )
    }

    /// A listener a ListenerSet contributes.
    pub(crate) fn from_listener_set(spec: &ListenerSetListeners, listener_set: &ObjectRef) -> Self {
        let allowed = spec.allowed_routes.as_ref();
        Self::new(
            Fields {
                name: &spec.name,
                port: spec.port,
                protocol: &spec.protocol,
                hostname: spec.hostname.as_deref(),
                allowed_namespaces: AllowedNamespaces::from_listener_set_spec(
                    allowed.and_then(|a| a.namespaces.as_ref()),
                ),
                requested_kinds: allowed
                    .and_then(|a| a.kinds.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|k| (k.group.as_deref(), k.kind.as_str()))
                    .collect(),
            },
            format!("{listener_set}/{}", spec.name),
            Origin::ListenerSet(listener_set.clone()),
            &listener_set.namespace,
        )
    }

    fn new(fields: Fields<'_>, name: String, origin: Origin, namespace: &str) -> Self {
        let protocol = fields.protocol.to_owned();
        let (supported_kinds, invalid_kinds) = route_kinds(&fields.requested_kinds, &protocol);
        let port = u16::try_from(fields.port).ok().filter(|p| *p != 0);
        Self {
            name,
            section_name: fields.name.to_owned(),
            origin,
            namespace: namespace.to_owned(),
            port: port.unwrap_or(0),
            unsupported_protocol: !SUPPORTED_PROTOCOLS.contains(&protocol.as_str()),
            protocol,
            hostname: fields
                .hostname
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
            allowed_namespaces: fields.allowed_namespaces,
            supported_kinds,
            invalid_kinds,
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
/// selected are determined using the Listener protocol. [...] If an implementation does
/// not support or recognize this resource type, it MUST set the "ResolvedRefs" condition
/// to False for this Listener with the "InvalidRouteKinds" reason." and (supportedKinds)
/// "If both valid and invalid Route kinds are specified, the implementation MUST
/// reference the valid Route kinds that have been specified."
fn route_kinds(
    requested: &[(Option<&str>, &str)],
    protocol: &str,
) -> (Vec<RouteGroupKind>, Vec<String>) {
    let for_protocol: Vec<RouteGroupKind> = kinds_for_protocol(protocol)
        .iter()
        .map(|k| RouteGroupKind {
            group: names::GATEWAY_API_GROUP.to_owned(),
            kind: (*k).to_owned(),
        })
        .collect();
    if requested.is_empty() {
        return (for_protocol, Vec::new());
    }
    let mut supported = Vec::new();
    let mut invalid = Vec::new();
    for (group, k) in requested {
        let group = group.unwrap_or(names::GATEWAY_API_GROUP);
        let wanted = RouteGroupKind {
            group: group.to_owned(),
            kind: (*k).to_owned(),
        };
        if for_protocol.contains(&wanted) {
            if !supported.contains(&wanted) {
                supported.push(wanted);
            }
        } else {
            invalid.push(if group.is_empty() {
                (*k).to_owned()
            } else {
                format!("{group}/{k}")
            });
        }
    }
    (supported, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::gateway::listenersets::{
        ListenerSetListenersAllowedRoutes, ListenerSetListenersAllowedRoutesKinds,
    };

    fn http_route() -> RouteGroupKind {
        of_kind(kind::HTTP_ROUTE)
    }

    fn of_kind(k: &str) -> RouteGroupKind {
        RouteGroupKind {
            group: names::GATEWAY_API_GROUP.into(),
            kind: k.into(),
        }
    }

    #[test]
    fn route_kinds_table() {
        // (protocol, requested, supported, invalid)
        type Case<'a> = (
            &'a str,
            Vec<(Option<&'a str>, &'a str)>,
            Vec<RouteGroupKind>,
            Vec<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "HTTP",
                vec![],
                vec![http_route(), of_kind(kind::GRPC_ROUTE)],
                vec![],
            ),
            ("TLS", vec![], vec![of_kind(kind::TLS_ROUTE)], vec![]),
            ("TCP", vec![], vec![of_kind(kind::TCP_ROUTE)], vec![]),
            ("UDP", vec![], vec![of_kind(kind::UDP_ROUTE)], vec![]),
            (
                "TCP",
                vec![(None, "UDPRoute")],
                vec![],
                vec!["gateway.networking.k8s.io/UDPRoute"],
            ),
            // HTTPS listeners are planned as HTTP ones (crate::gateway).
            ("HTTPS", vec![], vec![], vec![]),
            ("INVALID", vec![], vec![], vec![]),
            (
                "HTTP",
                vec![(None, "InvalidRoute"), (None, "HTTPRoute")],
                vec![http_route()],
                vec!["gateway.networking.k8s.io/InvalidRoute"],
            ),
            (
                "HTTP",
                vec![(None, "InvalidRoute")],
                vec![],
                vec!["gateway.networking.k8s.io/InvalidRoute"],
            ),
            (
                "HTTP",
                vec![
                    (Some("gateway.networking.k8s.io"), "HTTPRoute"),
                    (None, "HTTPRoute"),
                ],
                vec![http_route()],
                vec![],
            ),
            ("HTTP", vec![(Some(""), "Service")], vec![], vec!["Service"]),
            // HTTPRoute asked for on a protocol that cannot carry it.
            (
                "TLS",
                vec![(None, "HTTPRoute")],
                vec![],
                vec!["gateway.networking.k8s.io/HTTPRoute"],
            ),
        ];
        for (protocol, requested, supported, invalid) in cases {
            let (got_supported, got_invalid) = route_kinds(&requested, protocol);
            assert_eq!(got_supported, supported, "{protocol} {requested:?}");
            assert_eq!(got_invalid, invalid, "{protocol} {requested:?}");
        }
    }

    #[test]
    fn listener_set_listeners_are_named_by_their_set() {
        let ls = ObjectRef::new("apps", "extra");
        let spec = ListenerSetListeners {
            name: "http".into(),
            port: 80,
            protocol: "HTTP".into(),
            hostname: Some("Foo.Example.com".into()),
            allowed_routes: Some(ListenerSetListenersAllowedRoutes {
                kinds: Some(vec![ListenerSetListenersAllowedRoutesKinds {
                    group: None,
                    kind: "HTTPRoute".into(),
                }]),
                namespaces: None,
            }),
            tls: None,
        };
        let plan = ListenerPlan::from_listener_set(&spec, &ls);
        assert_eq!(plan.name, "apps/extra/http");
        assert_eq!(plan.section_name, "http");
        assert_eq!(plan.origin, Origin::ListenerSet(ls));
        assert_eq!(plan.namespace, "apps");
        assert_eq!(plan.hostname.as_deref(), Some("foo.example.com"));
        assert_eq!(plan.allowed_namespaces, AllowedNamespaces::Same);
        assert!(plan.is_valid());
        assert!(plan.allows_kind(names::GATEWAY_API_GROUP, kind::HTTP_ROUTE));
    }

    #[test]
    fn invalid_ports_and_protocols_are_not_valid() {
        let gw = ObjectRef::new("infra", "gw");
        let mut spec = GatewayListeners {
            name: "l".into(),
            port: 0,
            protocol: "HTTP".into(),
            ..Default::default()
        };
        assert!(ListenerPlan::from_gateway(&spec, &gw).invalid_port);
        spec.port = 70000;
        assert!(!ListenerPlan::from_gateway(&spec, &gw).is_valid());
        spec.port = 80;
        spec.protocol = "SCTP".into();
        let plan = ListenerPlan::from_gateway(&spec, &gw);
        assert!(plan.unsupported_protocol && !plan.is_valid());
        assert_eq!(plan.name, "l");
        assert_eq!(plan.origin, Origin::Gateway);
    }
}
