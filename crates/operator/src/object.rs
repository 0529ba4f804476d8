//! The internal model every provider produces: one [`Object`] per Kubernetes object of a
//! kind the translator reads, identified within its kind by an [`ObjectKey`].
//!
//! ```text
//!   Object ──┬─ GatewayClass   (cluster-scoped)   key: (None, name)
//!            ├─ Namespace      (cluster-scoped)   key: (None, name)
//!            ├─ Gateway        (namespaced)       key: (Some(namespace), name)
//!            ├─ ListenerSet    (namespaced)
//!            ├─ HttpRoute      (namespaced)
//!            ├─ GrpcRoute, TlsRoute, TcpRoute, UdpRoute (namespaced)
//!            ├─ ReferenceGrant (namespaced)
//!            ├─ Service        (namespaced)
//!            ├─ Secret         (namespaced)  certificates of HTTPS listeners
//!            ├─ BackendTlsPolicy (namespaced) TLS to Services
//!            ├─ ConfigMap      (namespaced)  CA bundles of BackendTLSPolicies
//!            └─ EndpointSlice  (namespaced)
//! ```
//!
//! The kind names, groups and scopes come from the types themselves (their
//! `kube::Resource` implementations), so nothing here spells them.

use std::borrow::Cow;
use std::fmt;

use portico_api::gateway::BackendTlsPolicy;
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::gateway::{GrpcRoute, TcpRoute, TlsRoute, UdpRoute};
use portico_api::k8s::{ConfigMap, EndpointSlice, Namespace, ObjectMeta, Secret, Service};
use portico_api::k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use portico_api::kube::Resource;

/// Identifies an object within its kind: `(namespace, name)`, the namespace being `None`
/// for cluster-scoped kinds. Ordered by namespace then name, which is the order of every
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The key of a namespaced object.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// The key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }

    /// The key of an object, read from its metadata. An object without a name gets the
    /// empty name: providers reject those before they reach a store.
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        Self {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether a kind lives in a namespace, read from the `Scope` of its `Resource` impl.
pub trait ResourceScope {
    const NAMESPACED: bool;
}

impl ResourceScope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl ResourceScope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// Whether objects of kind `K` live in a namespace.
pub fn is_namespaced<K>() -> bool
where
    K: Resource<Scope: ResourceScope>,
{
    <K::Scope as ResourceScope>::NAMESPACED
}

/// One object of a kind the translator reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    ListenerSet(ListenerSet),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    UdpRoute(UdpRoute),
    ReferenceGrant(ReferenceGrant),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Namespace(Namespace),
    Secret(Secret),
    BackendTlsPolicy(BackendTlsPolicy),
    ConfigMap(ConfigMap),
}

/// Runs `$body` with `$o` bound to the typed object inside `$obj`, whatever its kind.
macro_rules! with_object {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::GatewayClass($o) => $body,
            Object::Gateway($o) => $body,
            Object::ListenerSet($o) => $body,
            Object::HttpRoute($o) => $body,
            Object::GrpcRoute($o) => $body,
            Object::TlsRoute($o) => $body,
            Object::TcpRoute($o) => $body,
            Object::UdpRoute($o) => $body,
            Object::ReferenceGrant($o) => $body,
            Object::Service($o) => $body,
            Object::EndpointSlice($o) => $body,
            Object::Namespace($o) => $body,
            Object::Secret($o) => $body,
            Object::BackendTlsPolicy($o) => $body,
            Object::ConfigMap($o) => $body,
        }
    };
}

/// The kind of `o`, as `kind:` spells it in a manifest.
fn kind_of<K: Resource<DynamicType = ()>>(_: &K) -> Cow<'static, str> {
    K::kind(&())
}

/// Whether `o`'s kind is namespaced.
fn namespaced_of<K: Resource<Scope: ResourceScope>>(_: &K) -> bool {
    is_namespaced::<K>()
}

impl Object {
    /// The kind, as `kind:` spells it in a manifest (`HTTPRoute`, `Service`, ...).
    pub fn kind(&self) -> Cow<'static, str> {
        with_object!(self, o => kind_of(o))
    }

    /// Whether this object's kind lives in a namespace.
    pub fn is_namespaced(&self) -> bool {
        with_object!(self, o => namespaced_of(o))
    }

    /// The key of this object within its kind.
    pub fn key(&self) -> ObjectKey {
        with_object!(self, o => ObjectKey::of(o))
    }

    pub fn meta(&self) -> &ObjectMeta {
        with_object!(self, o => o.meta())
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        with_object!(self, o => o.meta_mut())
    }
}

macro_rules! from_kind {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Object {
            fn from(o: $ty) -> Self {
                Object::$variant(o)
            }
        })*
    };
}

from_kind!(
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    ListenerSet(ListenerSet),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    UdpRoute(UdpRoute),
    ReferenceGrant(ReferenceGrant),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Namespace(Namespace),
    Secret(Secret),
    BackendTlsPolicy(BackendTlsPolicy),
    ConfigMap(ConfigMap),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_the_types() {
        assert!(!is_namespaced::<GatewayClass>());
        assert!(!is_namespaced::<Namespace>());
        assert!(is_namespaced::<Gateway>());
        assert!(is_namespaced::<ListenerSet>());
        assert!(is_namespaced::<HttpRoute>());
        assert!(is_namespaced::<GrpcRoute>());
        assert!(is_namespaced::<TlsRoute>());
        assert!(is_namespaced::<TcpRoute>());
        assert!(is_namespaced::<UdpRoute>());
        assert!(is_namespaced::<ReferenceGrant>());
        assert!(is_namespaced::<Service>());
        assert!(is_namespaced::<EndpointSlice>());
        assert!(is_namespaced::<Secret>());
        assert!(is_namespaced::<BackendTlsPolicy>());
        assert!(is_namespaced::<ConfigMap>());
    }

    #[test]
    fn keys_order_by_namespace_then_name_and_display_like_kubectl() {
        let mut keys = [
            ObjectKey::namespaced("b", "a"),
            ObjectKey::namespaced("a", "z"),
            ObjectKey::cluster("c"),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["c", "a/z", "b/a"]);
    }

    #[test]
    fn object_reports_kind_and_key() {
        let mut route = HttpRoute::default();
        route.metadata.name = Some("r".into());
        route.metadata.namespace = Some("ns".into());
        let obj = Object::from(route);
        assert_eq!(obj.kind(), "HTTPRoute");
        assert!(obj.is_namespaced());
        assert_eq!(obj.key(), ObjectKey::namespaced("ns", "r"));
    }
}
