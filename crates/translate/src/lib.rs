//! portico-translate: the pure translator.
//!
//! [`translate`] turns a snapshot of Gateway API and core objects ([`Inputs`]) into the
//! data-plane config the proxies serve and the status every object should carry
//! ([`Output`]). It does no I/O and reads no clock; its output depends only on its input
//! (not even on the order objects are listed in), so it is tested with golden files.
//!
//! ```text
//! Inputs ──> Index (lookups, sorted)
//!             │
//!             ├─ GatewayClasses ours? ────────────────────────────> GatewayClass status
//!             ├─ Gateways of our classes ─> GatewayPlan ──────────> Gateway status
//!             │     (addresses, listeners, conflicts)         ▲
//!             ├─ ListenerSets of those ──> merged into it ────┼───> ListenerSet status
//!             │     (allowedListeners, precedence)            │ attachedRoutes
//!             └─ HTTPRoutes ─┐
//!                GRPCRoutes ─┼> CompiledRoute ─> attach ──────┴───> route status per kind
//!                TLSRoutes ──┤  (entries or      (parentRefs × listeners,
//!                TCPRoutes ──┤   streams,         route_conflict: HTTP vs gRPC)
//!                UDPRoutes ──┘   backends)              │
//!                                                       ├─> config::build ─> Config
//!                                                       └─> stream::apply (stream_routes)
//!             Secrets ─> tls::resolve_all (HTTPS certificateRefs) ──> tls::apply ┘
//!             BackendTLSPolicies + ConfigMaps ─> backend_tls (in the Index) ─> Cluster.tls,
//!                                                 BackendTLSPolicy status (ancestors = Gateways)
//! ```
//!
//! Invalid objects never stop the translation: the worst an object can do is get a
//! status condition with a reason, and the rest of the config is unaffected.

mod attach;
mod backend;
mod backend_tls;
mod certificate_refs;
mod class;
mod config;
mod conflict;
mod duration;
mod error;
mod filters;
mod gateway;
mod gateway_status;
mod grpc;
mod grpc_precedence;
mod hostname;
mod incremental;
mod index;
mod inputs;
mod kube_status;
mod listener;
mod listener_set;
mod listener_set_status;
mod matches;
mod policy;
mod precedence;
mod proxy_port;
mod route;
mod route_conflict;
mod selector;
mod status;
mod stream;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use certificate_refs::{CertificateRefUse, certificate_refs, check_certificate};
pub use hostname::hostname_matches;
pub use inputs::{Exposure, Inputs, Options, Output, UsableAddresses};
pub use ipnet::IpNet;
pub use proxy_port::{PROXY_PORT_BASE, PROXY_PORT_SPAN, ProxyPorts};
pub use status::{
    Condition, ConditionStatus, GatewayClassStatus, GatewayStatus, GatewayStatusAddress,
    HttpRouteStatus, ListenerSetStatus, ListenerStatus, ObjectRef, ParentReference,
    PolicyAncestorStatus, PolicyStatus, RouteGroupKind, RouteParentStatus, RouteStatus, Statuses,
};

use incremental::RouteCache;
pub use incremental::Translator;
use index::Index;
use route::CompiledRoute;

/// Translates a snapshot into the data-plane config and the desired statuses.
pub fn translate(inputs: &Inputs, options: &Options) -> Output {
    translate_with(inputs, options, None)
}

fn translate_with(inputs: &Inputs, options: &Options, cache: Option<&mut RouteCache>) -> Output {
    let index = Index::new(inputs, options);
    let mut statuses = Statuses::default();

    for (name, class) in &index.classes {
        statuses
            .gateway_classes
            .insert(name.clone(), class::status(class, options));
    }

    let plans = gateway::plan_gateways(&index);
    let secrets = tls::index_secrets(&inputs.secrets);
    let config_maps = tls::index_config_maps(&inputs.config_maps);
    let listener_tls = tls::resolve_all(&index, &secrets, &config_maps, &plans);

    // Every route of every kind, compiled and attached (or taken from the cache, see
    // crate::incremental); HTTPRoutes and GRPCRoutes that claim the same hostname on a
    // listener are then settled (crate::route_conflict).
    let mut attached: Vec<route_conflict::Attached> = Vec::new();
    let attach = |c: CompiledRoute| {
        let (status, attachments) = attach::attach(&index, &plans, &c);
        (Arc::new(c), status, attachments)
    };
    incremental::routes(
        cache,
        &mut attached,
        &incremental::Compilers {
            http: &|r| attach(route::compile(&index, r)),
            grpc: &|r| attach(grpc::compile(&index, r)),
            tls: &|r| attach(stream::compile_tls(&index, r)),
            tcp: &|r| attach(stream::compile_tcp(&index, r)),
            udp: &|r| attach(stream::compile_udp(&index, r)),
        },
        &index,
    );
    route_conflict::settle(&index, &mut attached);

    let mut routes = Vec::new();
    // (gateway, listener) -> attachedRoutes, listeners by `ListenerPlan::name`.
    let mut attached_counts: BTreeMap<ObjectRef, BTreeMap<String, i32>> = BTreeMap::new();
    for (compiled, status, attachments) in attached {
        if let (Some(status), Some(map)) = (status, statuses.routes_of_kind_mut(compiled.kind)) {
            map.insert(compiled.key.clone(), status);
        }
        // Attachments are distinct: a route attached to a listener through several
        // parentRefs counts once there.
        for a in &attachments {
            *attached_counts
                .entry(a.gateway.clone())
                .or_default()
                .entry(a.listener.clone())
                .or_default() += 1;
        }
        routes.push((compiled, attachments));
    }

    let empty = BTreeMap::new();
    for (key, plan) in &plans {
        let counts = attached_counts.get(key).unwrap_or(&empty);
        let mut status = plan.status(counts);
        for (gateway, section_name, tls) in listener_tls.values() {
            if let (true, Some(problem)) = (gateway == key, &tls.problem) {
                tls::patch_listener_status(&mut status, section_name, problem, plan.generation);
            }
            if let (true, Some(problem)) = (gateway == key, &tls.ca_problem) {
                tls::patch_ca_status(&mut status, section_name, problem, plan.generation);
            }
        }
        statuses.gateways.insert(key.clone(), status);
        for child in &plan.listener_sets {
            statuses
                .listener_sets
                .insert(child.key.clone(), plan.listener_set_status(child, counts));
        }
    }

    statuses.backend_tls_policies = backend_tls::statuses(&index, &routes);

    let mut config = config::build(&index, &plans, &routes);
    tls::apply(&mut config, &listener_tls);
    let stream_problems = stream::apply(&mut config, &index, &secrets, &plans, &routes);
    for (gateway, section_name, problem) in &stream_problems {
        if let (Some(status), Some(plan)) = (statuses.gateways.get_mut(gateway), plans.get(gateway))
        {
            tls::patch_listener_status(status, section_name, problem, plan.generation);
        }
    }
    Output { config, statuses }
}
