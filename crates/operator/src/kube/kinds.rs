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
//!
//! A watch of one named object ([`Relist::named`]: the ConfigMaps that BackendTLSPolicies
//! and Gateways name as CA bundles) shares its kind's index with other such watches: its
//! relist replaces only that one key.
//!
//! Besides the translator's [`Store`], the watches fill [`Watched::index`]es of kinds
//! the translator does not read: `PorticoGatewayClassConfig`s, which the operator
//! resolves itself (see [`crate::class`]).

use std::fmt::Debug;

use kube::runtime::watcher::Event;
use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, Secret, Service};
use portico_api::kube::Resource;
use portico_api::portico::PorticoGatewayClassConfig;
use serde::de::DeserializeOwned;

use crate::object::ObjectKey;
use crate::store::{Index, Store};

/// Everything the watches fill: the translator's [`Store`], and the kinds the operator
/// reads itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub store: Store,
    /// What GatewayClasses' `parametersRef`s point at.
    pub class_configs: Index<PorticoGatewayClassConfig>,
}

/// A kind the Kubernetes provider watches: where its objects go in [`Objects`].
pub trait Watched:
    Resource<DynamicType = ()> + Clone + PartialEq + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// The index of this kind in `objects`.
    fn index(objects: &mut Objects) -> &mut Index<Self>;
}

macro_rules! watched {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl Watched for $ty {
            fn index(objects: &mut Objects) -> &mut Index<Self> {
                &mut objects.store.$field
            }
        })*
    };
}

impl Watched for PorticoGatewayClassConfig {
    fn index(objects: &mut Objects) -> &mut Index<Self> {
        &mut objects.class_configs
    }
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

/// One watch's state: the objects of a relist in progress.
#[derive(Debug)]
pub struct Relist<K> {
    buffer: Option<Vec<K>>,
    synced: bool,
    /// The one object a named watch is about; `None` for a watch of the whole kind.
    only: Option<ObjectKey>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self {
            buffer: None,
            synced: false,
            only: None,
        }
    }
}

impl<K> Relist<K> {
    /// The state of a watch of the one object `key` (a field selector on its name):
    /// its relist replaces that key of the index and leaves the others alone.
    pub fn named(key: ObjectKey) -> Self {
        Self {
            buffer: None,
            synced: false,
            only: Some(key),
        }
    }
}

impl<K: Watched> Relist<K> {
    /// Applies one watch event to `objects`; returns whether they changed.
    pub fn handle(&mut self, objects: &mut Objects, event: Event<K>) -> bool {
        let index = K::index(objects);
        match event {
            Event::Apply(obj) => index.apply(prune(obj)),
            Event::Delete(obj) => index.delete(&ObjectKey::of(&obj)),
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
                match &self.only {
                    None => index.reset(objs),
                    Some(key) => match objs.into_iter().find(|o| ObjectKey::of(o) == *key) {
                        Some(obj) => index.apply(obj),
                        None => index.delete(key),
                    },
                }
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

    fn names(objects: &Objects) -> Vec<String> {
        objects
            .store
            .services
            .iter()
            .map(|(k, _)| k.to_string())
            .collect()
    }

    #[test]
    fn apply_and_delete_feed_the_index_of_the_kind() {
        let mut store = Objects::default();
        let mut relist = Relist::<Service>::default();
        assert!(relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.1"))));
        assert!(!relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.1"))));
        assert!(relist.handle(&mut store, Event::Apply(mk_service("a", "s", "10.0.0.2"))));
        let stored = store.store.services.get(&ObjectKey::namespaced("a", "s"));
        assert_eq!(stored.and_then(|s| s.metadata.managed_fields.clone()), None);
        assert!(relist.handle(&mut store, Event::Delete(mk_service("a", "s", "x"))));
        assert!(!relist.handle(&mut store, Event::Delete(mk_service("a", "s", "x"))));
        assert!(store.store.is_empty());
    }

    #[test]
    fn relist_replaces_the_index_only_when_done() {
        let mut store = Objects::default();
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
        let mut store = Objects::default();
        let mut ns = Namespace::default();
        ns.metadata.name = Some("apps".into());
        Relist::<Namespace>::default().handle(&mut store, Event::Apply(ns));
        let mut class = GatewayClass::default();
        class.metadata.name = Some("portico".into());
        Relist::<GatewayClass>::default().handle(&mut store, Event::Apply(class));
        assert_eq!(store.store.namespaces.len(), 1);
        assert_eq!(store.store.gateway_classes.len(), 1);
        assert_eq!(store.store.len(), 2);
        let mut config = PorticoGatewayClassConfig::default();
        config.metadata.namespace = Some("portico-system".into());
        config.metadata.name = Some("internal".into());
        Relist::<PorticoGatewayClassConfig>::default().handle(&mut store, Event::Apply(config));
        assert_eq!(store.class_configs.len(), 1);
        assert_eq!(store.store.len(), 2, "not an input of the translator");
    }

    #[test]
    fn a_named_relist_replaces_only_its_own_key() {
        let mut store = Objects::default();
        let mut everything = Relist::<Service>::default();
        everything.handle(
            &mut store,
            Event::Apply(mk_service("a", "other", "10.0.0.1")),
        );
        everything.handle(&mut store, Event::Apply(mk_service("a", "ca", "10.0.0.2")));

        let mut named = Relist::<Service>::named(ObjectKey::namespaced("a", "ca"));
        named.handle(&mut store, Event::Init);
        named.handle(
            &mut store,
            Event::InitApply(mk_service("a", "ca", "10.0.0.3")),
        );
        assert!(named.handle(&mut store, Event::InitDone));
        assert!(named.is_synced());
        assert_eq!(names(&store), ["a/ca", "a/other"]);
        let ca = store.store.services.get(&ObjectKey::namespaced("a", "ca"));
        assert_eq!(
            ca.and_then(|s| s.spec.as_ref()?.cluster_ip.clone())
                .as_deref(),
            Some("10.0.0.3")
        );

        // Relisted while the object is gone: only that key goes.
        named.handle(&mut store, Event::Init);
        assert!(named.handle(&mut store, Event::InitDone));
        assert_eq!(names(&store), ["a/other"]);
    }
}
