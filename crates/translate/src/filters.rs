//! HTTPRoute filters -> config `Filter`s, in the order they are written.
//!
//! ```text
//! rule.filters[]              ──convert_rule───> RuleFilters { filters, clusters, errors }
//!   RequestHeaderModifier      -> request_header_modifier
//!   ResponseHeaderModifier     -> response_header_modifier
//!   RequestRedirect            -> request_redirect (status, scheme, host, port, path)
//!   URLRewrite                 -> url_rewrite (host, path)
//!   RequestMirror              -> request_mirror (cluster, fraction) | dropped + BackendError
//!   CORS                       -> cors
//!   ExtensionRef               -> unresolved (answers 500) + BackendError (InvalidKind)
//!   ExternalAuth               -> RouteError (UnsupportedValue)
//! backendRefs[].filters[]     ──convert_backend──> header modifiers, URLRewrite, unresolved
//! ```
//!
//! Gateway API (HTTPRouteFilter type): "Unknown values here must result in the
//! implementation setting the Accepted Condition for the Route to `status: False`, with
//! a Reason of `UnsupportedValue`", and "If a reference to a custom filter type cannot be
//! resolved, the filter MUST NOT be skipped. Instead, requests that would have been
//! processed by that filter MUST receive a HTTP error response." GEP-1364 spells out the
//! second case for an ExtensionRef to a kind the implementation does not support: the
//! route stays Accepted, ResolvedRefs is False with reason InvalidKind, and matching
//! traffic gets a 500. Portico supports no ExtensionRef kind, so every ExtensionRef takes
//! that path.
//!
//! RequestMirror (backendRef): "If the referent cannot be found, this BackendRef is
//! invalid and must be dropped from the Gateway. The controller must ensure the
//! "ResolvedRefs" condition on the Route status is set to `status: False` and not
//! configure this backend in the underlying implementation." So an unresolvable mirror
//! is left out of the config and reported, and the rule keeps serving.
//!
//! The checks the CRD makes with CEL are restated here (which filters may repeat, which
//! may be combined, ReplacePrefixMatch only with one PathPrefix match) so that a folder
//! of unvalidated YAML gets the answer the API server would give.

use portico_api::config::v1::{
    Cors, Filter, Header, HeaderModifier, PathModifier, PrefixReplacement, RequestMirror,
    RequestRedirect, Unresolved, UrlRewrite, filter, path_modifier,
};
use portico_api::gateway::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters, HttpRouteRulesFiltersCors,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPathType, HttpRouteRulesFiltersRequestRedirectScheme,
    HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewrite,
    HttpRouteRulesFiltersUrlRewritePathType,
};

use crate::backend::{self, BackendRef, ClusterRef};
use crate::error::{BackendError, RouteError};
use crate::index::Index;
use crate::matches::is_token;

/// Gateway API (RequestRedirect statusCode): "Default: 302".
const DEFAULT_REDIRECT_STATUS: u32 = 302;
/// Gateway API (HTTPCORSFilter maxAge): "When the `MaxAge` field is unspecified, the
/// gateway sets the response header "Access-Control-Max-Age: 5" by default."
const DEFAULT_CORS_MAX_AGE: u32 = 5;
/// Gateway API (HTTPRequestMirrorFilter fraction): denominator "default: 100".
const DEFAULT_FRACTION_DENOMINATOR: i32 = 100;

/// Where a rule's filters are converted: the route's namespace (for mirror
/// references), the rule index (for messages) and the PathPrefix value that
/// ReplacePrefixMatch replaces, when the rule has exactly one PathPrefix match.
#[derive(Clone, Copy)]
pub(crate) struct Context<'i, 'a> {
    pub(crate) index: &'i Index<'a>,
    /// The kind of the route the filters belong to (ReferenceGrants name it).
    pub(crate) route_kind: &'static str,
    pub(crate) namespace: &'i str,
    pub(crate) rule: usize,
    pub(crate) prefix: Option<&'i str>,
}

/// A rule's converted filters.
#[derive(Debug, Default)]
pub(crate) struct RuleFilters {
    pub(crate) filters: Vec<Filter>,
    /// The clusters the rule's mirrors send to.
    pub(crate) clusters: Vec<ClusterRef>,
    /// Unresolvable references (mirror backendRefs, ExtensionRefs): ResolvedRefs=False.
    pub(crate) errors: Vec<BackendError>,
}

pub(crate) fn convert_rule(
    cx: Context<'_, '_>,
    filters: &[HttpRouteRulesFilters],
) -> Result<RuleFilters, RouteError> {
    check_combination(cx.rule, filters.iter().map(|f| &f.r#type))?;
    let mut out = RuleFilters::default();
    for f in filters {
        let kind = match f.r#type {
            HttpRouteRulesFiltersType::RequestMirror => {
                let m = required(
                    cx.rule,
                    f.request_mirror.as_ref(),
                    "requestMirror",
                    &f.r#type,
                )?;
                match mirror(cx, m)? {
                    Ok((mirror, cluster)) => {
                        if !out.clusters.contains(&cluster) {
                            out.clusters.push(cluster);
                        }
                        filter::Kind::RequestMirror(mirror)
                    }
                    Err(error) => {
                        out.errors.push(error);
                        continue;
                    }
                }
            }
            _ => match common(cx, f)? {
                Common::Kind(kind) => kind,
                Common::Unknown(error, kind) => {
                    out.errors.push(error);
                    kind
                }
            },
        };
        out.filters.push(Filter { kind: Some(kind) });
    }
    Ok(out)
}

/// The filters of one backendRef. Gateway API (HTTPBackendRef filters): "Filters
/// defined at this level should be executed if and only if the request is being
/// forwarded to the backend defined here." Portico runs the filters that change the
/// forwarded request or its response there (header modifiers, URLRewrite); the others
/// make sense for a rule, not a backend, and are reported as unsupported.
pub(crate) fn convert_backend(
    cx: Context<'_, '_>,
    filters: &[HttpRouteRulesBackendRefsFilters],
) -> Result<(Vec<Filter>, Vec<BackendError>), RouteError> {
    // The two kopium type families are generated from one schema
    // (HTTPRouteFilter), so the backendRef flavour reads as the rule flavour.
    let filters: Vec<HttpRouteRulesFilters> = filters
        .iter()
        .map(|f| serde_json::to_value(f).and_then(serde_json::from_value))
        .collect::<Result<_, _>>()
        .map_err(|e| RouteError::InvalidField {
            rule: cx.rule,
            field: "backendRefs.filters",
            why: e.to_string(),
        })?;
    check_combination(cx.rule, filters.iter().map(|f| &f.r#type))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in &filters {
        match f.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier
            | HttpRouteRulesFiltersType::ResponseHeaderModifier
            | HttpRouteRulesFiltersType::UrlRewrite
            | HttpRouteRulesFiltersType::ExtensionRef => {}
            ref other => {
                return Err(RouteError::UnsupportedBackendFilter {
                    rule: cx.rule,
                    filter: type_name(other).to_owned(),
                });
            }
        }
        let kind = match common(cx, f)? {
            Common::Kind(kind) => kind,
            Common::Unknown(error, kind) => {
                errors.push(error);
                kind
            }
        };
        out.push(Filter { kind: Some(kind) });
    }
    Ok((out, errors))
}

enum Common {
    Kind(filter::Kind),
    /// An ExtensionRef: a filter that answers 500, and the reference error to report.
    Unknown(BackendError, filter::Kind),
}

/// The filters that convert the same way on a rule and on a backendRef.
fn common(cx: Context<'_, '_>, f: &HttpRouteRulesFilters) -> Result<Common, RouteError> {
    let rule = cx.rule;
    let kind = match f.r#type {
        HttpRouteRulesFiltersType::RequestHeaderModifier => {
            let m = required(
                rule,
                f.request_header_modifier.as_ref(),
                "requestHeaderModifier",
                &f.r#type,
            )?;
            filter::Kind::RequestHeaderModifier(modifier(
                rule,
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.iter().flatten(),
            )?)
        }
        HttpRouteRulesFiltersType::ResponseHeaderModifier => {
            let m = required(
                rule,
                f.response_header_modifier.as_ref(),
                "responseHeaderModifier",
                &f.r#type,
            )?;
            filter::Kind::ResponseHeaderModifier(modifier(
                rule,
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.iter().flatten(),
            )?)
        }
        HttpRouteRulesFiltersType::RequestRedirect => {
            let r = required(
                rule,
                f.request_redirect.as_ref(),
                "requestRedirect",
                &f.r#type,
            )?;
            filter::Kind::RequestRedirect(redirect(cx, r)?)
        }
        HttpRouteRulesFiltersType::UrlRewrite => {
            let r = required(rule, f.url_rewrite.as_ref(), "urlRewrite", &f.r#type)?;
            filter::Kind::UrlRewrite(rewrite(cx, r)?)
        }
        HttpRouteRulesFiltersType::Cors => {
            let c = required(rule, f.cors.as_ref(), "cors", &f.r#type)?;
            filter::Kind::Cors(cors(rule, c)?)
        }
        HttpRouteRulesFiltersType::ExtensionRef => {
            let e = required(rule, f.extension_ref.as_ref(), "extensionRef", &f.r#type)?;
            let error = BackendError::UnknownFilterKind {
                group: e.group.clone(),
                kind: e.kind.clone(),
                name: e.name.clone(),
            };
            let kind = filter::Kind::Unresolved(Unresolved {
                reason: format!("{}: {error}", error.reason()),
            });
            return Ok(Common::Unknown(error, kind));
        }
        HttpRouteRulesFiltersType::RequestMirror | HttpRouteRulesFiltersType::ExternalAuth => {
            return Err(RouteError::UnsupportedFilter {
                rule,
                filter: type_name(&f.r#type).to_owned(),
            });
        }
    };
    Ok(Common::Kind(kind))
}

fn required<'f, T>(
    rule: usize,
    field: Option<&'f T>,
    name: &'static str,
    t: &HttpRouteRulesFiltersType,
) -> Result<&'f T, RouteError> {
    field.ok_or(RouteError::MissingFilterConfig {
        rule,
        filter: type_name(t),
        field: name,
    })
}

/// The CRD's CEL rules on a filter list: "May specify either
/// httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both", and
/// CORS, RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect and URLRewrite
/// "cannot be repeated" (RequestMirror and ExtensionRef can).
fn check_combination<'f>(
    rule: usize,
    types: impl Iterator<Item = &'f HttpRouteRulesFiltersType> + Clone,
) -> Result<(), RouteError> {
    let count = |t: HttpRouteRulesFiltersType| types.clone().filter(|x| **x == t).count();
    if count(HttpRouteRulesFiltersType::RequestRedirect) > 0
        && count(HttpRouteRulesFiltersType::UrlRewrite) > 0
    {
        return Err(RouteError::InvalidFilter {
            rule,
            filter: "RequestRedirect",
            why: "cannot be combined with URLRewrite".to_owned(),
        });
    }
    for t in [
        HttpRouteRulesFiltersType::Cors,
        HttpRouteRulesFiltersType::RequestHeaderModifier,
        HttpRouteRulesFiltersType::ResponseHeaderModifier,
        HttpRouteRulesFiltersType::RequestRedirect,
        HttpRouteRulesFiltersType::UrlRewrite,
    ] {
        if count(t.clone()) > 1 {
            return Err(RouteError::InvalidFilter {
                rule,
                filter: type_name(&t),
                why: "cannot be repeated".to_owned(),
            });
        }
    }
    Ok(())
}

/// The header lists of a modifier, checked so that the proxy can build them.
fn modifier<'a>(
    rule: usize,
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: impl Iterator<Item = &'a String>,
) -> Result<HeaderModifier, RouteError> {
    let header = |(name, value): (&String, &String)| -> Result<Header, RouteError> {
        if !is_token(name) {
            return Err(RouteError::InvalidHeaderName {
                rule,
                name: name.clone(),
            });
        }
        // Field values may hold visible characters, spaces and tabs, never CR, LF or NUL.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(RouteError::InvalidHeaderValue {
                rule,
                name: name.clone(),
            });
        }
        Ok(Header {
            name: name.clone(),
            value: value.clone(),
        })
    };
    let set = set.map(header).collect::<Result<Vec<_>, _>>()?;
    let add = add.map(header).collect::<Result<Vec<_>, _>>()?;
    let remove = remove
        .map(|name| {
            if is_token(name) {
                Ok(name.clone())
            } else {
                Err(RouteError::InvalidHeaderName {
                    rule,
                    name: name.clone(),
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HeaderModifier { set, add, remove })
}

fn redirect(
    cx: Context<'_, '_>,
    r: &HttpRouteRulesFiltersRequestRedirect,
) -> Result<RequestRedirect, RouteError> {
    let invalid = |why: String| RouteError::InvalidFilter {
        rule: cx.rule,
        filter: "RequestRedirect",
        why,
    };
    // Gateway API (statusCode): "Unknown values here must result in the implementation
    // setting the Accepted Condition for the Route to `status: False`, with a Reason of
    // `UnsupportedValue`."
    let status_code = match r.status_code {
        None => DEFAULT_REDIRECT_STATUS,
        Some(code @ (301 | 302 | 303 | 307 | 308)) => code as u32,
        Some(other) => return Err(invalid(format!("statusCode {other} is not supported"))),
    };
    let port = match r.port {
        None => 0,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .map(u32::from)
            .ok_or_else(|| invalid(format!("port {p} is out of range")))?,
    };
    let hostname = r.hostname.clone().unwrap_or_default();
    if !hostname.is_empty() && !is_dns_name(&hostname) {
        return Err(invalid(format!("invalid hostname {hostname:?}")));
    }
    let path = match &r.path {
        None => None,
        Some(p) => Some(path_modifier(
            cx,
            "RequestRedirect",
            p.r#type == HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath,
            p.replace_full_path.as_deref(),
            p.replace_prefix_match.as_deref(),
        )?),
    };
    Ok(RequestRedirect {
        scheme: match r.scheme {
            None => String::new(),
            Some(HttpRouteRulesFiltersRequestRedirectScheme::Http) => "http".to_owned(),
            Some(HttpRouteRulesFiltersRequestRedirectScheme::Https) => "https".to_owned(),
        },
        hostname,
        port,
        path,
        status_code,
    })
}

fn rewrite(
    cx: Context<'_, '_>,
    r: &HttpRouteRulesFiltersUrlRewrite,
) -> Result<UrlRewrite, RouteError> {
    let hostname = r.hostname.clone().unwrap_or_default();
    if !hostname.is_empty() && !is_dns_name(&hostname) {
        return Err(RouteError::InvalidFilter {
            rule: cx.rule,
            filter: "URLRewrite",
            why: format!("invalid hostname {hostname:?}"),
        });
    }
    let path = match &r.path {
        None => None,
        Some(p) => Some(path_modifier(
            cx,
            "URLRewrite",
            p.r#type == HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath,
            p.replace_full_path.as_deref(),
            p.replace_prefix_match.as_deref(),
        )?),
    };
    Ok(UrlRewrite { hostname, path })
}

/// HTTPPathModifier. The CRD requires the field that matches the type, and
/// ReplacePrefixMatch "is only compatible with a `PathPrefix` HTTPRouteMatch. Using any
/// other HTTPRouteMatch type on the same HTTPRouteRule will result in the
/// implementation setting the Accepted Condition for the Route to `status: False`" (its
/// CEL rule: "exactly one PathPrefix match must be specified").
fn path_modifier(
    cx: Context<'_, '_>,
    filter: &'static str,
    full: bool,
    replace_full_path: Option<&str>,
    replace_prefix_match: Option<&str>,
) -> Result<PathModifier, RouteError> {
    let invalid = |why: String| RouteError::InvalidFilter {
        rule: cx.rule,
        filter,
        why,
    };
    let kind = if full {
        let value = replace_full_path
            .ok_or_else(|| invalid("type ReplaceFullPath needs replaceFullPath".to_owned()))?;
        check_replacement(value, false).map_err(|why| invalid(format!("replaceFullPath {why}")))?;
        path_modifier::Kind::ReplaceFullPath(value.to_owned())
    } else {
        let value = replace_prefix_match.ok_or_else(|| {
            invalid("type ReplacePrefixMatch needs replacePrefixMatch".to_owned())
        })?;
        check_replacement(value, true)
            .map_err(|why| invalid(format!("replacePrefixMatch {why}")))?;
        let prefix = cx.prefix.ok_or_else(|| {
            invalid("ReplacePrefixMatch needs exactly one PathPrefix match in the rule".to_owned())
        })?;
        path_modifier::Kind::ReplacePrefixMatch(PrefixReplacement {
            prefix: prefix.to_owned(),
            replacement: value.to_owned(),
        })
    };
    Ok(PathModifier { kind: Some(kind) })
}

/// A replacement path must make a valid request target once substituted: it starts
/// with '/' (a prefix replacement may also be empty: "/foo" with "" strips the prefix),
/// and holds no query, fragment, space or control character.
fn check_replacement(value: &str, may_be_empty: bool) -> Result<(), &'static str> {
    if value.is_empty() && may_be_empty {
        return Ok(());
    }
    if !value.starts_with('/') {
        return Err("must start with '/'");
    }
    if value.len() > 1024 {
        return Err("is longer than 1024 characters");
    }
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#' || !c.is_ascii())
    {
        return Err("must not contain '?', '#', spaces, control or non-ASCII characters");
    }
    Ok(())
}

/// Resolves a mirror's backendRef: `Ok(Err(_))` is a reference to report, after which
/// the mirror is dropped (see the module docs); `Err` is an invalid filter.
fn mirror(
    cx: Context<'_, '_>,
    m: &HttpRouteRulesFiltersRequestMirror,
) -> Result<Result<(RequestMirror, ClusterRef), BackendError>, RouteError> {
    let invalid = |why: String| RouteError::InvalidFilter {
        rule: cx.rule,
        filter: "RequestMirror",
        why,
    };
    // Gateway API: "Only one of Fraction or Percent may be specified. If neither field
    // is specified, 100% of requests will be mirrored."
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "only one of percent or fraction may be specified".to_owned(),
            ));
        }
        (Some(p), None) if (0..=100).contains(&p) => (p, 100),
        (Some(p), None) => return Err(invalid(format!("percent {p} is not in 0..=100"))),
        (None, Some(f)) => {
            let denominator = f.denominator.unwrap_or(DEFAULT_FRACTION_DENOMINATOR);
            if denominator < 1 || f.numerator < 0 || f.numerator > denominator {
                return Err(invalid(format!(
                    "fraction {}/{denominator} must have 0 <= numerator <= denominator and denominator >= 1",
                    f.numerator
                )));
            }
            (f.numerator, denominator)
        }
        (None, None) => (1, 1),
    };
    let r = &m.backend_ref;
    let reference = BackendRef {
        group: r.group.as_deref(),
        kind: r.kind.as_deref(),
        name: &r.name,
        namespace: r.namespace.as_deref(),
        port: r.port,
    };
    Ok(
        backend::resolve_from(cx.index, (cx.route_kind, cx.namespace), reference).map(|cluster| {
            (
                RequestMirror {
                    cluster: cluster.name(),
                    // Both are in 0..=i32::MAX here.
                    numerator: numerator.unsigned_abs(),
                    denominator: denominator.unsigned_abs(),
                },
                cluster,
            )
        }),
    )
}

fn cors(rule: usize, c: &HttpRouteRulesFiltersCors) -> Result<Cors, RouteError> {
    let invalid = |why: String| RouteError::InvalidFilter {
        rule,
        filter: "CORS",
        why,
    };
    let list = |values: &Option<Vec<String>>,
                field: &str,
                valid: &dyn Fn(&str) -> bool|
     -> Result<Vec<String>, RouteError> {
        let values = values.clone().unwrap_or_default();
        // The CRD: "AllowOrigins cannot contain '*' alongside other origins", and the
        // same for methods and headers.
        if values.len() > 1 && values.iter().any(|v| v == "*") {
            return Err(invalid(format!(
                "{field} cannot contain '*' alongside others"
            )));
        }
        if let Some(bad) = values.iter().find(|v| *v != "*" && !valid(v)) {
            return Err(invalid(format!("invalid {field} entry {bad:?}")));
        }
        Ok(values)
    };
    let max_age = match c.max_age {
        None => DEFAULT_CORS_MAX_AGE,
        Some(age) if age >= 1 => age.unsigned_abs(),
        Some(age) => return Err(invalid(format!("maxAge {age} must be at least 1"))),
    };
    Ok(Cors {
        allow_origins: list(&c.allow_origins, "allowOrigins", &is_cors_origin)?,
        allow_methods: list(&c.allow_methods, "allowMethods", &|m| {
            matches!(
                m,
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "DELETE"
                    | "CONNECT"
                    | "OPTIONS"
                    | "TRACE"
                    | "PATCH"
            )
        })?,
        allow_headers: list(&c.allow_headers, "allowHeaders", &is_token)?,
        expose_headers: list(&c.expose_headers, "exposeHeaders", &is_token)?,
        allow_credentials: c.allow_credentials.unwrap_or(false),
        max_age_seconds: max_age,
    })
}

/// The CRD's pattern for a CORS origin other than "*":
/// `^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$`.
fn is_cors_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host == "*" {
        return true;
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The CRD's PreciseHostname: lowercase RFC 1123 labels, at most 253 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

fn type_name(t: &HttpRouteRulesFiltersType) -> &'static str {
    match t {
        HttpRouteRulesFiltersType::RequestHeaderModifier => "RequestHeaderModifier",
        HttpRouteRulesFiltersType::ResponseHeaderModifier => "ResponseHeaderModifier",
        HttpRouteRulesFiltersType::RequestMirror => "RequestMirror",
        HttpRouteRulesFiltersType::RequestRedirect => "RequestRedirect",
        HttpRouteRulesFiltersType::UrlRewrite => "URLRewrite",
        HttpRouteRulesFiltersType::ExtensionRef => "ExtensionRef",
        HttpRouteRulesFiltersType::Cors => "CORS",
        HttpRouteRulesFiltersType::ExternalAuth => "ExternalAuth",
    }
}

#[cfg(test)]
mod tests;
