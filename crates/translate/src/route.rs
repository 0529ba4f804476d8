//! One HTTPRoute compiled into config routes, independent of where it attaches.
//!
//! ```text
//! HttpRoute ──compile──> CompiledRoute
//!                        ├── hostnames            spec.hostnames (lowercased)
//!                        ├── entries[]            one per (rule, match): config Route + Precedence
//!                        ├── clusters[]           Service ports its backends send to
//!                        ├── errors[]             RouteError: Accepted=False (UnsupportedValue)
//!                        └── backend_errors[]     BackendError: ResolvedRefs=False
//! ```
//!
//! The same entries are placed in every virtual host the route attaches to (see
//! [`crate::config`]), under each hostname of the intersection.

use portico_api::config::v1::Route;
use portico_api::gateway::HttpRoute;
use portico_api::gateway::httproutes::HttpRouteRules;
use portico_api::k8s::Time;

use crate::backend::{self, ClusterRef};
use crate::error::{BackendError, RouteError};
use crate::filters;
use crate::index::{Index, object_ref};
use crate::matches;
use crate::precedence::Precedence;
use crate::status::ObjectRef;

#[derive(Debug)]
pub(crate) struct CompiledRoute<'a> {
    pub(crate) key: ObjectRef,
    pub(crate) route: &'a HttpRoute,
    pub(crate) hostnames: Vec<String>,
    pub(crate) entries: Vec<RouteEntry>,
    pub(crate) clusters: Vec<ClusterRef>,
    pub(crate) errors: Vec<RouteError>,
    pub(crate) backend_errors: Vec<BackendError>,
}

#[derive(Debug, Clone)]
pub(crate) struct RouteEntry {
    pub(crate) precedence: Precedence,
    pub(crate) route: Route,
}

pub(crate) fn compile<'a>(index: &Index<'_>, route: &'a HttpRoute) -> CompiledRoute<'a> {
    let key = object_ref(&route.metadata);
    let created: Option<&Time> = route.metadata.creation_timestamp.as_ref();
    let mut compiled = CompiledRoute {
        key: key.clone(),
        route,
        hostnames: route
            .spec
            .hostnames
            .iter()
            .flatten()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        entries: Vec::new(),
        clusters: Vec::new(),
        errors: Vec::new(),
        backend_errors: Vec::new(),
    };

    // The CRD defaults a missing `rules` to one rule matching PathPrefix `/` (with no
    // backends, so it answers 500); the API server applies it, a folder does not.
    let default_rules = [HttpRouteRules::default()];
    let rules = route.spec.rules.as_deref().unwrap_or(&default_rules);
    for (i, rule) in rules.iter().enumerate() {
        let refs = rule.backend_refs.as_deref().unwrap_or_default();
        if refs
            .iter()
            .any(|r| r.filters.as_ref().is_some_and(|f| !f.is_empty()))
        {
            compiled
                .errors
                .push(RouteError::BackendRefFilters { rule: i });
        }
        let resolved = backend::resolve_all(index, &key.namespace, refs);
        compiled.backend_errors.extend(resolved.errors);
        for cluster in resolved.clusters {
            if !compiled.clusters.contains(&cluster) {
                compiled.clusters.push(cluster);
            }
        }

        let rule_filters =
            match filters::convert_all(i, rule.filters.as_deref().unwrap_or_default()) {
                Ok(f) => f,
                Err(e) => {
                    compiled.errors.push(e);
                    continue;
                }
            };
        let converted = match matches::convert_all(i, rule.matches.as_deref()) {
            Ok(m) => m,
            Err(e) => {
                compiled.errors.push(e);
                continue;
            }
        };
        for (j, m) in converted.into_iter().enumerate() {
            compiled.entries.push(RouteEntry {
                precedence: Precedence {
                    path_kind: m.path_kind,
                    path_len: m.path_len,
                    has_method: !m.matcher.method.is_empty(),
                    headers: m.matcher.headers.len(),
                    query_params: m.matcher.query_params.len(),
                    created: created.cloned(),
                    route: key.to_string(),
                    rule: i,
                    matcher: j,
                },
                route: Route {
                    name: format!("{key}/rule/{i}/match/{j}"),
                    route: key.to_string(),
                    r#match: Some(m.matcher),
                    filters: rule_filters.clone(),
                    backends: resolved.backends.clone(),
                },
            });
        }
    }
    compiled
}
