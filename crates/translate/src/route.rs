//! One HTTPRoute compiled into config routes, independent of where it attaches.
//!
//! ```text
//! HttpRoute ──compile──> CompiledRoute
//!                        ├── hostnames            spec.hostnames (lowercased)
//!                        ├── entries[]            one per (rule, match): config Route + Precedence
//!                        │                        (match, filters, backends with their
//!                        │                        filters, timeouts, retry)
//!                        ├── clusters[]           Service ports its backends and mirrors send to
//!                        ├── errors[]             RouteError: Accepted=False (UnsupportedValue)
//!                        └── backend_errors[]     BackendError: ResolvedRefs=False
//! ```
//!
//! The same entries are placed in every virtual host the route attaches to (see
//! [`crate::config`]), under each hostname of the intersection.

use portico_api::config::v1::{Route, WeightedBackend};
use portico_api::gateway::HttpRoute;
use portico_api::gateway::httproutes::{
    HttpRouteRules, HttpRouteRulesFiltersType, HttpRouteRulesMatchesPathType,
};
use portico_api::k8s::Time;
use portico_api::names::kind;

use crate::backend::{self, ClusterRef};
use crate::error::{BackendError, RouteError};
use crate::filters::{self, Context};
use crate::index::{Index, object_ref};
use crate::matches;
use crate::policy;
use crate::precedence::Precedence;
use crate::status::{ObjectRef, ParentReference};

/// A route of any kind, compiled. HTTPRoutes and GRPCRoutes fill `entries`, TLSRoutes,
/// TCPRoutes and UDPRoutes fill `streams`; attachment ([`crate::attach`]) and status read
/// only the kind-independent fields.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    /// `HTTPRoute`, `GRPCRoute`, `TLSRoute`, `TCPRoute` or `UDPRoute`.
    pub(crate) kind: &'static str,
    pub(crate) key: ObjectRef,
    pub(crate) generation: Option<i64>,
    pub(crate) created: Option<Time>,
    /// `spec.parentRefs` as written.
    pub(crate) parent_refs: Vec<ParentReference>,
    pub(crate) hostnames: Vec<String>,
    pub(crate) entries: Vec<RouteEntry>,
    pub(crate) streams: Vec<StreamRule>,
    pub(crate) clusters: Vec<ClusterRef>,
    pub(crate) errors: Vec<RouteError>,
    pub(crate) backend_errors: Vec<BackendError>,
}

impl CompiledRoute {
    /// An empty compiled route of `kind`, from its metadata, hostnames and parentRefs.
    pub(crate) fn new(
        kind: &'static str,
        metadata: &portico_api::k8s::ObjectMeta,
        hostnames: &[String],
        parent_refs: Vec<ParentReference>,
    ) -> Self {
        // Rejected here rather than by the proxy, which would refuse the whole config.
        let errors = hostnames
            .iter()
            .filter(|h| !portico_api::hostname::is_valid_pattern(h))
            .map(|h| RouteError::InvalidHostname { value: h.clone() })
            .collect();
        Self {
            kind,
            key: object_ref(metadata),
            generation: metadata.generation,
            created: metadata.creation_timestamp.clone(),
            parent_refs,
            hostnames: hostnames.iter().map(|h| h.to_ascii_lowercase()).collect(),
            entries: Vec::new(),
            streams: Vec::new(),
            clusters: Vec::new(),
            errors,
            backend_errors: Vec::new(),
        }
    }

    /// Adds clusters a rule sends traffic to, once each.
    pub(crate) fn add_clusters(&mut self, clusters: impl IntoIterator<Item = ClusterRef>) {
        for cluster in clusters {
            if !self.clusters.contains(&cluster) {
                self.clusters.push(cluster);
            }
        }
    }
}

/// `spec.parentRefs` of any route kind as the kind-independent [`ParentReference`]: every
/// route kind's parentRef has the same fields (Gateway API `ParentReference`).
macro_rules! parent_refs {
    ($refs:expr) => {
        $refs
            .iter()
            .flatten()
            .map(|p| $crate::status::ParentReference {
                group: p.group.clone(),
                kind: p.kind.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                section_name: p.section_name.clone(),
                port: p.port,
            })
            .collect::<Vec<_>>()
    };
}
pub(crate) use parent_refs;

/// One (rule, match) of an HTTPRoute or GRPCRoute, with its place in the precedence order.
#[derive(Debug, Clone)]
pub(crate) struct RouteEntry {
    pub(crate) precedence: Rank,
    pub(crate) route: Route,
}

/// How entries of one hostname are ordered. The two kinds are never merged (GRPCRoute:
/// "Merging MUST not be done between GRPCRoutes and HTTPRoutes."), and
/// [`crate::route_conflict`] keeps them off shared hostnames; should they meet anyway,
/// gRPC entries go first, as their matches are paths no browser asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    Grpc(crate::grpc_precedence::GrpcPrecedence),
    Http(Precedence),
}

/// One rule of a TLSRoute, TCPRoute or UDPRoute: where its connections go.
#[derive(Debug, Clone)]
pub(crate) struct StreamRule {
    pub(crate) rule: usize,
    pub(crate) backends: Vec<WeightedBackend>,
}

pub(crate) fn compile(index: &Index<'_>, route: &HttpRoute) -> CompiledRoute {
    let mut compiled = CompiledRoute::new(
        kind::HTTP_ROUTE,
        &route.metadata,
        route.spec.hostnames.as_deref().unwrap_or_default(),
        parent_refs!(route.spec.parent_refs),
    );
    let key = compiled.key.clone();

    // The CRD defaults a missing `rules` to one rule matching PathPrefix `/` (with no
    // backends, so it answers 500); the API server applies it, a folder does not.
    let default_rules = [HttpRouteRules::default()];
    let rules = route.spec.rules.as_deref().unwrap_or(&default_rules);
    for (i, rule) in rules.iter().enumerate() {
        if let Err(e) = compile_rule(index, &key, i, rule, &mut compiled) {
            compiled.errors.push(e);
        }
    }
    compiled
}

fn compile_rule(
    index: &Index<'_>,
    key: &ObjectRef,
    i: usize,
    rule: &HttpRouteRules,
    compiled: &mut CompiledRoute,
) -> Result<(), RouteError> {
    // Session persistence is an extended feature Portico does not implement; serving
    // the rule without it would silently break what the route asks for.
    if rule.session_persistence.is_some() {
        return Err(RouteError::UnsupportedField {
            rule: i,
            field: "sessionPersistence",
        });
    }
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    let rule_filters = rule.filters.as_deref().unwrap_or_default();
    // The CRD (CEL): "RequestRedirect filter must not be used together with
    // backendRefs".
    if !refs.is_empty()
        && rule_filters
            .iter()
            .any(|f| f.r#type == HttpRouteRulesFiltersType::RequestRedirect)
    {
        return Err(RouteError::InvalidFilter {
            rule: i,
            filter: "RequestRedirect",
            why: "must not be used together with backendRefs".to_owned(),
        });
    }
    let cx = Context {
        index,
        route_kind: kind::HTTP_ROUTE,
        namespace: &key.namespace,
        rule: i,
        prefix: single_prefix(rule),
    };

    let converted_matches = matches::convert_all(i, rule.matches.as_deref())?;
    let converted_filters = filters::convert_rule(cx, rule_filters)?;
    let mut backend_filters = Vec::with_capacity(refs.len());
    let mut filter_errors = Vec::new();
    for r in refs {
        let (f, errors) = filters::convert_backend(cx, r.filters.as_deref().unwrap_or_default())?;
        backend_filters.push(f);
        filter_errors.extend(errors);
    }
    let timeouts = policy::timeouts(i, rule.timeouts.as_ref())?;
    let retry = policy::retry(i, rule.retry.as_ref())?;

    // Everything that can make the route unacceptable is checked; what follows only
    // reports references.
    let resolved = backend::resolve_all(index, &key.namespace, refs, backend_filters);
    compiled.backend_errors.extend(resolved.errors);
    compiled.backend_errors.extend(converted_filters.errors);
    compiled.backend_errors.extend(filter_errors);
    compiled.add_clusters(resolved.clusters);
    compiled.add_clusters(converted_filters.clusters);

    for (j, m) in converted_matches.into_iter().enumerate() {
        compiled.entries.push(RouteEntry {
            precedence: Rank::Http(Precedence {
                path_kind: m.path_kind,
                path_len: m.path_len,
                has_method: !m.matcher.method.is_empty(),
                headers: m.matcher.headers.len(),
                query_params: m.matcher.query_params.len(),
                created: compiled.created.clone(),
                route: key.to_string(),
                rule: i,
                matcher: j,
            }),
            route: Route {
                name: format!("{key}/rule/{i}/match/{j}"),
                route: key.to_string(),
                r#match: Some(m.matcher),
                filters: converted_filters.filters.clone(),
                backends: resolved.backends.clone(),
                timeouts,
                retry: retry.clone(),
                grpc: false,
            },
        });
    }
    Ok(())
}

/// The PathPrefix value a ReplacePrefixMatch replaces: the rule must have exactly one
/// match and it must be a PathPrefix (no matches at all is the CRD's default, one
/// PathPrefix `/`; a match without a path or type defaults to PathPrefix `/` too).
fn single_prefix(rule: &HttpRouteRules) -> Option<&str> {
    match rule.matches.as_deref() {
        None | Some([]) => Some("/"),
        Some([only]) => match &only.path {
            None => Some("/"),
            Some(p) => match p.r#type {
                None | Some(HttpRouteRulesMatchesPathType::PathPrefix) => {
                    Some(p.value.as_deref().unwrap_or("/"))
                }
                Some(_) => None,
            },
        },
        Some(_) => None,
    }
}
