//! TLSRoutes, TCPRoutes and UDPRoutes: compiled like the HTTP kinds (same attachment,
//! same backend checks), placed as `stream_routes` on the sockets of TLS, TCP and UDP
//! listeners.
//!
//! ```text
//! TlsRoute / TcpRoute / UdpRoute ──compile──> CompiledRoute { streams[]: one per rule }
//!                                                 │ attach (crate::attach)
//!                                                 ▼
//! Gateway listener (TLS | TCP | UDP), programmed
//!   └── socket (address, port; UDP ones apart) ──> Listener.stream_routes[]
//!         StreamRoute { name "<ns>/<route>/rule/<i>/<listener>", route "<Kind>/<ns>/<name>",
//!                       hostnames (TLS: route ∩ listener; TCP/UDP: none),
//!                       backends (weighted; an invalid one keeps its share),
//!                       terminate (TLS listeners with tls.mode Terminate) }
//! ```
//!
//! Order on a socket: TLS routes by hostname, most specific first (the proxy picks by
//! SNI anyway); then, as for every kind, the oldest route first, then by
//! "{namespace}/{name}", then rule order. On TCP and UDP sockets only the first route
//! answers, so the oldest one wins, as the Gateway API settles every other tie.
//!
//! Gateway API (TLSRoute hostnames): "If both the Listener and TLSRoute have specified
//! hostnames, any TLSRoute hostnames that do not match any Listener hostname MUST be
//! ignored." and (TLS listener `tls.mode`): "Terminate: The TLS session between the
//! downstream client and the Gateway is terminated at the Gateway. [...] Passthrough:
//! The TLS session is NOT terminated by the Gateway." A Terminate listener whose
//! certificates do not resolve takes no connection (ResolvedRefs False, as for HTTPS).
//!
//! A UDP socket is named `"<address>:<port>/udp"`: a TCP-based listener may use the same
//! port (the two are different sockets), and listener names are unique in a config.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use portico_api::config::v1::{Config, Listener, Protocol, StreamRoute, TlsTermination};
use portico_api::gateway::gateways::{GatewayListenersTls, GatewayListenersTlsMode};
use portico_api::gateway::{TcpRoute, TlsRoute, UdpRoute};
use portico_api::names::kind;

use crate::attach::Attachment;
use crate::backend::{self, BackendRef};
use crate::config;
use crate::gateway::GatewayPlan;
use crate::hostname;
use crate::index::Index;
use crate::listener::{ListenerPlan, Origin};
use crate::route::{CompiledRoute, StreamRule, parent_refs};
use crate::status::ObjectRef;
use crate::tls::{self, Secrets, TlsProblem};

/// The backendRefs of TLSRoute, TCPRoute and UDPRoute rules: the same fields each.
macro_rules! compile_rules {
    ($index:expr, $compiled:expr, $rules:expr) => {
        for (i, rule) in $rules.iter().enumerate() {
            let refs = rule.backend_refs.iter().map(|r| {
                (
                    BackendRef {
                        group: r.group.as_deref(),
                        kind: r.kind.as_deref(),
                        name: &r.name,
                        namespace: r.namespace.as_deref(),
                        port: r.port,
                    },
                    r.weight,
                    Vec::new(),
                )
            });
            let from = ($compiled.kind, $compiled.key.namespace.as_str());
            let resolved = backend::resolve_weighted($index, from, refs);
            $compiled.backend_errors.extend(resolved.errors);
            $compiled.add_clusters(resolved.clusters);
            $compiled.streams.push(StreamRule {
                rule: i,
                backends: resolved.backends,
            });
        }
    };
}

pub(crate) fn compile_tls(index: &Index<'_>, route: &TlsRoute) -> CompiledRoute {
    let mut compiled = CompiledRoute::new(
        kind::TLS_ROUTE,
        &route.metadata,
        &route.spec.hostnames,
        parent_refs!(route.spec.parent_refs),
    );
    compile_rules!(index, compiled, route.spec.rules);
    compiled
}

pub(crate) fn compile_tcp(index: &Index<'_>, route: &TcpRoute) -> CompiledRoute {
    let mut compiled = CompiledRoute::new(
        kind::TCP_ROUTE,
        &route.metadata,
        &[],
        parent_refs!(route.spec.parent_refs),
    );
    compile_rules!(index, compiled, route.spec.rules);
    compiled
}

pub(crate) fn compile_udp(index: &Index<'_>, route: &UdpRoute) -> CompiledRoute {
    let mut compiled = CompiledRoute::new(
        kind::UDP_ROUTE,
        &route.metadata,
        &[],
        parent_refs!(route.spec.parent_refs),
    );
    compile_rules!(index, compiled, route.spec.rules);
    compiled
}

/// The socket protocol of a Gateway listener that carries stream routes.
fn stream_protocol(listener: &ListenerPlan) -> Option<Protocol> {
    match listener.protocol.as_str() {
        "TLS" => Some(Protocol::Tls),
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The stream routes attached to one listener, each with its hostnames there.
type StreamRoutesOf<'r> = Vec<(&'r CompiledRoute, &'r [String])>;

/// A listener's certificates problem, to report on its status: (Gateway, sectionName,
/// problem).
pub(crate) type ListenerProblem = (ObjectRef, String, TlsProblem);

/// Adds the stream routes of every programmed TLS, TCP and UDP listener to `config`
/// (creating their sockets), and returns the TLS listeners whose certificates could not
/// be resolved.
pub(crate) fn apply(
    config: &mut Config,
    index: &Index<'_>,
    secrets: &Secrets<'_>,
    plans: &BTreeMap<ObjectRef, GatewayPlan<'_>>,
    routes: &[(std::sync::Arc<CompiledRoute>, Vec<Attachment>)],
) -> Vec<ListenerProblem> {
    let mut attached: BTreeMap<(&ObjectRef, &str), StreamRoutesOf<'_>> = BTreeMap::new();
    for (route, attachments) in routes {
        if route.streams.is_empty() {
            continue;
        }
        for a in attachments {
            attached
                .entry((&a.gateway, a.listener.as_str()))
                .or_default()
                .push((&**route, &a.hostnames));
        }
    }

    let mut problems = Vec::new();
    // (port, address, protocol) -> stream routes, in the order they are found.
    let mut sockets: BTreeMap<(u16, IpAddr, i32), Vec<(Order, StreamRoute)>> = BTreeMap::new();
    for plan in plans.values().filter(|p| p.is_programmed()) {
        for listener in plan.listeners.iter().filter(|l| l.is_valid()) {
            let Some(protocol) = stream_protocol(listener) else {
                continue;
            };
            let terminate = if protocol == Protocol::Tls {
                match termination(index, secrets, plan, listener) {
                    Ok(t) => t,
                    Err(problem) => {
                        if listener.origin == Origin::Gateway {
                            problems.push((
                                plan.key.clone(),
                                listener.section_name.clone(),
                                problem,
                            ));
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let found = attached
                .get(&(&plan.key, listener.name.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut stream_routes = Vec::new();
            for (route, hostnames) in found {
                for rule in &route.streams {
                    let hostnames: Vec<String> = if protocol == Protocol::Tls {
                        hostnames.to_vec()
                    } else {
                        Vec::new()
                    };
                    let order = Order {
                        hostname: hostnames.first().cloned().unwrap_or_default(),
                        created: route.created.clone(),
                        route: route.key.to_string(),
                        rule: rule.rule,
                    };
                    stream_routes.push((
                        order,
                        StreamRoute {
                            name: format!(
                                "{}/rule/{}/{}/{}",
                                route.key, rule.rule, plan.key, listener.name
                            ),
                            route: format!("{}/{}", route.kind, route.key),
                            hostnames,
                            backends: rule.backends.clone(),
                            terminate: terminate.clone(),
                        },
                    ));
                }
            }
            for address in &plan.addresses {
                sockets
                    .entry((plan.bind_port(listener), *address, protocol as i32))
                    .or_default()
                    .extend(stream_routes.iter().cloned());
            }
        }
    }

    for ((port, address, protocol), mut stream_routes) in sockets {
        stream_routes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let stream_routes: Vec<StreamRoute> = stream_routes.into_iter().map(|(_, r)| r).collect();
        let mut name = SocketAddr::new(address, port).to_string();
        if protocol == Protocol::Udp as i32 {
            name.push_str("/udp");
        }
        match config.listeners.iter_mut().find(|l| l.name == name) {
            // A socket of HTTPS listeners of another Gateway: the proxy hands the
            // connections whose SNI a stream route matches over to it.
            Some(existing) => existing.stream_routes.extend(stream_routes),
            None => config.listeners.push(Listener {
                name,
                address: address.to_string(),
                port: u32::from(port),
                protocol,
                virtual_hosts: Vec::new(),
                gateway_port: 0,
                stream_routes,
            }),
        }
    }
    config.listeners.sort_by(|a, b| {
        (a.port, a.address.parse::<IpAddr>().ok(), &a.name).cmp(&(
            b.port,
            b.address.parse::<IpAddr>().ok(),
            &b.name,
        ))
    });
    config.version = String::new();
    config.version = config::version(config);
    problems
}

/// Where a stream route sits among the others of its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Order {
    /// The most specific hostname it answers for ("" for TCP and UDP).
    hostname: String,
    created: Option<portico_api::k8s::Time>,
    route: String,
    rule: usize,
}

impl Ord for Order {
    fn cmp(&self, other: &Self) -> Ordering {
        hostname::specificity(&self.hostname, &other.hostname)
            .then_with(|| match (&self.created, &other.created) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then_with(|| self.route.cmp(&other.route))
            .then_with(|| self.rule.cmp(&other.rule))
    }
}

impl PartialOrd for Order {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `tls` block of a listener, whichever object declares it (a ListenerSet's has the
/// same schema as a Gateway's).
fn listener_tls(
    index: &Index<'_>,
    plan: &GatewayPlan<'_>,
    listener: &ListenerPlan,
) -> Option<GatewayListenersTls> {
    match &listener.origin {
        Origin::Gateway => index
            .gateways
            .get(&plan.key)?
            .spec
            .listeners
            .iter()
            .find(|s| s.name == listener.section_name)?
            .tls
            .clone(),
        Origin::ListenerSet(key) => {
            let spec = index
                .listener_sets
                .get(key)?
                .spec
                .listeners
                .iter()
                .find(|s| s.name == listener.section_name)?;
            serde_json::to_value(spec.tls.as_ref()?)
                .and_then(serde_json::from_value)
                .ok()
        }
    }
}

/// A TLS listener's termination: `None` for Passthrough, the certificates for Terminate
/// (the CRD's default mode), or why they cannot be used.
fn termination(
    index: &Index<'_>,
    secrets: &Secrets<'_>,
    plan: &GatewayPlan<'_>,
    listener: &ListenerPlan,
) -> Result<Option<TlsTermination>, TlsProblem> {
    let spec = listener_tls(index, plan, listener);
    let passthrough = spec
        .as_ref()
        .and_then(|t| t.mode.as_ref())
        .is_some_and(|m| *m == GatewayListenersTlsMode::Passthrough);
    if passthrough {
        return Ok(None);
    }
    // Certificates are looked up from the namespace of the object that declares the
    // listener, as for HTTPS listeners.
    let owner = match &listener.origin {
        Origin::Gateway => plan.key.clone(),
        Origin::ListenerSet(key) => key.clone(),
    };
    let resolved = tls::resolve(index, secrets, &owner, spec.as_ref());
    match resolved.problem {
        Some(problem) => Err(problem),
        None if resolved.certificates.is_empty() => Err(TlsProblem {
            reason: portico_api::names::reason::INVALID_CERTIFICATE_REF,
            message: "a TLS listener in Terminate mode needs at least one certificateRef"
                .to_owned(),
        }),
        None => Ok(Some(TlsTermination {
            certificates: resolved.certificates,
            client_validation: None,
        })),
    }
}
