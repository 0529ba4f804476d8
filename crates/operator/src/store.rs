//! The store: one index per watched kind, fed by every provider, read as a snapshot.
//!
//! ```text
//!   provider (file | kubernetes)
//!      │ apply(obj) / delete(key) / reset(objs)
//!      ▼
//!   Store ── gateway_classes: Index<GatewayClass>   BTreeMap<ObjectKey, GatewayClass>
//!         ├─ gateways:        Index<Gateway>
//!         ├─ listener_sets:   Index<ListenerSet>
//!         ├─ http_routes:     Index<HttpRoute>
//!         ├─ grpc_routes, tls_routes, tcp_routes, udp_routes: one Index each
//!         ├─ reference_grants:Index<ReferenceGrant>
//!         ├─ services:        Index<Service>
//!         ├─ endpoint_slices: Index<EndpointSlice>
//!         ├─ namespaces:      Index<Namespace>
//!         ├─ secrets:         Index<Secret>     (certificates of HTTPS listeners)
//!         ├─ backend_tls_policies: Index<BackendTlsPolicy>
//!         └─ config_maps:     Index<ConfigMap>  (CA bundles of BackendTLSPolicies)
//!      │ snapshot()
//!      ▼
//!   Inputs (every list sorted by (namespace, name)) ──> translator
//! ```
//!
//! Indexes are plain structs with no I/O: a watch calls `apply`/`delete`/`reset` and the
//! caller decides when to take a snapshot. Every mutation reports whether it changed
//! anything, so providers can avoid publishing identical snapshots.

use std::collections::{BTreeMap, BTreeSet};

use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::kube::Resource;

use crate::Inputs;
use crate::object::{Object, ObjectKey};

/// The objects of one kind, keyed by `(namespace, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Index<K> {
    objects: BTreeMap<ObjectKey, K>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
        }
    }
}

impl<K: Resource + Clone + PartialEq> Index<K> {
    /// Inserts or replaces the object with the same key; returns whether anything changed.
    pub fn apply(&mut self, obj: K) -> bool {
        let key = ObjectKey::of(&obj);
        if self.objects.get(&key) == Some(&obj) {
            return false;
        }
        self.objects.insert(key, obj);
        true
    }

    /// Removes the object with this key; returns whether it was there.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Replaces the whole content (a relist, or a reload of every file); returns whether
    /// anything changed. When `objs` repeats a key, the last one wins.
    pub fn reset(&mut self, objs: impl IntoIterator<Item = K>) -> bool {
        let objects: BTreeMap<ObjectKey, K> =
            objs.into_iter().map(|o| (ObjectKey::of(&o), o)).collect();
        if objects == self.objects {
            return false;
        }
        self.objects = objects;
        true
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&K> {
        self.objects.get(key)
    }

    pub fn contains_key(&self, key: &ObjectKey) -> bool {
        self.objects.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &K)> {
        self.objects.iter()
    }

    /// The objects in key order, cloned (what a snapshot holds).
    pub fn to_vec(&self) -> Vec<K> {
        self.objects.values().cloned().collect()
    }
}

/// Every kind the translator reads, one index each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    pub gateway_classes: Index<GatewayClass>,
    pub gateways: Index<Gateway>,
    pub listener_sets: Index<ListenerSet>,
    pub http_routes: Index<HttpRoute>,
    pub grpc_routes: Index<GrpcRoute>,
    pub tls_routes: Index<TlsRoute>,
    pub tcp_routes: Index<TcpRoute>,
    pub udp_routes: Index<UdpRoute>,
    pub reference_grants: Index<ReferenceGrant>,
    pub services: Index<Service>,
    pub endpoint_slices: Index<EndpointSlice>,
    pub namespaces: Index<Namespace>,
    /// Certificates that HTTPS listeners refer to (and any other Secret a provider feeds).
    pub secrets: Index<Secret>,
    /// TLS from the proxies to Services.
    pub backend_tls_policies: Index<BackendTlsPolicy>,
    /// CA bundles that BackendTLSPolicies refer to (and any other ConfigMap a provider
    /// feeds).
    pub config_maps: Index<ConfigMap>,
}

impl Store {
    /// Applies an object to the index of its kind; returns whether anything changed.
    pub fn apply(&mut self, obj: Object) -> bool {
        match obj {
            Object::GatewayClass(o) => self.gateway_classes.apply(o),
            Object::Gateway(o) => self.gateways.apply(o),
            Object::ListenerSet(o) => self.listener_sets.apply(o),
            Object::HttpRoute(o) => self.http_routes.apply(o),
            Object::GrpcRoute(o) => self.grpc_routes.apply(o),
            Object::TlsRoute(o) => self.tls_routes.apply(o),
            Object::TcpRoute(o) => self.tcp_routes.apply(o),
            Object::UdpRoute(o) => self.udp_routes.apply(o),
            Object::ReferenceGrant(o) => self.reference_grants.apply(o),
            Object::Service(o) => self.services.apply(o),
            Object::EndpointSlice(o) => self.endpoint_slices.apply(o),
            Object::Namespace(o) => self.namespaces.apply(o),
            Object::Secret(o) => self.secrets.apply(o),
            Object::BackendTlsPolicy(o) => self.backend_tls_policies.apply(o),
            Object::ConfigMap(o) => self.config_maps.apply(o),
        }
    }

    /// Whether an object of the same kind and key as `obj` is in the store.
    pub fn contains(&self, obj: &Object) -> bool {
        let key = obj.key();
        match obj {
            Object::GatewayClass(_) => self.gateway_classes.contains_key(&key),
            Object::Gateway(_) => self.gateways.contains_key(&key),
            Object::ListenerSet(_) => self.listener_sets.contains_key(&key),
            Object::HttpRoute(_) => self.http_routes.contains_key(&key),
            Object::GrpcRoute(_) => self.grpc_routes.contains_key(&key),
            Object::TlsRoute(_) => self.tls_routes.contains_key(&key),
            Object::TcpRoute(_) => self.tcp_routes.contains_key(&key),
            Object::UdpRoute(_) => self.udp_routes.contains_key(&key),
            Object::ReferenceGrant(_) => self.reference_grants.contains_key(&key),
            Object::Service(_) => self.services.contains_key(&key),
            Object::EndpointSlice(_) => self.endpoint_slices.contains_key(&key),
            Object::Namespace(_) => self.namespaces.contains_key(&key),
            Object::Secret(_) => self.secrets.contains_key(&key),
            Object::BackendTlsPolicy(_) => self.backend_tls_policies.contains_key(&key),
            Object::ConfigMap(_) => self.config_maps.contains_key(&key),
        }
    }

    /// The namespaces that namespaced objects of the store live in.
    pub fn namespaces_in_use(&self) -> BTreeSet<String> {
        fn add<K: Resource + Clone + PartialEq>(index: &Index<K>, out: &mut BTreeSet<String>) {
            out.extend(index.iter().filter_map(|(k, _)| k.namespace.clone()));
        }
        let mut out = BTreeSet::new();
        add(&self.gateways, &mut out);
        add(&self.listener_sets, &mut out);
        add(&self.http_routes, &mut out);
        add(&self.grpc_routes, &mut out);
        add(&self.tls_routes, &mut out);
        add(&self.tcp_routes, &mut out);
        add(&self.udp_routes, &mut out);
        add(&self.reference_grants, &mut out);
        add(&self.services, &mut out);
        add(&self.endpoint_slices, &mut out);
        add(&self.secrets, &mut out);
        add(&self.backend_tls_policies, &mut out);
        add(&self.config_maps, &mut out);
        out
    }

    /// The translator's inputs: every list sorted by `(namespace, name)`, so equal stores
    /// give equal snapshots.
    pub fn snapshot(&self) -> Inputs {
        Inputs {
            gateway_classes: self.gateway_classes.to_vec(),
            gateways: self.gateways.to_vec(),
            listener_sets: self.listener_sets.to_vec(),
            http_routes: self.http_routes.to_vec(),
            grpc_routes: self.grpc_routes.to_vec(),
            tls_routes: self.tls_routes.to_vec(),
            tcp_routes: self.tcp_routes.to_vec(),
            udp_routes: self.udp_routes.to_vec(),
            services: self.services.to_vec(),
            endpoint_slices: self.endpoint_slices.to_vec(),
            namespaces: self.namespaces.to_vec(),
            reference_grants: self.reference_grants.to_vec(),
            secrets: self.secrets.to_vec(),
            backend_tls_policies: self.backend_tls_policies.to_vec(),
            config_maps: self.config_maps.to_vec(),
        }
    }

    /// The number of objects of every kind together.
    pub fn len(&self) -> usize {
        self.gateway_classes.len()
            + self.gateways.len()
            + self.listener_sets.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.tcp_routes.len()
            + self.udp_routes.len()
            + self.reference_grants.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.namespaces.len()
            + self.secrets.len()
            + self.backend_tls_policies.len()
            + self.config_maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_route(ns: &str, name: &str, hostname: &str) -> HttpRoute {
        let mut r = HttpRoute::default();
        r.metadata.namespace = Some(ns.into());
        r.metadata.name = Some(name.into());
        r.spec.hostnames = Some(vec![hostname.into()]);
        r
    }

    fn mk_class(name: &str) -> GatewayClass {
        let mut c = GatewayClass::default();
        c.metadata.name = Some(name.into());
        c
    }

    fn route_names(inputs: &Inputs) -> Vec<String> {
        inputs
            .http_routes
            .iter()
            .map(|r| ObjectKey::of(r).to_string())
            .collect()
    }

    #[test]
    fn apply_reports_changes_only() {
        let mut idx = Index::default();
        assert!(idx.apply(mk_route("a", "r", "x.example")));
        assert!(!idx.apply(mk_route("a", "r", "x.example")));
        assert!(idx.apply(mk_route("a", "r", "y.example")));
        assert_eq!(idx.len(), 1);
        let key = ObjectKey::namespaced("a", "r");
        assert_eq!(
            idx.get(&key).and_then(|r| r.spec.hostnames.clone()),
            Some(vec!["y.example".to_string()])
        );
        assert!(idx.delete(&key));
        assert!(!idx.delete(&key));
        assert!(idx.is_empty());
    }

    #[test]
    fn reset_replaces_everything_and_reports_changes() {
        let mut idx = Index::default();
        idx.apply(mk_route("a", "old", "x"));
        assert!(idx.reset([mk_route("b", "r", "x"), mk_route("a", "r", "x")]));
        assert!(!idx.reset([mk_route("a", "r", "x"), mk_route("b", "r", "x")]));
        let keys: Vec<String> = idx.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["a/r", "b/r"]);
    }

    #[test]
    fn snapshot_is_sorted_whatever_the_apply_order() {
        let mut one = Store::default();
        let mut two = Store::default();
        let routes = [
            mk_route("z", "a", "h"),
            mk_route("a", "z", "h"),
            mk_route("a", "b", "h"),
        ];
        for r in routes.iter().cloned() {
            one.apply(r.into());
        }
        for r in routes.iter().rev().cloned() {
            two.apply(r.into());
        }
        one.apply(mk_class("b").into());
        one.apply(mk_class("a").into());
        assert_eq!(route_names(&one.snapshot()), ["a/b", "a/z", "z/a"]);
        assert_eq!(route_names(&two.snapshot()), ["a/b", "a/z", "z/a"]);
        let classes: Vec<String> = one
            .snapshot()
            .gateway_classes
            .iter()
            .map(|c| ObjectKey::of(c).to_string())
            .collect();
        assert_eq!(classes, ["a", "b"]);
        assert_eq!(one.len(), 5);
    }

    #[test]
    fn namespaces_in_use_ignores_cluster_scoped_kinds() {
        let mut store = Store::default();
        store.apply(mk_route("apps", "r", "h").into());
        store.apply(mk_class("c").into());
        let mut svc = Service::default();
        svc.metadata.namespace = Some("backends".into());
        svc.metadata.name = Some("echo".into());
        store.apply(svc.into());
        assert!(store.contains(&mk_route("apps", "r", "other").into()));
        let in_use: Vec<String> = store.namespaces_in_use().into_iter().collect();
        assert_eq!(in_use, ["apps", "backends"]);
    }

    #[test]
    fn listener_sets_reach_the_snapshot() {
        let mut store = Store::default();
        let mut ls = ListenerSet::default();
        ls.metadata.namespace = Some("teams".into());
        ls.metadata.name = Some("extra".into());
        assert!(store.apply(ls.clone().into()));
        assert!(!store.apply(ls.clone().into()));
        assert!(store.contains(&ls.into()));
        assert_eq!(store.len(), 1);
        let in_use: Vec<String> = store.namespaces_in_use().into_iter().collect();
        assert_eq!(in_use, ["teams"]);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.listener_sets.len(), 1);
        assert_eq!(
            snapshot.listener_sets[0].metadata.name.as_deref(),
            Some("extra")
        );
    }
}
