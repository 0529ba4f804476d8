//! Which index of the [`Store`] each watched kind feeds, and how one kind's watch events
//! become `apply`/`delete`/`reset` calls.
//!
//! ```text
//!   watcher::Event<K>           Relist<K>                       Index<K> in the Store
//!   ─────────────────           ─────────                       ─────────────────────
//!   Apply(obj)          ──>     prune(obj)              ──>     apply(obj)
//!   Delete(obj)         ──>                             ──>     delete(key)
//!   Init                ──>     buffer = []
//!   InitApply(obj)      ──>     buffer.push(prune(obj))
//!   InitDone            ──>     take buffer             ──>     reset(buffer)   (kind synced)
//! ```
//!
//! A relist (first start, or a watch that expired with 410 Gone) is buffered until it is
//! complete and then replaces the index at once, so the translator never sees half a
//! list: objects that were deleted while the watch was down disappear, and nothing that
//! still exists flickers out.

use std::fmt::Debug;

use kube::runtime::watcher::Event;
use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::kube::Resource;
use serde::de::DeserializeOwned;

use crate::object::ObjectKey;
use crate::store::{Index, Store};

/// A kind the Kubernetes provider watches: where its objects go in the [`Store`].
pub trait Watched:
    Resource<DynamicType = ()> + Clone + PartialEq + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// The index of this kind in `store`.
    fn index(store: &mut Store) -> &mut Index<Self>;
}

macro_rules! watched {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl Watched for $ty {
            fn index(store: &mut Store) -> &mut Index<Self> {
                &mut store.$field
            }
        })*
    };
}

watched!(
    GatewayClass => gateway_classes,
    Gateway => gateways,
    ListenerSet => listener_sets,
    HttpRoute => http_routes,
    GrpcRoute => grpc_routes,
    TlsRoute => tls_routes,
    TcpRoute => tcp_routes,
    UdpRoute => udp_routes,
    ReferenceGrant => reference_grants,
    Service => services,
    EndpointSlice => endpoint_slices,
    Namespace => namespaces,
    Secret => secrets,
    BackendTlsPolicy => backend_tls_policies,
    ConfigMap => config_maps,
);

/// Drops what the translator never reads and what changes on every write:
/// `managedFields` is large and moves with each status patch of any controller.
pub fn prune<K: Resource>(mut obj: K) -> K {
    obj.meta_mut().managed_fields = None;
    obj
}

/// One kind's watch state: the objects of a relist in progress.
#[derive(Debug)]
pub struct Relist<K> {
    buffer: Option<Vec<K>>,
    synced: bool,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self {
            buffer: None,
            synced: false,
        }
    }
}

impl<K: Watched> Relist<K> {
    /// Applies one watch event to `store`; returns whether the store changed.
    pub fn handle(&mut self, store: &mut Store, event: Event<K>) -> bool {
        match event {
            Event::Apply(obj) => K::index(store).apply(prune(obj)),
            Event::Delete(obj) => K::index(store).delete(&ObjectKey::of(&obj)),
            Event::Init => {
                self.buffer = Some(Vec::new());
                false
            }
            Event::InitApply(obj) => {
                self.buffer.get_or_insert_with(Vec::new).push(prune(obj));
                false
            }
            Event::InitDone => {
                self.synced = true;
                let objs = self.buffer.take().unwrap_or_default();
                K::index(store).reset(objs)
            }
        }
    }

    /// Whether a complete list of this kind has reached the store at least once.
    pub fn is_synced(&self) -> bool {
        self.synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::k8s::ObjectMeta;
    use portico_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn mk_service(ns: &str, name: &str, cluster_ip: &str) -> Service {
        let mut s = Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        s.spec.get_or_insert_default().cluster_ip = Some(cluster_ip.into());
        s
    }

    fn names(store: &Store) -> Vec<String> {
        store.services.iter().map(|(k, _)| k.to_string()).collect()
    }

    #[test]
    fn apply_and_delete_feed_the_index_of_the_kind() {
        let mut store = Store::default();
        let mut relist = Relist::<Service>::default();
        assert!(relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.1"))));
        assert!(!relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.1"))));
        assert!(relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.2"))));
        let stored = store.services.get(&ObjectKey::namespaced("a", "s"));
        assert_eq!(stored.and_then(|s| s.metadata.managed_fields.clone()), None);
        assert!(relist.handle(&mut store, Event::Delete(mk_service("a", "s", "x"))));
        assert!(!relist.handle(&mut store, Event::Delete(mk_service("a", "s", "x"))));
        assert!(store.is_empty());
    }

    #[test]
    fn relist_replaces_the_index_only_when_done() {
        let mut store = Store::default();
        let mut relist = Relist::<Service>::default();
        relist.handle(
            &mut store,
            Event::Apply(mk_service("a", "gone", "10.0.0.1")),
        );
        relist.handle(
            &mut store,
            Event::Apply(mk_service("a", "kept", "10.0.0.2")),
        );
        assert!(!relist.is_synced());

        assert!(!relist.handle(&mut store, Event::Init));
        assert!(!relist.handle(
            &mut store,
            Event::InitApply(mk_service("a", "kept", "10.0.0.2"))
        ));
        assert!(!relist.handle(
            &mut store,
            Event::InitApply(mk_service("b", "new", "10.0.0.3"))
        ));
        // Mid-relist, the store still holds the previous complete list.
        assert_eq!(names(&store), ["a/gone", "a/kept"]);

        assert!(relist.handle(&mut store, Event::InitDone));
        assert!(relist.is_synced());
        assert_eq!(names(&store), ["a/kept", "b/new"]);

        // A relist that finds the same objects changes nothing.
        relist.handle(&mut store, Event::Init);
        relist.handle(
            &mut store,
            Event::InitApply(mk_service("b", "new", "10.0.0.3")),
        );
        relist.handle(
            &mut store,
            Event::InitApply(mk_service("a", "kept", "10.0.0.2")),
        );
        assert!(!relist.handle(&mut store, Event::InitDone));
    }

    #[test]
    fn kinds_feed_their_own_index() {
        let mut store = Store::default();
        let mut ns = Namespace::default();
        ns.metadata.name = Some("apps".into());
        Relist::<Namespace>::default().handle(&mut store, Event::Apply(ns));
        let mut class = GatewayClass::default();
        class.metadata.name = Some("portico".into());
        Relist::<GatewayClass>::default().handle(&mut store, Event::Apply(class));
        assert_eq!(store.namespaces.len(), 1);
        assert_eq!(store.gateway_classes.len(), 1);
        assert_eq!(store.len(), 2);
    }
}
