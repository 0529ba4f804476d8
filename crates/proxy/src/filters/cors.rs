//! The CORS filter: answers preflight requests and adds the CORS response headers to
//! actual cross-origin requests.
//!
//! ```text
//! request with Origin ──┬─ OPTIONS + Access-Control-Request-Method (preflight)
//! │                     │    └─> answered here, 200: with the Access-Control-* headers
//! │                     │        when the origin is allowed, without them when not
//! │                     └─ anything else (actual request)
//! │                          └─> forwarded; the response gets Access-Control-Allow-Origin
//! │                              (and -Credentials, -Expose-Headers) when allowed
//! request without Origin ──> not a CORS request, untouched
//! ```
//!
//! Gateway API (HTTPCORSFilter), the rules this follows:
//! - allowOrigins: "If the request `Origin` matches the configured allowed origins, the
//!   gateway must return the given `Origin` and sets value of the header
//!   `Access-Control-Allow-Origin` same as the `Origin` header provided by the client."
//!   "`*` is a greedy match to the _left_, including any number of DNS labels to the
//!   left of its position." "if not included, port `80` is assumed for `http` scheme
//!   origins, and port `443` is assumed for `https` origins." "If the request `Origin`
//!   does not match the configured allowed origins, the gateway returns 204/200 response
//!   but doesn't set the relevant cross-origin response headers." The origin is always
//!   echoed, which every rule allows, including "*" without credentials ("may either
//!   contain the wildcard `*` or echo the value of the `Origin` request header").
//! - "The status code of a successful response to a "preflight" request is always an
//!   OK status (i.e., 204 or 200)": 200.
//! - allowMethods / allowHeaders: the configured list; "*" echoes what the preflight
//!   asks for ("Instead, it must return a single HTTP method matching the value of the
//!   `Access-Control-Request-Method` request header", and the same for headers). "If the
//!   `Access-Control-Request-Headers` header is not present in the request, the gateway
//!   must omit the `Access-Control-Allow-Headers` response header."
//! - exposeHeaders: the configured list; "*" is sent as is without credentials ("can
//!   contain the wildcard `*`"), and with credentials ("the gateway cannot use the `*`")
//!   becomes the names of the headers the response carries.
//! - allowCredentials: "When set to true, the gateway will include the
//!   `Access-Control-Allow-Credentials` response header with value true
//!   (case-sensitive). When set to false or omitted the gateway will omit the header".
//! - maxAge: `Access-Control-Max-Age` on preflight answers (the translator fills the
//!   default, 5).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Empty};
use portico_api::config::v1 as pb;

use crate::{error::ConfigError, upstream::ProxyBody};

#[derive(Debug)]
pub(crate) struct Cors {
    origins: Origins,
    methods: Allow,
    headers: Allow,
    expose: Allow,
    credentials: bool,
    max_age: HeaderValue,
}

#[derive(Debug)]
enum Origins {
    Any,
    List(Vec<OriginPattern>),
}

/// A configured list of names: none, "*", or the names joined by ", ".
#[derive(Debug)]
enum Allow {
    Unset,
    Any,
    List(HeaderValue),
}

#[derive(Debug, PartialEq)]
struct OriginPattern {
    scheme: String,
    host: HostMatch,
    port: u16,
}

#[derive(Debug, PartialEq)]
enum HostMatch {
    Any,
    Exact(String),
    /// "*.bar.com", kept as ".bar.com".
    Suffix(String),
}

/// What the filter did with a request.
#[derive(Debug)]
pub(crate) enum CorsStep {
    /// A preflight, answered by the proxy.
    Preflight(Response<ProxyBody>),
    /// An actual request: the headers to add to its response (`None`: not a CORS
    /// request, or an origin that is not allowed).
    Actual(Option<CorsHeaders>),
}

/// The CORS headers of an actual request's response.
#[derive(Debug)]
pub(crate) struct CorsHeaders {
    headers: HeaderMap,
    /// exposeHeaders "*" with credentials: name the headers the response carries.
    expose_response_headers: bool,
}

impl Cors {
    pub(crate) fn compile(c: &pb::Cors) -> Result<Self, ConfigError> {
        let origins = if c.allow_origins.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::List(
                c.allow_origins
                    .iter()
                    .map(|o| {
                        OriginPattern::parse(o).ok_or_else(|| ConfigError::InvalidFilterValue {
                            what: "CORS origin",
                            value: o.clone(),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(Self {
            origins,
            methods: Allow::compile(&c.allow_methods, "CORS methods")?,
            headers: Allow::compile(&c.allow_headers, "CORS headers")?,
            expose: Allow::compile(&c.expose_headers, "CORS expose headers")?,
            credentials: c.allow_credentials,
            max_age: HeaderValue::from(c.max_age_seconds),
        })
    }

    pub(crate) fn on_request(&self, parts: &Parts) -> CorsStep {
        let origin = parts.headers.get(header::ORIGIN);
        let requested_method = parts.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        let preflight =
            parts.method == Method::OPTIONS && origin.is_some() && requested_method.is_some();
        let allowed = origin.filter(|o| self.allows(o));
        if !preflight {
            return CorsStep::Actual(allowed.map(|origin| self.actual(origin)));
        }

        let mut response = Response::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = allowed else {
            return CorsStep::Preflight(response);
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        match (&self.methods, requested_method) {
            (Allow::List(list), _) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list.clone());
            }
            (Allow::Any, Some(method)) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
            }
            _ => {}
        }
        if let Some(requested) = parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            match &self.headers {
                Allow::List(list) => {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
                }
                Allow::Any => {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
                }
                Allow::Unset => {}
            }
        }
        match &self.expose {
            Allow::List(list) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list.clone());
            }
            Allow::Any if !self.credentials => {
                headers.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("*"),
                );
            }
            _ => {}
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        CorsStep::Preflight(response)
    }

    fn actual(&self, origin: &HeaderValue) -> CorsHeaders {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let mut expose_response_headers = false;
        match &self.expose {
            Allow::List(list) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list.clone());
            }
            Allow::Any if self.credentials => expose_response_headers = true,
            Allow::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("*"),
                );
            }
            Allow::Unset => {}
        }
        CorsHeaders {
            headers,
            expose_response_headers,
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(patterns) => {
                let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
                    return false;
                };
                patterns.iter().any(|p| p.matches(&origin))
            }
        }
    }
}

impl CorsHeaders {
    /// Sets the CORS headers on an actual request's response. They replace any the
    /// backend sent: the route's CORS policy is the one that answers.
    pub(crate) fn apply(&self, response: &mut HeaderMap) {
        if self.expose_response_headers {
            let mut names: Vec<&str> = response
                .keys()
                .map(|n| n.as_str())
                .filter(|n| !n.starts_with("access-control-"))
                .collect();
            names.dedup();
            if let Ok(v) = HeaderValue::from_str(&names.join(", "))
                && !names.is_empty()
            {
                response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
            }
        }
        for (name, value) in &self.headers {
            response.insert(name.clone(), value.clone());
        }
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

impl Allow {
    fn compile(values: &[String], what: &'static str) -> Result<Self, ConfigError> {
        if values.is_empty() {
            return Ok(Self::Unset);
        }
        if values.iter().any(|v| v == "*") {
            return Ok(Self::Any);
        }
        HeaderValue::from_str(&values.join(", "))
            .map(Self::List)
            .map_err(|_| ConfigError::InvalidFilterValue {
                what,
                value: values.join(", "),
            })
    }
}

/// A request's Origin: scheme, host and port (the scheme's default when absent).
#[derive(Debug, PartialEq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(origin: &str) -> Option<Self> {
        let (scheme, rest) = origin.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_port(rest, &scheme)?;
        if host.is_empty() {
            return None;
        }
        Some(Self {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }
}

impl OriginPattern {
    fn parse(pattern: &str) -> Option<Self> {
        let (scheme, rest) = pattern.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_port(rest, &scheme)?;
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 {
                return None;
            }
            HostMatch::Suffix(suffix.to_owned())
        } else if host.is_empty() || host.contains('*') {
            return None;
        } else {
            HostMatch::Exact(host)
        };
        Some(Self { scheme, host, port })
    }

    fn matches(&self, origin: &Origin) -> bool {
        self.scheme == origin.scheme
            && self.port == origin.port
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Exact(h) => *h == origin.host,
                HostMatch::Suffix(s) => {
                    origin.host.len() > s.len() && origin.host.ends_with(s.as_str())
                }
            }
    }
}

/// "host:port" or "host" (with the scheme's default port); `None` for an unknown
/// scheme without a port, or a port that is not a number.
fn split_port<'a>(rest: &'a str, scheme: &str) -> Option<(&'a str, u16)> {
    // An IPv6 literal keeps its colons inside brackets.
    let port_sep = match rest.rfind(']') {
        Some(end) => rest[end..].find(':').map(|i| end + i),
        None => rest.rfind(':'),
    };
    match port_sep {
        Some(i) => Some((&rest[..i], rest[i + 1..].parse().ok()?)),
        None => {
            let port = match scheme {
                "http" => 80,
                "https" => 443,
                _ => return None,
            };
            Some((rest, port))
        }
    }
}

#[cfg(test)]
mod tests;
