//! HTTPRouteMatch -> `RouteMatch`, with the CRD's defaults and validation applied.
//!
//! Defaults (from the CRD): a rule without matches has one match, PathPrefix `/`; a match
//! without a path, or a path without a type or value, gets PathPrefix and `/`; header and
//! query parameter matches default to Exact.

use portico_api::config::v1::{
    HeaderMatch, PathMatch, QueryParamMatch, RouteMatch, StringMatchKind, path_match,
};
use portico_api::gateway::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesMethod,
    HttpRouteRulesMatchesPathType, HttpRouteRulesMatchesQueryParamsType,
};

use crate::error::RouteError;
use crate::precedence::PathKind;

/// A converted match and the parts of it that rank it (see [`crate::precedence`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Converted {
    pub(crate) matcher: RouteMatch,
    pub(crate) path_kind: PathKind,
    pub(crate) path_len: usize,
}

/// The matches of a rule; an empty or missing list means "PathPrefix /".
pub(crate) fn convert_all(
    rule: usize,
    matches: Option<&[HttpRouteRulesMatches]>,
) -> Result<Vec<Converted>, RouteError> {
    match matches {
        Some(matches) if !matches.is_empty() => matches
            .iter()
            .enumerate()
            .map(|(j, m)| convert(rule, j, m))
            .collect(),
        _ => convert(rule, 0, &HttpRouteRulesMatches::default()).map(|c| vec![c]),
    }
}

fn convert(
    rule: usize,
    matcher: usize,
    m: &HttpRouteRulesMatches,
) -> Result<Converted, RouteError> {
    let path_type = m
        .path
        .as_ref()
        .and_then(|p| p.r#type.clone())
        .unwrap_or(HttpRouteRulesMatchesPathType::PathPrefix);
    let value = m
        .path
        .as_ref()
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".to_owned());
    let (kind, path_kind) = match path_type {
        HttpRouteRulesMatchesPathType::Exact => (path_match::Kind::Exact, PathKind::Exact),
        HttpRouteRulesMatchesPathType::PathPrefix => (path_match::Kind::Prefix, PathKind::Prefix),
        HttpRouteRulesMatchesPathType::RegularExpression => {
            (path_match::Kind::Regex, PathKind::Regex)
        }
    };
    match path_kind {
        PathKind::Regex => check_regex(rule, &value)?,
        PathKind::Exact | PathKind::Prefix => {
            check_path(&value).map_err(|why| RouteError::InvalidPath {
                rule,
                matcher,
                value: value.clone(),
                why,
            })?
        }
    }

    // Gateway API (HTTPHeaderMatch name): "If multiple entries specify equivalent header
    // names, only the first entry with an equivalent name MUST be considered for a match.
    // Subsequent entries with an equivalent header name MUST be ignored." Header names
    // compare case-insensitively, query parameter names exactly.
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for h in m.headers.iter().flatten() {
        if !is_token(&h.name) {
            return Err(RouteError::InvalidHeaderName {
                rule,
                name: h.name.clone(),
            });
        }
        if headers
            .iter()
            .any(|seen| seen.name.eq_ignore_ascii_case(&h.name))
        {
            continue;
        }
        let kind = match h.r#type {
            Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                check_regex(rule, &h.value)?;
                StringMatchKind::Regex
            }
            _ => StringMatchKind::Exact,
        };
        headers.push(HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            kind: kind as i32,
            value: h.value.clone(),
        });
    }
    let mut query_params: Vec<QueryParamMatch> = Vec::new();
    for q in m.query_params.iter().flatten() {
        if !is_token(&q.name) {
            return Err(RouteError::InvalidQueryParamName {
                rule,
                name: q.name.clone(),
            });
        }
        if query_params.iter().any(|seen| seen.name == q.name) {
            continue;
        }
        let kind = match q.r#type {
            Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                check_regex(rule, &q.value)?;
                StringMatchKind::Regex
            }
            _ => StringMatchKind::Exact,
        };
        query_params.push(QueryParamMatch {
            name: q.name.clone(),
            kind: kind as i32,
            value: q.value.clone(),
        });
    }

    Ok(Converted {
        path_len: value.len(),
        matcher: RouteMatch {
            path: Some(PathMatch {
                kind: kind as i32,
                value,
            }),
            headers,
            query_params,
            method: m
                .method
                .as_ref()
                .map(method_name)
                .unwrap_or_default()
                .to_owned(),
        },
        path_kind,
    })
}

fn method_name(method: &HttpRouteRulesMatchesMethod) -> &'static str {
    match method {
        HttpRouteRulesMatchesMethod::Get => "GET",
        HttpRouteRulesMatchesMethod::Head => "HEAD",
        HttpRouteRulesMatchesMethod::Post => "POST",
        HttpRouteRulesMatchesMethod::Put => "PUT",
        HttpRouteRulesMatchesMethod::Delete => "DELETE",
        HttpRouteRulesMatchesMethod::Connect => "CONNECT",
        HttpRouteRulesMatchesMethod::Options => "OPTIONS",
        HttpRouteRulesMatchesMethod::Trace => "TRACE",
        HttpRouteRulesMatchesMethod::Patch => "PATCH",
    }
}

/// The CRD's rules for Exact and PathPrefix values (its CEL validations, restated so that
/// unvalidated YAML gets the same answer as the API server would give).
fn check_path(value: &str) -> Result<(), &'static str> {
    if !value.starts_with('/') {
        return Err("must start with '/'");
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if value.contains(bad) {
            return Err("must not contain '//', '/./', '/../', '%2f', '%2F' or '#'");
        }
    }
    if value.ends_with("/..") || value.ends_with("/.") {
        return Err("must not end with '/..' or '/.'");
    }
    Ok(())
}

/// Patterns are compiled here exactly as the proxy compiles them
/// (`portico_api::route_regex::whole_match`: anchored, within the proxy's size limit), so
/// that a pattern the proxy would reject never reaches it.
pub(crate) fn check_regex(rule: usize, value: &str) -> Result<(), RouteError> {
    portico_api::route_regex::whole_match(value)
        .map(|_| ())
        .map_err(|e| RouteError::InvalidRegex {
            rule,
            value: value.to_owned(),
            // The parser's message draws the pattern over several lines; a condition
            // message wants the last one ("error: unclosed group").
            error: e
                .to_string()
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
        })
}

/// An HTTP token (RFC 9110 `tchar`), the CRD's pattern for header and query names.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::httproutes::{
        HttpRouteRulesMatchesHeaders, HttpRouteRulesMatchesPath,
    };

    /// What the translator lets through, the proxy compiles (both call
    /// `route_regex::whole_match`): a pattern over the proxy's size limit and one that
    /// would escape the proxy's `^(?:...)$` are refused here, not NACKed there.
    #[test]
    fn regexes_the_proxy_would_refuse_are_refused() {
        for bad in [r"\w{300}", "a)|(.*", "(unclosed"] {
            assert!(
                matches!(
                    check_regex(3, bad),
                    Err(RouteError::InvalidRegex { rule: 3, .. })
                ),
                "{bad:?} was accepted"
            );
            assert!(portico_api::route_regex::whole_match(bad).is_err());
        }
        assert!(check_regex(0, "/items/[0-9]+").is_ok());
    }

    #[test]
    fn a_rule_without_matches_matches_every_path() {
        let got = convert_all(0, None).unwrap();
        assert_eq!(got.len(), 1);
        let path = got[0].matcher.path.clone().unwrap();
        assert_eq!(path.kind, path_match::Kind::Prefix as i32);
        assert_eq!(path.value, "/");
        assert_eq!(convert_all(0, Some(&[])).unwrap(), got);
    }

    #[test]
    fn first_header_with_a_name_wins() {
        let m = HttpRouteRulesMatches {
            headers: Some(vec![
                HttpRouteRulesMatchesHeaders {
                    name: "Version".into(),
                    r#type: None,
                    value: "2".into(),
                },
                HttpRouteRulesMatchesHeaders {
                    name: "version".into(),
                    r#type: None,
                    value: "3".into(),
                },
            ]),
            ..Default::default()
        };
        let got = convert(0, 0, &m).unwrap();
        assert_eq!(got.matcher.headers.len(), 1);
        assert_eq!(got.matcher.headers[0].value, "2");
        assert_eq!(got.matcher.headers[0].name, "version");
    }

    #[test]
    fn invalid_values_are_errors() {
        let path = |t, v: &str| HttpRouteRulesMatches {
            path: Some(HttpRouteRulesMatchesPath {
                r#type: Some(t),
                value: Some(v.into()),
            }),
            ..Default::default()
        };
        assert!(
            convert(
                0,
                0,
                &path(HttpRouteRulesMatchesPathType::PathPrefix, "foo")
            )
            .is_err()
        );
        assert!(convert(0, 0, &path(HttpRouteRulesMatchesPathType::Exact, "/a//b")).is_err());
        assert!(convert(0, 0, &path(HttpRouteRulesMatchesPathType::Exact, "/a/..")).is_err());
        assert!(
            convert(
                0,
                0,
                &path(
                    HttpRouteRulesMatchesPathType::RegularExpression,
                    "/(unclosed"
                )
            )
            .is_err()
        );
        assert!(
            convert(
                0,
                0,
                &path(
                    HttpRouteRulesMatchesPathType::RegularExpression,
                    "/v[0-9]+/.*"
                )
            )
            .is_ok()
        );
        let header = HttpRouteRulesMatches {
            headers: Some(vec![HttpRouteRulesMatchesHeaders {
                name: "bad name".into(),
                r#type: None,
                value: "x".into(),
            }]),
            ..Default::default()
        };
        assert!(matches!(
            convert(0, 0, &header),
            Err(RouteError::InvalidHeaderName { .. })
        ));
    }
}
