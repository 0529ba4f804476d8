//! The Services and EndpointSlices the agent knows, one index per kind, fed by a source
//! (the Kubernetes watches or a folder) through `apply` / `delete` / `reset`.
//!
//! ```text
//!   Inventory {
//!     services: (namespace, name) -> Service
//!     slices:   (namespace, name) -> EndpointSlice
//!   } ──entries(node)──> [ServiceEntry]     (source::service_entries_with, pure)
//!     ──lb_ips()───────> {LoadBalancer IPs}  (what L2 announcements elect nodes for)
//! ```
//!
//! Snapshots are cheap to publish (`Arc<Inventory>` on a watch channel); the datapath
//! diffs the entries against what it programmed, so republishing an unchanged inventory
//! writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use portico_api::k8s::{EndpointSlice, Service};
use portico_api::k8s_openapi::Metadata;
use portico_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::manifests::Manifests;
use crate::service::ServiceEntry;
use crate::source::{SourceOptions, service_entries_with};

/// `(namespace, name)`.
pub type Key = (String, String);

fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// One index of objects of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Index<K> {
    objects: BTreeMap<Key, K>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index {
            objects: BTreeMap::new(),
        }
    }
}

impl<K: Metadata<Ty = ObjectMeta>> Index<K> {
    /// Adds or replaces an object.
    pub fn apply(&mut self, obj: K) {
        self.objects.insert(key_of(obj.metadata()), obj);
    }

    /// Removes an object; returns whether it was there.
    pub fn delete(&mut self, obj: &K) -> bool {
        self.objects.remove(&key_of(obj.metadata())).is_some()
    }

    /// Replaces every object (a relist).
    pub fn reset(&mut self, objs: impl IntoIterator<Item = K>) {
        self.objects = objs
            .into_iter()
            .map(|o| (key_of(o.metadata()), o))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values()
    }
}

/// Everything a source has told the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub services: Index<Service>,
    pub slices: Index<EndpointSlice>,
}

impl Inventory {
    /// The inventory of a folder's manifests.
    pub fn from_manifests(m: Manifests) -> Self {
        let mut inv = Inventory::default();
        inv.services.reset(m.services);
        inv.slices.reset(m.slices);
        inv
    }

    /// The service entries to program on the node `opts` describes.
    pub fn entries(&self, opts: &SourceOptions) -> Vec<ServiceEntry> {
        let services: Vec<Service> = self.services.values().cloned().collect();
        let slices: Vec<EndpointSlice> = self.slices.values().cloned().collect();
        service_entries_with(opts, &services, &slices)
    }

    /// The IPv4 addresses in `status.loadBalancer.ingress` of LoadBalancer Services: the
    /// addresses some node must answer ARP for.
    pub fn lb_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.services
            .values()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|spec| spec.type_.as_deref())
                    .is_some_and(|t| t == "LoadBalancer")
            })
            .filter_map(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifests::parse_into;

    fn inventory(yaml: &str) -> Inventory {
        let mut m = Manifests::default();
        parse_into(Path::new("test.yaml"), yaml, &mut m);
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        Inventory::from_manifests(m)
    }

    const LB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: a}\n\
        spec: {type: LoadBalancer, clusterIP: 10.96.0.9, ports: [{port: 80}]}\n\
        status: {loadBalancer: {ingress: [{ip: 172.18.0.200}, {hostname: x.example}]}}\n---\n\
        apiVersion: v1\nkind: Service\nmetadata: {name: cip, namespace: a}\n\
        spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n\
        status: {loadBalancer: {ingress: [{ip: 172.18.0.201}]}}\n";

    #[test]
    fn lb_ips_are_the_ingress_ips_of_load_balancer_services_only() {
        let inv = inventory(LB);
        assert_eq!(
            inv.lb_ips().into_iter().collect::<Vec<_>>(),
            ["172.18.0.200".parse::<Ipv4Addr>().unwrap()]
        );
    }

    #[test]
    fn apply_delete_and_reset_keep_one_object_per_key() {
        let mut inv = inventory(LB);
        assert_eq!(inv.services.len(), 2);
        let lb = inv.services.values().next().unwrap().clone();
        inv.services.apply(lb.clone());
        assert_eq!(inv.services.len(), 2);
        assert!(inv.services.delete(&lb));
        assert!(!inv.services.delete(&lb));
        // `cip` is gone; `lb` has its cluster IP and its load-balancer IP.
        assert_eq!(
            inv.services
                .values()
                .next()
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("lb")
        );
        assert_eq!(inv.entries(&SourceOptions::default()).len(), 2);
        inv.services.reset([lb]);
        assert_eq!(inv.services.len(), 1);
    }
}
