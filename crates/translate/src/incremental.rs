//! Translation that reuses, from one snapshot to the next, the routes that did not change.
//!
//! Compiling and attaching a route ([`crate::route::compile`], [`crate::attach::attach`])
//! reads the route itself and the rest of the snapshot, never another route: the parts
//! of [`Inputs`] that are not routes (Gateways, ListenerSets, Services, EndpointSlices,
//! ReferenceGrants, policies, Secrets, Namespaces...) and the [`Options`]. So while that
//! context stays equal, a route equal to the one translated last time compiles and
//! attaches to the same result, and [`Translator`] takes it from its cache:
//!
//! ```text
//! context (Inputs without routes, Options without `now`) == last one?
//!   no  ─> every route compiled and attached again (a full translation)
//!   yes ─> per route: object == last one's?  yes ─> cached (compiled, status, attachments)
//!                                            no  ─> compiled and attached
//! then, as in a full translation: route_conflict::settle, status maps, config::build
//! ```
//!
//! What depends on several routes at once (HTTP/gRPC hostname conflicts, attachedRoutes
//! counts, the config) is computed afresh every time, so the output equals
//! [`crate::translate`]'s for the same snapshot (`tests/golden.rs` checks it over a
//! sequence of edits of every golden case).
//! `Options::now` is left out of the context: only listener certificates read it, and
//! they are not cached.

use std::collections::BTreeMap;

use portico_api::gateway::{GrpcRoute, HttpRoute, TcpRoute, TlsRoute, UdpRoute};

use crate::index::Index;
use crate::inputs::{Inputs, Options, Output};
use crate::route_conflict::Attached;
use crate::status::ObjectRef;

/// A translator that remembers its last translation to redo only what changed; its
/// output is always [`crate::translate`]'s for the same snapshot.
#[derive(Debug, Default)]
pub struct Translator {
    cache: RouteCache,
}

impl Translator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates `inputs`, reusing the routes that did not change since the last call.
    pub fn translate(&mut self, inputs: &Inputs, options: &Options) -> Output {
        if self.cache.context.update(inputs, options) {
            self.cache = RouteCache {
                context: std::mem::take(&mut self.cache.context),
                ..RouteCache::default()
            };
        }
        crate::translate_with(inputs, options, Some(&mut self.cache))
    }
}

/// What a route's translation depends on besides the route: everything but the routes.
#[derive(Debug, Default)]
struct Context {
    inputs: Inputs,
    options: Option<Options>,
}

impl Context {
    /// Makes this context the one of `inputs` and `options`; true when it changed. What
    /// is equal is compared in place, not copied: the snapshot's other objects (Secrets,
    /// EndpointSlices...) are copied only when they changed.
    fn update(&mut self, inputs: &Inputs, options: &Options) -> bool {
        let mut changed = false;
        // The pattern names every field of Inputs (no `..`): a new one must be sorted
        // into the routes or into this list.
        macro_rules! update {
            ($($field:ident),*) => {
                let Inputs {
                    $($field,)*
                    http_routes: _,
                    grpc_routes: _,
                    tls_routes: _,
                    tcp_routes: _,
                    udp_routes: _,
                } = inputs;
                $(
                    if self.inputs.$field != *$field {
                        self.inputs.$field = $field.clone();
                        changed = true;
                    }
                )*
            };
        }
        update!(
            gateway_classes,
            gateways,
            listener_sets,
            services,
            endpoint_slices,
            namespaces,
            reference_grants,
            secrets,
            backend_tls_policies,
            config_maps
        );
        let options = Options {
            now: None,
            ..options.clone()
        };
        if self.options.as_ref() != Some(&options) {
            self.options = Some(options);
            changed = true;
        }
        changed
    }
}

/// Per route kind, each route as last translated: the object and its result.
type Cached<T> = BTreeMap<ObjectRef, (T, Attached)>;

/// The routes of the last translation, valid while the context is equal.
#[derive(Debug, Default)]
pub(crate) struct RouteCache {
    context: Context,
    http: Cached<HttpRoute>,
    grpc: Cached<GrpcRoute>,
    tls: Cached<TlsRoute>,
    tcp: Cached<TcpRoute>,
    udp: Cached<UdpRoute>,
}

/// How a route of each kind is compiled and attached.
pub(crate) struct Compilers<'c> {
    pub(crate) http: &'c dyn Fn(&HttpRoute) -> Attached,
    pub(crate) grpc: &'c dyn Fn(&GrpcRoute) -> Attached,
    pub(crate) tls: &'c dyn Fn(&TlsRoute) -> Attached,
    pub(crate) tcp: &'c dyn Fn(&TcpRoute) -> Attached,
    pub(crate) udp: &'c dyn Fn(&UdpRoute) -> Attached,
}

/// Every route of `index`, compiled and attached, in kind then key order, into `out`;
/// with a cache, the unchanged ones are taken from it and it is left holding this
/// translation's routes.
pub(crate) fn routes(
    cache: Option<&mut RouteCache>,
    out: &mut Vec<Attached>,
    compilers: &Compilers<'_>,
    index: &Index<'_>,
) {
    match cache {
        None => {
            out.extend(index.http_routes.values().map(|r| (compilers.http)(r)));
            out.extend(index.grpc_routes.values().map(|r| (compilers.grpc)(r)));
            out.extend(index.tls_routes.values().map(|r| (compilers.tls)(r)));
            out.extend(index.tcp_routes.values().map(|r| (compilers.tcp)(r)));
            out.extend(index.udp_routes.values().map(|r| (compilers.udp)(r)));
        }
        Some(cache) => {
            reuse(&mut cache.http, &index.http_routes, compilers.http, out);
            reuse(&mut cache.grpc, &index.grpc_routes, compilers.grpc, out);
            reuse(&mut cache.tls, &index.tls_routes, compilers.tls, out);
            reuse(&mut cache.tcp, &index.tcp_routes, compilers.tcp, out);
            reuse(&mut cache.udp, &index.udp_routes, compilers.udp, out);
        }
    }
}

/// The routes of one kind: the cached result of each route equal to its cached object,
/// a new one for the others. `cache` then holds exactly `routes`.
fn reuse<T: PartialEq + Clone>(
    cache: &mut Cached<T>,
    routes: &BTreeMap<ObjectRef, &T>,
    compile: &dyn Fn(&T) -> Attached,
    out: &mut Vec<Attached>,
) {
    let mut old = std::mem::take(cache);
    for (key, route) in routes {
        let entry = match old.remove(key) {
            Some((object, result)) if object == **route => (object, result),
            _ => ((*route).clone(), compile(route)),
        };
        out.push(entry.1.clone());
        cache.insert(key.clone(), entry);
    }
}
