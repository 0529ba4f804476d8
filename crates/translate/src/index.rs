//! Lookups over an [`Inputs`] snapshot, built once per translation.
//!
//! Everything is keyed in `BTreeMap`s so that iteration order depends on object names,
//! never on the order the provider listed them in.

use std::collections::BTreeMap;

use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{EndpointSlice, ObjectMeta, Service};
use portico_api::names::{self, kind};

use crate::backend_tls::BackendTlsPolicies;
use crate::inputs::{Inputs, Options};
use crate::status::ObjectRef;

/// The namespace a namespaced object lives in when its manifest names none (as kubectl
/// does; only standalone YAML can lack it).
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

pub(crate) fn object_ref(meta: &ObjectMeta) -> ObjectRef {
    ObjectRef::new(
        meta.namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        meta.name.clone().unwrap_or_default(),
    )
}

pub(crate) struct Index<'a> {
    pub(crate) options: &'a Options,
    /// Our GatewayClasses (controllerName matches), by name.
    pub(crate) classes: BTreeMap<String, &'a GatewayClass>,
    /// Every Gateway, ours or not: a parentRef to a Gateway of another controller must be
    /// told apart from one to ours.
    pub(crate) gateways: BTreeMap<ObjectRef, &'a Gateway>,
    pub(crate) listener_sets: BTreeMap<ObjectRef, &'a ListenerSet>,
    pub(crate) http_routes: BTreeMap<ObjectRef, &'a HttpRoute>,
    pub(crate) grpc_routes: BTreeMap<ObjectRef, &'a GrpcRoute>,
    pub(crate) tls_routes: BTreeMap<ObjectRef, &'a TlsRoute>,
    pub(crate) tcp_routes: BTreeMap<ObjectRef, &'a TcpRoute>,
    pub(crate) udp_routes: BTreeMap<ObjectRef, &'a UdpRoute>,
    pub(crate) services: BTreeMap<ObjectRef, &'a Service>,
    /// EndpointSlices by the Service they belong to (`kubernetes.io/service-name`), in
    /// slice name order.
    pub(crate) slices: BTreeMap<ObjectRef, Vec<&'a EndpointSlice>>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// ReferenceGrants by the namespace they live in (the target namespace).
    grants: BTreeMap<String, Vec<&'a ReferenceGrant>>,
    /// BackendTLSPolicies resolved against the ConfigMaps, see [`crate::backend_tls`].
    pub(crate) backend_tls: BackendTlsPolicies<'a>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(inputs: &'a Inputs, options: &'a Options) -> Self {
        let classes = inputs
            .gateway_classes
            .iter()
            .filter(|c| c.spec.controller_name == options.controller_name)
            .filter_map(|c| Some((c.metadata.name.clone()?, c)))
            .collect::<BTreeMap<_, _>>();
        let gateways = keyed(&inputs.gateways, |g| &g.metadata);
        let listener_sets = keyed(&inputs.listener_sets, |l| &l.metadata);
        let http_routes = keyed(&inputs.http_routes, |r| &r.metadata);
        let grpc_routes = keyed(&inputs.grpc_routes, |r| &r.metadata);
        let tls_routes = keyed(&inputs.tls_routes, |r| &r.metadata);
        let tcp_routes = keyed(&inputs.tcp_routes, |r| &r.metadata);
        let udp_routes = keyed(&inputs.udp_routes, |r| &r.metadata);
        let services = keyed(&inputs.services, |s| &s.metadata);

        let mut by_name: Vec<(ObjectRef, ObjectRef, &EndpointSlice)> = inputs
            .endpoint_slices
            .iter()
            .filter_map(|slice| {
                let key = object_ref(&slice.metadata);
                let service = slice
                    .metadata
                    .labels
                    .as_ref()?
                    .get(names::ENDPOINT_SLICE_SERVICE_LABEL)?;
                Some((
                    ObjectRef::new(key.namespace.clone(), service.clone()),
                    key,
                    slice,
                ))
            })
            .collect();
        by_name.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut slices: BTreeMap<ObjectRef, Vec<&EndpointSlice>> = BTreeMap::new();
        for (service, _, slice) in by_name {
            slices.entry(service).or_default().push(slice);
        }

        let namespace_labels = inputs
            .namespaces
            .iter()
            .filter_map(|ns| {
                Some((
                    ns.metadata.name.clone()?,
                    ns.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect();

        let mut grants: BTreeMap<String, Vec<&ReferenceGrant>> = BTreeMap::new();
        for grant in &inputs.reference_grants {
            grants
                .entry(object_ref(&grant.metadata).namespace)
                .or_default()
                .push(grant);
        }

        Self {
            options,
            classes,
            gateways,
            listener_sets,
            http_routes,
            grpc_routes,
            tls_routes,
            tcp_routes,
            udp_routes,
            services,
            slices,
            namespace_labels,
            grants,
            backend_tls: BackendTlsPolicies::new(&inputs.backend_tls_policies, &inputs.config_maps),
        }
    }

    /// The name of the Service port a cluster stands for ("" when unnamed or unknown).
    pub(crate) fn service_port_name(&self, cluster: &crate::backend::ClusterRef) -> String {
        self.services
            .get(&cluster.service)
            .and_then(|svc| svc.spec.as_ref()?.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == cluster.port))
            .and_then(|p| p.name.clone())
            .unwrap_or_default()
    }

    /// Whether the Gateway belongs to one of our GatewayClasses.
    pub(crate) fn is_ours(&self, gateway: &Gateway) -> bool {
        self.classes.contains_key(&gateway.spec.gateway_class_name)
    }

    /// The Gateway a ListenerSet names as its parent; `None` when its parentRef is not
    /// a Gateway.
    ///
    /// Gateway API (ListenerSet parentRef): "Namespace is the namespace of the referent.
    /// If not present, the namespace of the referent is assumed to be the same as the
    /// namespace of the referring object."
    pub(crate) fn listener_set_parent(&self, listener_set: &ListenerSet) -> Option<ObjectRef> {
        let parent = &listener_set.spec.parent_ref;
        let group = parent.group.as_deref().unwrap_or(names::GATEWAY_API_GROUP);
        let parent_kind = parent.kind.as_deref().unwrap_or(kind::GATEWAY);
        if group != names::GATEWAY_API_GROUP || parent_kind != kind::GATEWAY {
            return None;
        }
        let own = object_ref(&listener_set.metadata);
        Some(ObjectRef::new(
            parent
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(own.namespace),
            parent.name.clone(),
        ))
    }

    /// A namespace's labels. The API server sets `kubernetes.io/metadata.name` on every
    /// namespace; it is added here too so that selectors on it work for namespaces that a
    /// standalone folder does not declare.
    pub(crate) fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespace_labels
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        labels.insert(names::NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned());
        labels
    }

    /// Whether a ReferenceGrant in `to_namespace` lets `from_kind` objects of
    /// `from_group` in `from_namespace` refer to the `to_group`/`to_kind` object `to_name`.
    ///
    /// Gateway API (ReferenceGrant): "ReferenceGrant identifies kinds of resources in other
    /// namespaces that are trusted to reference the specified kinds of resources in the
    /// same namespace as the policy. [...] To: Name is the name of the referent. When
    /// unspecified, this policy refers to all resources of the specified Group and Kind in
    /// the local namespace."
    pub(crate) fn reference_granted(
        &self,
        from: (&str, &str, &str),
        to: (&str, &str, &str, &str),
    ) -> bool {
        let (from_group, from_kind, from_namespace) = from;
        let (to_group, to_kind, to_namespace, to_name) = to;
        self.grants.get(to_namespace).is_some_and(|grants| {
            grants.iter().any(|grant| {
                grant.spec.from.iter().any(|f| {
                    f.group == from_group && f.kind == from_kind && f.namespace == from_namespace
                }) && grant.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name
                            .as_deref()
                            .is_none_or(|n| n.is_empty() || n == to_name)
                })
            })
        })
    }
}

/// Objects by namespace/name; on duplicate keys the first one listed wins.
fn keyed<T>(items: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> BTreeMap<ObjectRef, &T> {
    let mut map = BTreeMap::new();
    for item in items {
        map.entry(object_ref(meta(item))).or_insert(item);
    }
    map
}
