//! backendRefs -> weighted backends, and Service ports -> clusters.
//!
//! ```text
//! backendRef ──resolve──> WeightedBackend { weight, cluster: "<ns>/<svc>:<port>", filters }
//!                     └─> WeightedBackend { weight, invalid: "<Reason>: <message>" }
//! ClusterRef (ns, svc, port) ──build_cluster──> Cluster { endpoints from EndpointSlices }
//! ```
//!
//! A RequestMirror's backendRef goes through the same [`resolve`] checks; what differs
//! is what happens when it fails (the mirror is dropped, see [`crate::filters`]).
//!
//! Gateway API (HTTPRoute backendRefs): "When a HTTPBackendRef is invalid, 500 status
//! codes MUST be returned for requests that would have otherwise been routed to an invalid
//! backend. If multiple backends are specified, and some are invalid, the proportion of
//! requests that would otherwise have been routed to an invalid backend MUST receive a
//! 500 status code." So an invalid ref keeps its weight and carries its reason to the
//! proxy instead of vanishing.

use std::collections::BTreeMap;

use portico_api::config::v1::{
    Cluster, ClusterProtocol, Endpoint, Filter, WeightedBackend, weighted_backend,
};
use portico_api::gateway::httproutes::HttpRouteRulesBackendRefs;
use portico_api::k8s::{EndpointSlice, Service, ServicePort};
use portico_api::names::{self, kind};

use crate::error::BackendError;
use crate::index::Index;
use crate::status::ObjectRef;

/// The appProtocol that asks for cleartext HTTP/2 to the backend (KEP-3726).
const APP_PROTOCOL_H2C: &str = "kubernetes.io/h2c";

/// A reference to a backend, as backendRefs and RequestMirror backendRefs both spell it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackendRef<'a> {
    pub(crate) group: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) port: Option<i32>,
}

impl<'a> From<&'a HttpRouteRulesBackendRefs> for BackendRef<'a> {
    fn from(r: &'a HttpRouteRulesBackendRefs) -> Self {
        Self {
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            name: &r.name,
            namespace: r.namespace.as_deref(),
            port: r.port,
        }
    }
}

/// A Service port some route sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClusterRef {
    pub(crate) service: ObjectRef,
    pub(crate) port: i32,
}

impl ClusterRef {
    pub(crate) fn name(&self) -> String {
        format!("{}:{}", self.service, self.port)
    }
}

/// The backends of one rule.
#[derive(Debug, Default)]
pub(crate) struct ResolvedBackends {
    /// Weight-0 refs are left out: they take no share of traffic.
    pub(crate) backends: Vec<WeightedBackend>,
    /// The clusters those backends name.
    pub(crate) clusters: Vec<ClusterRef>,
    /// Every ref that could not be resolved, weight 0 or not (it is still a bad ref).
    pub(crate) errors: Vec<BackendError>,
}

/// Resolves an HTTPRoute rule's backendRefs; `filters[i]` are the converted filters of
/// `refs[i]` (see [`crate::filters::convert_backend`]).
pub(crate) fn resolve_all(
    index: &Index<'_>,
    route_namespace: &str,
    refs: &[HttpRouteRulesBackendRefs],
    mut filters: Vec<Vec<Filter>>,
) -> ResolvedBackends {
    filters.resize(refs.len(), Vec::new());
    let weighted = refs
        .iter()
        .zip(filters)
        .map(|(r, f)| (BackendRef::from(r), r.weight, f));
    resolve_weighted(index, (kind::HTTP_ROUTE, route_namespace), weighted)
}

/// Resolves the backendRefs of a rule of any route kind, given as (reference, weight,
/// filters); `from` is the route's kind and namespace (for ReferenceGrants).
pub(crate) fn resolve_weighted<'r>(
    index: &Index<'_>,
    from: (&str, &str),
    refs: impl IntoIterator<Item = (BackendRef<'r>, Option<i32>, Vec<Filter>)>,
) -> ResolvedBackends {
    let mut out = ResolvedBackends::default();
    for (r, weight, filters) in refs {
        // Gateway API: "Weight [...] If unspecified, weight defaults to 1." The CRD bounds
        // it to 0..=1000000; a negative weight from unvalidated YAML counts as 0.
        let weight = u32::try_from(weight.unwrap_or(1)).unwrap_or(0);
        let target = match resolve_from(index, from, r) {
            Ok(cluster) => {
                let target = weighted_backend::Target::Cluster(cluster.name());
                if weight > 0 && !out.clusters.contains(&cluster) {
                    out.clusters.push(cluster);
                }
                target
            }
            Err(error) => {
                let target =
                    weighted_backend::Target::Invalid(format!("{}: {error}", error.reason()));
                out.errors.push(error);
                target
            }
        };
        if weight > 0 {
            out.backends.push(WeightedBackend {
                weight,
                target: Some(target),
                filters,
            });
        }
    }
    out
}

/// Checks one backendRef of a route of kind `from.0` in namespace `from.1`, in the order
/// that leaks the least: the kind first, then whether a cross-namespace reference is
/// granted (before revealing whether the Service exists), then the Service and its port.
pub(crate) fn resolve_from(
    index: &Index<'_>,
    from: (&str, &str),
    r: BackendRef<'_>,
) -> Result<ClusterRef, BackendError> {
    let (route_kind, route_namespace) = from;
    let group = r.group.unwrap_or("");
    let kind = r.kind.unwrap_or(kind::SERVICE);
    if !group.is_empty() || kind != kind::SERVICE {
        return Err(BackendError::InvalidKind {
            group: group.to_owned(),
            kind: kind.to_owned(),
            name: r.name.to_owned(),
        });
    }
    let namespace = r
        .namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or(route_namespace);
    // Gateway API (BackendObjectReference namespace): "Note that when a namespace
    // different than the local namespace is specified, a ReferenceGrant object is required
    // in the referent namespace to allow that namespace's owner to accept the reference."
    if namespace != route_namespace
        && !index.reference_granted(
            (names::GATEWAY_API_GROUP, route_kind, route_namespace),
            ("", kind::SERVICE, namespace, r.name),
        )
    {
        return Err(BackendError::NotPermitted {
            kind: route_kind.to_owned(),
            from: route_namespace.to_owned(),
            namespace: namespace.to_owned(),
            name: r.name.to_owned(),
        });
    }
    let service = ObjectRef::new(namespace, r.name.to_owned());
    let Some(port) = r.port else {
        return Err(BackendError::MissingPort {
            namespace: namespace.to_owned(),
            name: r.name.to_owned(),
        });
    };
    let svc = index
        .services
        .get(&service)
        .ok_or_else(|| BackendError::ServiceNotFound {
            namespace: namespace.to_owned(),
            name: r.name.to_owned(),
        })?;
    let Some(service_port) = service_port(svc, port) else {
        return Err(BackendError::PortNotFound {
            namespace: namespace.to_owned(),
            name: r.name.to_owned(),
            port,
        });
    };
    // A BackendTLSPolicy that cannot be used makes the backend invalid: "Connections
    // using an invalid CACertificateRef MUST fail, and the client MUST receive an HTTP
    // 5xx error response" (see crate::backend_tls).
    let port_name = service_port.name.as_deref().unwrap_or("");
    index.backend_tls.lookup(&service, port, port_name)?;
    Ok(ClusterRef { service, port })
}

fn service_port(svc: &Service, port: i32) -> Option<&ServicePort> {
    svc.spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == port)
}

/// The cluster for a Service port: its endpoints come from the Service's EndpointSlices,
/// from the slice port with the same name as the Service port (the only one when the
/// Service port is unnamed).
pub(crate) fn build_cluster(index: &Index<'_>, cluster: &ClusterRef) -> Cluster {
    let port = index
        .services
        .get(&cluster.service)
        .and_then(|svc| service_port(svc, cluster.port));
    // Anything but h2c is spoken as HTTP/1.1, which includes `kubernetes.io/ws`:
    // WebSocket is an HTTP/1.1 Upgrade, which the proxy passes through to HTTP/1.1
    // clusters.
    let protocol = match port.and_then(|p| p.app_protocol.as_deref()) {
        Some(APP_PROTOCOL_H2C) => ClusterProtocol::H2c,
        _ => ClusterProtocol::Http1,
    };
    let port_name = port.and_then(|p| p.name.as_deref()).unwrap_or("");

    // (address, port) -> endpoint: a pod can appear in two slices while they are being
    // rebalanced; it is ready if any slice says so.
    let mut endpoints: BTreeMap<(String, u32), Endpoint> = BTreeMap::new();
    for slice in index.slices.get(&cluster.service).into_iter().flatten() {
        let Some(target_port) = slice_port(slice, port_name) else {
            continue;
        };
        for e in slice.endpoints.iter().flatten() {
            // Gateway API leaves FQDN slices to the implementation; the proxy connects to
            // IPs only.
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            // EndpointConditions: "ready [...] A nil value should be interpreted as
            // 'true'."
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let pod = e
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default();
            for address in &e.addresses {
                let entry = endpoints
                    .entry((address.clone(), target_port))
                    .or_insert_with(|| Endpoint {
                        address: address.clone(),
                        port: target_port,
                        ready,
                        pod: pod.clone(),
                    });
                entry.ready |= ready;
                if entry.pod.is_empty() {
                    entry.pod = pod.clone();
                }
            }
        }
    }
    Cluster {
        name: cluster.name(),
        endpoints: endpoints.into_values().collect(),
        protocol: protocol as i32,
        // Unusable policies never get here: resolve() turned their backends invalid.
        tls: index
            .backend_tls
            .lookup(&cluster.service, cluster.port, port_name)
            .ok()
            .flatten(),
    }
}

fn slice_port(slice: &EndpointSlice, name: &str) -> Option<u32> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let by_name = ports
        .iter()
        .find(|p| p.name.as_deref().unwrap_or("") == name);
    let port = match (by_name, ports) {
        (Some(p), _) => p,
        (None, [only]) if name.is_empty() => only,
        (None, _) => return None,
    };
    port.port.and_then(|p| u32::try_from(p).ok())
}
