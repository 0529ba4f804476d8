//! Gateways: their class, parameters, bind addresses and merged listener list.
//!
//! ```text
//! GatewayPlan                      one per Gateway of one of our GatewayClasses
//! ├── problem                      GatewayClass not accepted / InvalidParameters
//! ├── addresses: Vec<IpAddr>       where its listeners bind (spec.addresses or assigned;
//! │                                default_address behind a Service)
//! ├── status_addresses             what status.addresses reports (the bind addresses,
//! │                                or the Service's load balancer address)
//! ├── proxy_ports                  listener port -> proxy port (Exposure::Service only)
//! ├── address_problem              UnsupportedAddress / AddressNotUsable / AddressNotAssigned
//! ├── listeners: Vec<ListenerPlan> the merged list, in precedence order: the Gateway's
//! │                                own (spec order), then each attached ListenerSet's
//! ├── allowed_listeners            spec.allowedListeners, resolved (default None)
//! └── listener_sets                every ListenerSet naming this Gateway as parent, in
//!                                  precedence order, attached or not (crate::listener_set)
//! ```
//!
//! A listener is *programmed* (gets a virtual host in the config) when it is valid (see
//! [`crate::listener`]) and its Gateway is accepted with usable addresses. Routes attach
//! to listeners regardless (see [`crate::attach`]): the Gateway API counts attachment by
//! `allowedRoutes` and `parentRefs` alone. Statuses are rendered in
//! [`crate::gateway_status`] and [`crate::listener_set_status`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use portico_api::gateway::gateways::GatewayListeners;
use portico_api::gateway::{Gateway, ListenerSet};
use portico_api::k8s::Time;
use portico_api::names;

use crate::class;
use crate::conflict;
use crate::index::{Index, object_ref};
use crate::inputs::{Exposure, Options, UsableAddresses};
use crate::listener::{ListenerPlan, Origin};
use crate::listener_set::{self, ListenerSetPlan};
use crate::proxy_port::ProxyPorts;
use crate::selector::AllowedNamespaces;
use crate::status::ObjectRef;
use crate::tls;

/// The address type we can bind (`spec.addresses[].type`, defaulted by the CRD).
pub(crate) const IP_ADDRESS: &str = "IPAddress";

#[derive(Debug)]
pub(crate) struct GatewayPlan<'a> {
    pub(crate) key: ObjectRef,
    pub(crate) generation: Option<i64>,
    pub(crate) created: Option<&'a Time>,
    /// Why the Gateway is not accepted, whatever its listeners and addresses.
    pub(crate) problem: Option<GatewayProblem>,
    pub(crate) addresses: Vec<IpAddr>,
    /// What `status.addresses` reports once programmed.
    pub(crate) status_addresses: Vec<IpAddr>,
    /// Listener port -> the proxy port that serves it (behind a Service); empty when the
    /// proxy binds the listener ports themselves.
    pub(crate) proxy_ports: BTreeMap<u16, u16>,
    pub(crate) address_problem: Option<AddressProblem>,
    pub(crate) listeners: Vec<ListenerPlan>,
    /// Listeners dropped because an earlier one has the same name (the API server forbids
    /// it; standalone YAML may not). Listener status is a map keyed by name.
    pub(crate) duplicate_names: Vec<String>,
    pub(crate) allowed_listeners: AllowedNamespaces,
    pub(crate) listener_sets: Vec<ListenerSetPlan>,
    /// The Gateway's `portico.dev/access-log` annotation: whether its requests are logged.
    pub(crate) access_log: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GatewayProblem {
    /// Its GatewayClass is ours but not accepted.
    ClassNotAccepted(String),
    /// `spec.infrastructure.parametersRef` names something we cannot read.
    InvalidParameters(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AddressProblem {
    /// An address type other than IPAddress: the Gateway is not accepted.
    Unsupported(String),
    /// An IPAddress we cannot use: the Gateway is accepted but not programmed.
    NotUsable(String),
    /// Behind a Service: the Service has no load balancer address yet, or not the one
    /// the Gateway asks for. Accepted, not programmed.
    NotAssigned(String),
}

/// Plans every Gateway of one of our classes with the ListenerSets attached to it, then
/// settles conflicts between Gateways that end up on the same socket.
pub(crate) fn plan_gateways<'a>(index: &Index<'a>) -> BTreeMap<ObjectRef, GatewayPlan<'a>> {
    let options = index.options;
    let proxy_ports = match options.exposure {
        Exposure::Direct => ProxyPorts::default(),
        Exposure::Service => ProxyPorts::from_index(index),
    };
    let mut plans: BTreeMap<ObjectRef, GatewayPlan<'a>> = index
        .gateways
        .values()
        .copied()
        .filter(|g| index.is_ours(g))
        .map(|g| {
            let key = object_ref(&g.metadata);
            let mut plan = match options.exposure {
                Exposure::Direct => {
                    let default_address = options
                        .assigned_addresses
                        .get(&key)
                        .copied()
                        .unwrap_or(options.default_address);
                    plan_gateway(index, g, default_address, &options.usable_addresses)
                }
                Exposure::Service => plan_service_gateway(index, g, options),
            };
            plan.proxy_ports = proxy_ports
                .iter()
                .filter(|(gateway, _, _)| **gateway == key)
                .map(|(_, port, proxy)| (port, proxy))
                .collect();
            (key, plan)
        })
        .collect();

    let mut children: BTreeMap<ObjectRef, Vec<&'a ListenerSet>> = BTreeMap::new();
    for listener_set in index.listener_sets.values().copied() {
        if let Some(parent) = index.listener_set_parent(listener_set) {
            children.entry(parent).or_default().push(listener_set);
        }
    }
    for (parent, listener_sets) in children {
        if let Some(plan) = plans.get_mut(&parent) {
            listener_set::attach_all(index, plan, listener_sets);
        }
    }

    conflict::settle_across_gateways(&mut plans);
    plans
}

fn plan_gateway<'a>(
    index: &Index<'_>,
    gateway: &'a Gateway,
    default_address: IpAddr,
    usable: &UsableAddresses,
) -> GatewayPlan<'a> {
    let (addresses, address_problem) = bind_addresses(gateway, default_address, usable);
    let mut plan = plan_listeners(index, gateway);
    plan.status_addresses = addresses.clone();
    plan.addresses = addresses;
    plan.address_problem = address_problem;
    plan
}

/// A Gateway reached through its Service: the proxy binds `default_address` (the
/// Service's targetPorts on the proxy pods), and the Gateway's address is its Service's
/// load balancer address, `assigned_addresses`.
///
/// Gateway API (Gateway conditions): "AddressNotAssigned [...] This reason is used with
/// the "Programmed" condition when none of the requested addresses have been assigned
/// to the Gateway." and (GatewayStatus addresses): "Addresses lists the network
/// addresses that have been bound to the Gateway." With no address there is nothing to
/// report: the Gateway waits, not programmed, rather than claim `0.0.0.0`.
fn plan_service_gateway<'a>(
    index: &Index<'_>,
    gateway: &'a Gateway,
    options: &Options,
) -> GatewayPlan<'a> {
    let mut plan = plan_listeners(index, gateway);
    let key = &plan.key;
    // Requested values are checked as in standalone mode (types, IP syntax); which
    // addresses can be had is the load balancer's answer, not ours.
    let (requested, problem) =
        bind_addresses(gateway, options.default_address, &UsableAddresses::Any);
    if problem.is_some() {
        plan.address_problem = problem;
        return plan;
    }
    let asked: Vec<IpAddr> = if gateway
        .spec
        .addresses
        .iter()
        .flatten()
        .any(|a| a.value.as_deref().is_some_and(|v| !v.is_empty()))
    {
        requested
    } else {
        Vec::new()
    };
    plan.address_problem = match options.assigned_addresses.get(key) {
        None if asked.is_empty() => Some(AddressProblem::NotAssigned(
            "the Gateway's Service has no load balancer address yet".to_owned(),
        )),
        None => Some(AddressProblem::NotAssigned(format!(
            "the Gateway's Service has not been given the requested address(es) {} yet",
            quoted_ips(&asked)
        ))),
        Some(ip) if !asked.is_empty() && !asked.contains(ip) => {
            Some(AddressProblem::NotAssigned(format!(
                "requested address(es) {} but the Gateway's Service got {ip}",
                quoted_ips(&asked)
            )))
        }
        Some(ip) => {
            plan.status_addresses = vec![*ip];
            None
        }
    };
    plan.addresses = vec![options.default_address];
    plan
}

fn quoted_ips(ips: &[IpAddr]) -> String {
    let v: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    quoted(&r)
}

/// The plan of a Gateway without its addresses: class, parameters, listeners.
fn plan_listeners<'a>(index: &Index<'_>, gateway: &'a Gateway) -> GatewayPlan<'a> {
    let key = object_ref(&gateway.metadata);
    let mut listeners: Vec<ListenerPlan> = Vec::new();
    let mut duplicate_names = Vec::new();
    for spec in &gateway.spec.listeners {
        if listeners.iter().any(|l| l.section_name == spec.name) {
            duplicate_names.push(spec.name.clone());
        } else {
            listeners.push(listener_plan(spec, &key));
        }
    }
    conflict::mark_within(&mut listeners);
    GatewayPlan {
        problem: gateway_problem(index, gateway),
        generation: gateway.metadata.generation,
        created: gateway.metadata.creation_timestamp.as_ref(),
        addresses: Vec::new(),
        status_addresses: Vec::new(),
        proxy_ports: BTreeMap::new(),
        address_problem: None,
        listeners,
        duplicate_names,
        allowed_listeners: AllowedNamespaces::from_allowed_listeners(
            gateway.spec.allowed_listeners.as_ref(),
        ),
        listener_sets: Vec::new(),
        access_log: access_log(gateway),
        key,
    }
}

/// Whether the Gateway's requests get access-log lines: yes unless its
/// `portico.dev/access-log` annotation is `"off"`.
fn access_log(gateway: &Gateway) -> bool {
    gateway
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ACCESS_LOG_ANNOTATION))
        .is_none_or(|v| v != names::ACCESS_LOG_OFF)
}

/// The plan of one of the Gateway's own listeners. An HTTPS listener that terminates TLS
/// carries HTTP once TLS is off, so it is planned as an HTTP one (same route kinds, same
/// attachment rules) and keeps its protocol; its certificates are resolved in
/// [`crate::tls`].
///
/// Gateway API (ProtocolType): "HTTPS: Accepts HTTP/1.1 or HTTP/2 sessions over TLS.",
/// and (allowedRoutes.kinds defaults) HTTPRoute is the Core route kind for both.
fn listener_plan(spec: &GatewayListeners, gateway: &ObjectRef) -> ListenerPlan {
    if !tls::terminates(&spec.protocol, spec.tls.as_ref()) {
        return ListenerPlan::from_gateway(spec, gateway);
    }
    let as_http = GatewayListeners {
        protocol: "HTTP".to_owned(),
        ..spec.clone()
    };
    let mut plan = ListenerPlan::from_gateway(&as_http, gateway);
    plan.protocol = spec.protocol.clone();
    plan
}

/// Gateway API (GatewayInfrastructure parametersRef): "If the referent cannot be found,
/// refers to an unsupported kind, or when the data within that resource is malformed, the
/// Gateway SHOULD be rejected with the "Accepted" status condition set to "False" and an
/// "InvalidParameters" reason." Portico defines no parameters kind, so every reference is
/// to an unsupported kind. `spec.infrastructure.labels` and `.annotations` are accepted:
/// they go onto the Service the operator creates, and standalone mode creates nothing.
fn gateway_problem(index: &Index<'_>, gateway: &Gateway) -> Option<GatewayProblem> {
    let class_name = &gateway.spec.gateway_class_name;
    if let Some(why) = index
        .classes
        .get(class_name)
        .and_then(|c| class::problem(c))
    {
        return Some(GatewayProblem::ClassNotAccepted(format!(
            "GatewayClass {class_name:?} is not accepted: {why}"
        )));
    }
    let params = gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())?;
    Some(GatewayProblem::InvalidParameters(format!(
        "parametersRef to {} {:?}: Portico reads no parameters of this kind",
        kind_group(&params.kind, &params.group),
        params.name
    )))
}

/// `Kind` for the core group, `Kind.group` otherwise (as kubectl spells resources).
pub(crate) fn kind_group(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

/// Where the Gateway's listeners bind: every distinct `IPAddress` in `spec.addresses`, or
/// the default address when there is none. An address entry without a value asks the
/// implementation to pick one, which is the default address too.
///
/// Gateway API (Gateway conditions): "UnsupportedAddress: [...] the addresses field
/// contains an address type that is not supported" (the Gateway is not accepted), and
/// "AddressNotUsable [...] Some example situations where this reason can be used: [...] a
/// provided static address can't be used" (the Gateway is accepted, not programmed).
/// (GatewayAddress value): "When a value is unspecified, an implementation SHOULD
/// automatically assign an address matching the requested type if possible."
fn bind_addresses(
    gateway: &Gateway,
    default_address: IpAddr,
    usable: &UsableAddresses,
) -> (Vec<IpAddr>, Option<AddressProblem>) {
    let requested = gateway.spec.addresses.as_deref().unwrap_or_default();
    let unsupported: Vec<&str> = requested
        .iter()
        .map(|a| a.r#type.as_deref().unwrap_or(IP_ADDRESS))
        .filter(|t| *t != IP_ADDRESS)
        .collect();
    if !unsupported.is_empty() {
        return (
            Vec::new(),
            Some(AddressProblem::Unsupported(format!(
                "address type {} is not supported, only {IP_ADDRESS}",
                quoted(&unsupported)
            ))),
        );
    }

    let mut addresses = Vec::new();
    let mut unusable = Vec::new();
    for value in requested
        .iter()
        .filter_map(|a| a.value.as_deref())
        .filter(|v| !v.is_empty())
    {
        match value.parse::<IpAddr>() {
            Ok(ip) if usable.contains(ip) => {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
            _ => unusable.push(value),
        }
    }
    if !unusable.is_empty() {
        return (
            Vec::new(),
            Some(AddressProblem::NotUsable(format!(
                "{} cannot be used: not an IP address this Gateway's proxies can listen on; remove it or request another",
                quoted(&unusable)
            ))),
        );
    }
    if addresses.is_empty() {
        addresses.push(default_address);
    }
    (addresses, None)
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl GatewayPlan<'_> {
    /// The listeners one object declares: the Gateway itself or one of its ListenerSets.
    pub(crate) fn listeners_of<'p>(
        &'p self,
        origin: &'p Origin,
    ) -> impl Iterator<Item = &'p ListenerPlan> + 'p {
        self.listeners.iter().filter(move |l| &l.origin == origin)
    }

    /// Accepted: nothing wrong with the Gateway as a whole, and at least one of its own
    /// listeners is valid (Gateway API: "At least one distinct Listener MUST be present,
    /// or else the Gateway effectively contains _no_ Listeners, and must be rejected from
    /// processing as a whole.").
    pub(crate) fn accepted(&self) -> bool {
        self.problem.is_none()
            && !matches!(self.address_problem, Some(AddressProblem::Unsupported(_)))
            && self
                .listeners_of(&Origin::Gateway)
                .any(ListenerPlan::is_valid)
    }

    /// Accepted with addresses we can bind: its valid listeners go into the config.
    pub(crate) fn is_programmed(&self) -> bool {
        self.accepted() && self.address_problem.is_none()
    }

    /// The port the proxy binds for `listener`: its proxy port behind a Service
    /// ([`crate::proxy_port`]), else the listener's own port.
    pub(crate) fn bind_port(&self, listener: &ListenerPlan) -> u16 {
        self.proxy_ports
            .get(&listener.port)
            .copied()
            .unwrap_or(listener.port)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inputs::{Inputs, Options};
    use portico_api::gateway::GatewayClass;
    use portico_api::gateway::gatewayclasses::{GatewayClassParametersRef, GatewayClassSpec};
    use portico_api::gateway::gateways::{
        GatewayAddresses, GatewayInfrastructure, GatewayInfrastructureParametersRef,
        GatewayListeners, GatewaySpec,
    };
    use portico_api::k8s::ObjectMeta;
    use portico_api::names::{self, reason};
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

    fn class() -> GatewayClass {
        GatewayClass {
            metadata: ObjectMeta {
                name: Some("portico".into()),
                ..Default::default()
            },
            spec: GatewayClassSpec {
                controller_name: names::CONTROLLER_NAME.into(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn plans(
        inputs: &Inputs,
        options: &Options,
    ) -> BTreeMap<ObjectRef, (bool, bool, Vec<Option<&'static str>>)> {
        let index = Index::new(inputs, options);
        plan_gateways(&index)
            .into_iter()
            .map(|(k, p)| {
                let conflicts = p
                    .listeners
                    .iter()
                    .map(|l| l.conflict.as_ref().map(|c| c.reason))
                    .collect();
                (k, (p.accepted(), p.is_programmed(), conflicts))
            })
            .collect()
    }

    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

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
        let inputs = Inputs {
            gateway_classes: vec![class()],
            gateways: vec![older, newer],
            ..Default::default()
        };
        let got = plans(&inputs, &Options::default());
        assert_eq!(got[&ObjectRef::new("ns", "older")].2, vec![None]);
        assert_eq!(
            got[&ObjectRef::new("ns", "a-newer")].2,
            vec![Some(reason::HOSTNAME_CONFLICT), None]
        );
    }

    #[test]
    fn gateways_with_assigned_addresses_do_not_share_a_socket() {
        let inputs = Inputs {
            gateway_classes: vec![class()],
            gateways: vec![
                gateway("one", vec![listener("http", 80, "HTTP", None)]),
                gateway("two", vec![listener("http", 80, "HTTP", None)]),
            ],
            ..Default::default()
        };
        let options = Options {
            assigned_addresses: [
                (ObjectRef::new("ns", "one"), "127.0.1.1".parse().unwrap()),
                (ObjectRef::new("ns", "two"), "127.0.1.2".parse().unwrap()),
            ]
            .into(),
            ..Options::default()
        };
        let index = Index::new(&inputs, &options);
        let plans = plan_gateways(&index);
        for (name, ip) in [("one", "127.0.1.1"), ("two", "127.0.1.2")] {
            let plan = &plans[&ObjectRef::new("ns", name)];
            assert_eq!(plan.addresses, vec![ip.parse::<IpAddr>().unwrap()]);
            assert!(plan.listeners[0].conflict.is_none());
        }
    }

    #[test]
    fn parameters_refs_are_invalid() {
        let mut with_params = gateway("params", vec![listener("http", 80, "HTTP", None)]);
        with_params.spec.infrastructure = Some(GatewayInfrastructure {
            parameters_ref: Some(GatewayInfrastructureParametersRef {
                group: "invalid.io".into(),
                kind: "InvalidParameters".into(),
                name: "invalid".into(),
            }),
            labels: Some([("key2".to_owned(), "value2".to_owned())].into()),
            annotations: None,
        });
        let mut metadata_only = gateway("infra", vec![listener("http", 8080, "HTTP", None)]);
        metadata_only.spec.infrastructure = Some(GatewayInfrastructure {
            labels: Some([("key2".to_owned(), "value2".to_owned())].into()),
            ..Default::default()
        });
        let inputs = Inputs {
            gateway_classes: vec![class()],
            gateways: vec![with_params, metadata_only],
            ..Default::default()
        };
        let options = Options::default();
        let index = Index::new(&inputs, &options);
        let plans = plan_gateways(&index);
        let params = &plans[&ObjectRef::new("ns", "params")];
        assert!(matches!(
            params.problem,
            Some(GatewayProblem::InvalidParameters(_))
        ));
        assert!(!params.accepted());
        let infra = &plans[&ObjectRef::new("ns", "infra")];
        assert!(infra.problem.is_none() && infra.is_programmed());
    }

    #[test]
    fn gateways_of_a_rejected_class_are_not_accepted() {
        let mut rejected = class();
        rejected.spec.parameters_ref = Some(GatewayClassParametersRef {
            group: "example.com".into(),
            kind: "Config".into(),
            name: "c".into(),
            namespace: None,
        });
        let inputs = Inputs {
            gateway_classes: vec![rejected],
            gateways: vec![gateway("g", vec![listener("http", 80, "HTTP", None)])],
            ..Default::default()
        };
        let got = plans(&inputs, &Options::default());
        assert!(!got[&ObjectRef::new("ns", "g")].0);
    }

    #[test]
    fn addresses() {
        let mut g = gateway("g", vec![listener("http", 80, "HTTP", None)]);
        let addr = |t: Option<&str>, v: Option<&str>| GatewayAddresses {
            r#type: t.map(Into::into),
            value: v.map(Into::into),
        };
        let any = UsableAddresses::Any;
        assert_eq!(bind_addresses(&g, ANY, &any).0, vec![ANY]);

        g.spec.addresses = Some(vec![
            addr(None, Some("10.0.0.1")),
            addr(Some("IPAddress"), Some("10.0.0.2")),
            addr(Some("IPAddress"), Some("10.0.0.1")),
        ]);
        let (ips, problem) = bind_addresses(&g, ANY, &any);
        assert!(problem.is_none());
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse::<IpAddr>().unwrap(),
            ]
        );

        // GatewayAddressEmpty: a type without a value gets the assigned address.
        g.spec.addresses = Some(vec![addr(Some("IPAddress"), None)]);
        assert_eq!(bind_addresses(&g, ANY, &any).0, vec![ANY]);

        g.spec.addresses = Some(vec![addr(Some("Hostname"), Some("lb.example.com"))]);
        assert!(matches!(
            bind_addresses(&g, ANY, &any).1,
            Some(AddressProblem::Unsupported(_))
        ));

        g.spec.addresses = Some(vec![addr(None, Some("not an ip"))]);
        assert!(matches!(
            bind_addresses(&g, ANY, &any).1,
            Some(AddressProblem::NotUsable(_))
        ));
    }

    /// The three phases of the upstream GatewayStaticAddresses test.
    #[test]
    fn static_addresses() {
        let mut g = gateway("g", vec![listener("http", 8080, "HTTP", None)]);
        let addr = |t: Option<&str>, v: &str| GatewayAddresses {
            r#type: t.map(Into::into),
            value: Some(v.into()),
        };
        let loopback = UsableAddresses::Within(vec!["127.0.0.0/8".parse().unwrap()]);
        let invalid = addr(Some("test/fake-invalid-type"), "fake address teehee!");
        let unusable = addr(Some("IPAddress"), "203.0.113.1");
        let usable = addr(None, "127.0.5.1");

        g.spec.addresses = Some(vec![invalid, unusable.clone(), usable.clone()]);
        let (ips, problem) = bind_addresses(&g, ANY, &loopback);
        assert!(ips.is_empty());
        assert!(
            matches!(&problem, Some(AddressProblem::Unsupported(m)) if m.contains("test/fake-invalid-type"))
        );

        g.spec.addresses = Some(vec![unusable, usable.clone()]);
        let (ips, problem) = bind_addresses(&g, ANY, &loopback);
        assert!(ips.is_empty());
        assert!(
            matches!(&problem, Some(AddressProblem::NotUsable(m)) if m.contains("203.0.113.1"))
        );

        g.spec.addresses = Some(vec![usable]);
        assert_eq!(
            bind_addresses(&g, ANY, &loopback),
            (vec!["127.0.5.1".parse::<IpAddr>().unwrap()], None)
        );
    }
}
