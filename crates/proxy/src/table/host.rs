//! Hostnames: the patterns virtual hosts and route groups carry, and the host a request
//! is for.
//!
//! Gateway API (Listener.hostname, HTTPRoute.hostnames): "Hostnames that are prefixed
//! with a wildcard label (`*.`) are interpreted as a suffix match. That means that a
//! match for `*.example.com` would match both `test.example.com`, and
//! `foo.test.example.com`, but not `example.com`." An empty hostname matches all.

use http::{HeaderMap, Request, Uri};

use crate::error::ConfigError;

/// A compiled hostname pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// "" in the config: every host.
    Any,
    /// An exact, lowercased name.
    Exact(String),
    /// "*.example.com", kept as ".example.com" so that a match is one `ends_with`.
    Wildcard(String),
}

impl HostPattern {
    pub(crate) fn parse(hostname: &str) -> Result<Self, ConfigError> {
        if hostname.is_empty() {
            return Ok(Self::Any);
        }
        let lower = hostname.to_ascii_lowercase();
        // A name, not a pattern language (the rule the translator checks too).
        if !portico_api::hostname::is_valid_pattern(&lower) {
            return Err(ConfigError::Hostname(hostname.to_owned()));
        }
        // An exact name keeps the lowercased copy: one allocation per hostname (there
        // are two per route when every route has its own).
        Ok(match lower.strip_prefix("*.") {
            Some(suffix) => Self::Wildcard(format!(".{suffix}")),
            None => Self::Exact(lower),
        })
    }

    /// Whether `host` (lowercased, without port) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == host,
            // At least one label before the suffix: `ends_with(".example.com")` with a
            // longer host guarantees a non-empty label in front of the dot.
            Self::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }

    /// How specific a match by this pattern is: exact beats any wildcard, a longer
    /// wildcard beats a shorter one, and "any" comes last.
    pub(crate) fn specificity(&self) -> (u8, usize) {
        match self {
            Self::Exact(name) => (2, name.len()),
            Self::Wildcard(suffix) => (1, suffix.len()),
            Self::Any => (0, 0),
        }
    }
}

/// The host a request is for: the URI authority (HTTP/2 `:authority`, or an
/// absolute-form HTTP/1 target), else the Host header; lowercased, without port.
/// Returns "" when the request names no host, which only the "any" patterns match.
pub(crate) fn request_host<B>(req: &Request<B>) -> String {
    host_of(req.uri(), req.headers())
}

/// [`request_host`] for a request taken apart.
pub(crate) fn host_of(uri: &Uri, headers: &HeaderMap) -> String {
    let raw = match uri.authority() {
        Some(authority) => authority.host(),
        None => headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(strip_port)
            .unwrap_or(""),
    };
    raw.to_ascii_lowercase()
}

/// "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]".
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pattern_matching() {
        // (pattern, host, matches)
        let cases = [
            ("", "anything.example.com", true),
            ("", "", true),
            ("example.com", "example.com", true),
            ("Example.COM", "example.com", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "wwwexample.com", false),
            ("*.example.com", "www.example.org", false),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(host), want, "{pattern:?} vs {host:?}");
        }
    }

    #[test]
    fn invalid_patterns() {
        for bad in ["*", "*.", "a.*.com", "foo..com", "exa mple.com", "*.*.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn specificity_orders_exact_then_longest_wildcard_then_any() {
        let exact = HostPattern::parse("a.example.com").unwrap().specificity();
        let long = HostPattern::parse("*.a.example.com").unwrap().specificity();
        let short = HostPattern::parse("*.com").unwrap().specificity();
        let any = HostPattern::parse("").unwrap().specificity();
        assert!(exact > long && long > short && short > any);
    }

    #[test]
    fn host_of_request() {
        let cases = [
            ("http://Example.com:8080/x", None, "example.com"),
            ("/x", Some("Foo.Example.com:80"), "foo.example.com"),
            ("/x", Some("foo.example.com"), "foo.example.com"),
            ("/x", Some("[::1]:8080"), "[::1]"),
            ("/x", None, ""),
        ];
        for (uri, host, want) in cases {
            let mut req = Request::builder().uri(uri);
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let req = req.body(()).unwrap();
            assert_eq!(request_host(&req), want, "{uri} {host:?}");
        }
    }
}
