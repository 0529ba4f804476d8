//! One GRPCRoute compiled into config routes, the way an HTTPRoute is ([`crate::route`]).
//!
//! ```text
//! GrpcRoute ──compile──> CompiledRoute (kind GRPCRoute)
//!                        ├── entries[]   one per (rule, match): config Route with grpc = true
//!                        │   match.path  from the method match (below), headers as given
//!                        │   filters     header modifiers, RequestMirror, ExtensionRef
//!                        │   backends    weighted, like HTTPRoute's
//!                        └── precedence  GrpcPrecedence (crate::grpc_precedence)
//! ```
//!
//! A gRPC call is an HTTP/2 POST to `/<service>/<method>`, so a method match becomes a
//! path match (the proxy anchors regular expressions at both ends):
//!
//! | method match                       | path match                                 |
//! |------------------------------------|--------------------------------------------|
//! | none                               | Prefix `/` (every call)                    |
//! | Exact, service and method          | Exact `/<service>/<method>`                |
//! | Exact, service only                | Prefix `/<service>` (whole segment)        |
//! | Exact, method only                 | RegularExpression `/[^/]+/<method>`        |
//! | RegularExpression                  | RegularExpression `/(?:<service>)/(?:<method>)`, a missing one `[^/]+` |
//!
//! Gateway API (GRPCMethodMatch): "Method specifies a gRPC request service/method
//! matcher. If this field is not specified, all services and methods will match.",
//! (service) "If left empty or omitted, will match any service." and (method) "If left
//! empty or omitted, will match all services."
//!
//! Filters and headers have the same schema as HTTPRoute's (GRPCRouteFilter is the
//! header-modifier, mirror and ExtensionRef subset of HTTPRouteFilter; GRPCHeaderMatch
//! is HTTPHeaderMatch), so they are converted by the HTTPRoute code.

use portico_api::config::v1::Route;
use portico_api::gateway::GrpcRoute;
use portico_api::gateway::grpcroutes::{
    GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethod,
    GrpcRouteRulesMatchesMethodType,
};
use portico_api::gateway::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters, HttpRouteRulesMatches,
    HttpRouteRulesMatchesPath, HttpRouteRulesMatchesPathType,
};
use portico_api::names::kind;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, BackendRef};
use crate::error::RouteError;
use crate::filters::{self, Context};
use crate::grpc_precedence::GrpcPrecedence;
use crate::index::Index;
use crate::matches;
use crate::route::{CompiledRoute, Rank, RouteEntry, parent_refs};

/// The CRD's pattern for an Exact service: "^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$".
fn is_service_name(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty() && s.split('.').all(is_identifier)
}

/// The CRD's pattern for an Exact method: "^[A-Za-z_][A-Za-z_0-9]*$".
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn compile(index: &Index<'_>, route: &GrpcRoute) -> CompiledRoute {
    let mut compiled = CompiledRoute::new(
        kind::GRPC_ROUTE,
        &route.metadata,
        route.spec.hostnames.as_deref().unwrap_or_default(),
        parent_refs!(route.spec.parent_refs),
    );
    for (i, rule) in route.spec.rules.iter().flatten().enumerate() {
        if let Err(e) = compile_rule(index, i, rule, &mut compiled) {
            compiled.errors.push(e);
        }
    }
    compiled
}

/// The same value in another generated type of the same schema.
fn same_schema<A: Serialize, B: DeserializeOwned>(
    rule: usize,
    field: &'static str,
    value: &A,
) -> Result<B, RouteError> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| RouteError::InvalidField {
            rule,
            field,
            why: e.to_string(),
        })
}

fn compile_rule(
    index: &Index<'_>,
    i: usize,
    rule: &GrpcRouteRules,
    compiled: &mut CompiledRoute,
) -> Result<(), RouteError> {
    if rule.session_persistence.is_some() {
        return Err(RouteError::UnsupportedField {
            rule: i,
            field: "sessionPersistence",
        });
    }
    let key = compiled.key.clone();
    let cx = Context {
        index,
        route_kind: kind::GRPC_ROUTE,
        namespace: &key.namespace,
        rule: i,
        // GRPCRoute has no URLRewrite: nothing replaces a prefix.
        prefix: None,
    };
    let rule_filters: Vec<HttpRouteRulesFilters> =
        same_schema(i, "filters", &rule.filters.clone().unwrap_or_default())?;
    let converted_filters = filters::convert_rule(cx, &rule_filters)?;

    // "If no matches are specified, the implementation MUST match every gRPC request."
    let default_matches = [GrpcRouteRulesMatches::default()];
    let grpc_matches = match rule.matches.as_deref() {
        None | Some([]) => &default_matches[..],
        Some(m) => m,
    };
    let mut converted = Vec::with_capacity(grpc_matches.len());
    for (j, m) in grpc_matches.iter().enumerate() {
        let method = method_path(i, m.method.as_ref())?;
        let http = HttpRouteRulesMatches {
            headers: same_schema(i, "matches.headers", &m.headers)?,
            path: Some(HttpRouteRulesMatchesPath {
                r#type: Some(method.path_type.clone()),
                value: Some(method.path.clone()),
            }),
            ..Default::default()
        };
        let mut one = matches::convert_all(i, Some(std::slice::from_ref(&http)))?;
        let Some(matcher) = one.pop() else {
            continue;
        };
        converted.push((j, method, matcher.matcher));
    }

    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    let mut weighted = Vec::with_capacity(refs.len());
    for r in refs {
        let backend_filters: Vec<HttpRouteRulesBackendRefsFilters> = same_schema(
            i,
            "backendRefs.filters",
            &r.filters.clone().unwrap_or_default(),
        )?;
        let (f, errors) = filters::convert_backend(cx, &backend_filters)?;
        compiled.backend_errors.extend(errors);
        weighted.push((
            BackendRef {
                group: r.group.as_deref(),
                kind: r.kind.as_deref(),
                name: &r.name,
                namespace: r.namespace.as_deref(),
                port: r.port,
            },
            r.weight,
            f,
        ));
    }
    let resolved = backend::resolve_weighted(index, (kind::GRPC_ROUTE, &key.namespace), weighted);
    compiled.backend_errors.extend(resolved.errors);
    compiled.backend_errors.extend(converted_filters.errors);
    compiled.add_clusters(resolved.clusters);
    compiled.add_clusters(converted_filters.clusters);

    for (j, method, matcher) in converted {
        compiled.entries.push(RouteEntry {
            precedence: Rank::Grpc(GrpcPrecedence {
                service_len: method.service_len,
                method_len: method.method_len,
                headers: matcher.headers.len(),
                created: compiled.created.clone(),
                route: key.to_string(),
                rule: i,
                matcher: j,
            }),
            route: Route {
                name: format!("{key}/rule/{i}/match/{j}"),
                route: key.to_string(),
                r#match: Some(matcher),
                filters: converted_filters.filters.clone(),
                backends: resolved.backends.clone(),
                timeouts: None,
                retry: None,
                grpc: true,
            },
        });
    }
    Ok(())
}

/// A method match as a path match, with the lengths precedence counts.
#[derive(Debug, Clone, PartialEq)]
struct MethodPath {
    path_type: HttpRouteRulesMatchesPathType,
    path: String,
    service_len: usize,
    method_len: usize,
}

fn method_path(
    rule: usize,
    m: Option<&GrpcRouteRulesMatchesMethod>,
) -> Result<MethodPath, RouteError> {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let (service, method) = match m {
        Some(m) => (non_empty(&m.service), non_empty(&m.method)),
        None => (None, None),
    };
    let lengths = (
        service.as_ref().map_or(0, String::len),
        method.as_ref().map_or(0, String::len),
    );
    let out = |path_type, path| MethodPath {
        path_type,
        path,
        service_len: lengths.0,
        method_len: lengths.1,
    };
    let regex = m
        .and_then(|m| m.r#type.as_ref())
        .is_some_and(|t| *t == GrpcRouteRulesMatchesMethodType::RegularExpression);
    if regex {
        if service.is_none() && method.is_none() {
            return Err(invalid(
                rule,
                "RegularExpression needs a service or a method",
            ));
        }
        // Each part on its own, as an HTTP regex would be: `a)|(.*` must not close the
        // group it is put in.
        for part in [&service, &method].into_iter().flatten() {
            crate::matches::check_regex(rule, part)?;
        }
        let part = |s: Option<String>| s.map_or_else(|| "[^/]+".to_owned(), |s| format!("(?:{s})"));
        return Ok(out(
            HttpRouteRulesMatchesPathType::RegularExpression,
            format!("/{}/{}", part(service), part(method)),
        ));
    }
    if let Some(s) = service.as_deref().filter(|s| !is_service_name(s)) {
        return Err(invalid(
            rule,
            &format!("service {s:?} is not a gRPC service name"),
        ));
    }
    if let Some(m) = method.as_deref().filter(|m| !is_identifier(m)) {
        return Err(invalid(
            rule,
            &format!("method {m:?} is not a gRPC method name"),
        ));
    }
    Ok(match (service, method) {
        (None, None) => out(HttpRouteRulesMatchesPathType::PathPrefix, "/".to_owned()),
        (Some(s), Some(m)) => out(HttpRouteRulesMatchesPathType::Exact, format!("/{s}/{m}")),
        (Some(s), None) => out(HttpRouteRulesMatchesPathType::PathPrefix, format!("/{s}")),
        (None, Some(m)) => out(
            HttpRouteRulesMatchesPathType::RegularExpression,
            format!("/[^/]+/{}", regex::escape(&m)),
        ),
    })
}

fn invalid(rule: usize, why: &str) -> RouteError {
    RouteError::InvalidField {
        rule,
        field: "matches.method",
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn method(
        service: Option<&str>,
        name: Option<&str>,
        regex: bool,
    ) -> GrpcRouteRulesMatchesMethod {
        GrpcRouteRulesMatchesMethod {
            service: service.map(Into::into),
            method: name.map(Into::into),
            r#type: Some(if regex {
                GrpcRouteRulesMatchesMethodType::RegularExpression
            } else {
                GrpcRouteRulesMatchesMethodType::Exact
            }),
        }
    }

    #[test]
    fn method_matches_become_paths() {
        use HttpRouteRulesMatchesPathType::{Exact, PathPrefix, RegularExpression};
        let svc = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
        // (method match, path type, path, service chars, method chars)
        let cases: Vec<(Option<GrpcRouteRulesMatchesMethod>, _, String, usize, usize)> = vec![
            (None, PathPrefix, "/".into(), 0, 0),
            (
                Some(method(Some(svc), Some("Echo"), false)),
                Exact,
                format!("/{svc}/Echo"),
                svc.len(),
                4,
            ),
            (
                Some(method(Some(svc), None, false)),
                PathPrefix,
                format!("/{svc}"),
                svc.len(),
                0,
            ),
            (
                Some(method(None, Some("EchoTwo"), false)),
                RegularExpression,
                "/[^/]+/EchoTwo".into(),
                0,
                7,
            ),
            (
                Some(method(Some(r".*\.GrpcEcho"), Some("Echo.*"), true)),
                RegularExpression,
                r"/(?:.*\.GrpcEcho)/(?:Echo.*)".into(),
                12,
                6,
            ),
            (
                Some(method(None, Some("Echo"), true)),
                RegularExpression,
                "/[^/]+/(?:Echo)".into(),
                0,
                4,
            ),
        ];
        for (m, path_type, path, service_len, method_len) in cases {
            let got = method_path(0, m.as_ref()).unwrap();
            assert_eq!(
                got,
                MethodPath {
                    path_type,
                    path,
                    service_len,
                    method_len
                },
                "{m:?}"
            );
        }
    }

    #[test]
    fn invalid_method_matches_are_rejected() {
        assert!(method_path(0, Some(&method(Some("not/a/service"), None, false))).is_err());
        assert!(method_path(0, Some(&method(None, Some("9lives"), false))).is_err());
        assert!(method_path(0, Some(&method(None, None, true))).is_err());
        assert!(is_service_name(".foo.bar_2"));
        assert!(!is_service_name("foo..bar"));
    }
}
