//! Request matching for one route: path, headers, query parameters, method. All of a
//! route's conditions must hold ("ANDed", in Gateway API words). Regexes are compiled
//! when the table is built, so a bad one rejects the config instead of failing requests.

use http::{HeaderName, Method, request::Parts};
use portico_api::config::v1 as pb;
use portico_api::route_regex;
use regex::Regex;

use crate::error::ConfigError;

#[derive(Debug)]
pub(crate) struct RouteMatcher {
    path: PathMatcher,
    headers: Vec<HeaderMatcher>,
    query: Vec<QueryMatcher>,
    method: Option<Method>,
}

#[derive(Debug)]
enum PathMatcher {
    Any,
    Exact(String),
    /// The prefix without its trailing '/', so "/" is stored as "" and matches all.
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum StringMatcher {
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderMatcher {
    name: HeaderName,
    value: StringMatcher,
}

#[derive(Debug)]
struct QueryMatcher {
    name: String,
    value: StringMatcher,
}

impl RouteMatcher {
    /// A route without a match matches every request.
    pub(crate) fn compile(m: Option<&pb::RouteMatch>) -> Result<Self, ConfigError> {
        let Some(m) = m else {
            return Ok(Self {
                path: PathMatcher::Any,
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
            });
        };
        let path = match &m.path {
            None => PathMatcher::Any,
            Some(p) => match pb::path_match::Kind::try_from(p.kind) {
                Ok(pb::path_match::Kind::Exact) => PathMatcher::Exact(p.value.clone()),
                Ok(pb::path_match::Kind::Prefix) => {
                    PathMatcher::Prefix(p.value.trim_end_matches('/').to_owned())
                }
                Ok(pb::path_match::Kind::Regex) => PathMatcher::Regex(whole_match(&p.value)?),
                Ok(pb::path_match::Kind::Unspecified) | Err(_) => {
                    return Err(ConfigError::UnspecifiedKind("path"));
                }
            },
        };
        // Gateway API (HTTPHeaderMatch): "If multiple entries specify equivalent header
        // names, only the first entry with an equivalent name MUST be considered for a
        // match." The same holds for query parameters (HTTPQueryParamMatch).
        let mut headers: Vec<HeaderMatcher> = Vec::with_capacity(m.headers.len());
        for h in &m.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| ConfigError::HeaderName(h.name.clone()))?;
            if headers.iter().any(|seen| seen.name == name) {
                continue;
            }
            let value = StringMatcher::compile(h.kind, &h.value, "header")?;
            headers.push(HeaderMatcher { name, value });
        }
        let mut query: Vec<QueryMatcher> = Vec::with_capacity(m.query_params.len());
        for q in &m.query_params {
            if query.iter().any(|seen| seen.name == q.name) {
                continue;
            }
            let value = StringMatcher::compile(q.kind, &q.value, "query param")?;
            query.push(QueryMatcher {
                name: q.name.clone(),
                value,
            });
        }
        let method = if m.method.is_empty() {
            None
        } else {
            Some(
                Method::from_bytes(m.method.as_bytes())
                    .map_err(|_| ConfigError::Method(m.method.clone()))?,
            )
        };
        Ok(Self {
            path,
            headers,
            query,
            method,
        })
    }

    pub(crate) fn matches(&self, req: &Parts) -> bool {
        if let Some(method) = &self.method
            && req.method != *method
        {
            return false;
        }
        if !self.path.matches(req.uri.path()) {
            return false;
        }
        let headers_hold = self.headers.iter().all(|h| {
            // Several fields with one name are one value joined by commas (RFC 9110
            // section 5.3), which is also what Envoy compares against.
            let mut values = req.headers.get_all(&h.name).iter();
            let Some(first) = values.next() else {
                return false;
            };
            let Ok(first) = first.to_str() else {
                return false;
            };
            let mut joined = first.to_owned();
            for v in values {
                match v.to_str() {
                    Ok(v) => {
                        joined.push(',');
                        joined.push_str(v);
                    }
                    Err(_) => return false,
                }
            }
            h.value.matches(&joined)
        });
        if !headers_hold {
            return false;
        }
        if self.query.is_empty() {
            return true;
        }
        let query = req.uri.query().unwrap_or("");
        self.query
            .iter()
            .all(|q| first_query_value(query, &q.name).is_some_and(|v| q.value.matches(&v)))
    }
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(want) => path == want,
            // Gateway API (PathMatchType): "PathPrefix: Matches based on a URL path prefix
            // split by `/`. Matching is case-sensitive and done on a path element by
            // element basis. ... When specified, a trailing `/` is ignored. For example,
            // the paths `/abc`, `/abc/`, and `/abc/def` would all match the prefix `/abc`,
            // but the path `/abcd` would not."
            Self::Prefix(prefix) => {
                path.starts_with(prefix.as_str())
                    && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
            }
            Self::Regex(re) => re.is_match(path),
        }
    }
}

impl StringMatcher {
    fn compile(kind: i32, value: &str, what: &'static str) -> Result<Self, ConfigError> {
        match pb::StringMatchKind::try_from(kind) {
            Ok(pb::StringMatchKind::Exact) => Ok(Self::Exact(value.to_owned())),
            Ok(pb::StringMatchKind::Regex) => Ok(Self::Regex(whole_match(value)?)),
            Ok(pb::StringMatchKind::Unspecified) | Err(_) => {
                Err(ConfigError::UnspecifiedKind(what))
            }
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(want) => value == want,
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// The shared compile step (`portico_api::route_regex`): the translator checked the
/// pattern with the same function, so a config it emitted never fails here.
fn whole_match(pattern: &str) -> Result<Regex, ConfigError> {
    route_regex::whole_match(pattern).map_err(|error| ConfigError::Regex {
        pattern: pattern.to_owned(),
        error: Box::new(error),
    })
}

/// The first value of query parameter `name` (compared exactly, after percent-decoding,
/// as Gateway API's HTTPQueryParamMatch says names are case-sensitive), decoded.
fn first_query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes %XX escapes and '+' (form encoding: a space). Invalid escapes are kept as
/// they are; invalid UTF-8 is replaced, which then fails to match an exact value as it
/// should.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(hi << 4 | lo);
            i += 2;
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
