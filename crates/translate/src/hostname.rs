//! Hostname matching and the Gateway API intersection rule.
//!
//! A hostname pattern is `""` (any host), an exact name (`foo.example.com`) or a wildcard
//! (`*.example.com`). Listeners and HTTPRoutes both carry patterns; a route attached to a
//! listener answers only for the *intersection* of the two, which is what the virtual
//! host's `host_routes` groups are keyed by.
//!
//! Hostnames are DNS names and compare case-insensitively; everything here works on the
//! lowercased form (the CRDs only admit lowercase, but standalone YAML is not validated).

use std::cmp::Ordering;

/// Whether `host` (an exact request host, no port) is matched by `pattern`.
///
/// Gateway API: "Hostnames that are prefixed with a wildcard label (`*.`) are interpreted
/// as a suffix match. That means that a match for `*.example.com` would match both
/// `test.example.com`, and `foo.test.example.com`, but not `example.com`." An empty
/// pattern matches every host.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    match wildcard_suffix(&pattern) {
        _ if pattern.is_empty() => true,
        // The suffix keeps its leading dot, so at least one label must precede it.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// `"*.example.com"` -> `Some(".example.com")`; exact names and `""` -> `None`.
fn wildcard_suffix(pattern: &str) -> Option<&str> {
    pattern.strip_prefix('*').filter(|s| s.starts_with('.'))
}

/// The hostnames a route answers for on a listener: the intersection of the listener's
/// hostname (`None` = any) with the route's `spec.hostnames` (empty = any). The result is
/// deduplicated and sorted most specific first; `[""]` means "any host". An empty result
/// means the route cannot attach to this listener (`NoMatchingListenerHostname`).
///
/// Gateway API (HTTPRoute `spec.hostnames`): "If a hostname is specified by both the
/// Listener and HTTPRoute, there must be at least one intersecting hostname for the
/// HTTPRoute to be attached to the Listener. [...] If both the Listener and HTTPRoute have
/// specified hostnames, any HTTPRoute hostnames that do not match the Listener hostname
/// MUST be ignored."
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.is_empty());
    let route: Vec<String> = route
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let mut out: Vec<String> = match (listener, route.is_empty()) {
        (None, true) => vec![String::new()],
        (None, false) => route,
        (Some(l), true) => vec![l],
        (Some(l), false) => route.iter().filter_map(|r| intersect_one(&l, r)).collect(),
    };
    out.sort_by(|a, b| specificity(a, b));
    out.dedup();
    out
}

/// The intersection of two non-empty patterns: the more specific one when one covers the
/// other, else nothing. Two wildcards intersect when one suffix contains the other
/// (`*.example.com` and `*.foo.example.com` give `*.foo.example.com`).
fn intersect_one(a: &str, b: &str) -> Option<String> {
    match (wildcard_suffix(a), wildcard_suffix(b)) {
        (None, None) => (a == b).then(|| a.to_owned()),
        (Some(_), None) => hostname_matches(a, b).then(|| b.to_owned()),
        (None, Some(_)) => hostname_matches(b, a).then(|| a.to_owned()),
        (Some(sa), Some(sb)) => {
            if sa.ends_with(sb) {
                Some(a.to_owned())
            } else if sb.ends_with(sa) {
                Some(b.to_owned())
            } else {
                None
            }
        }
    }
}

/// Orders patterns most specific first: exact names (longest first), then wildcards
/// (longest first), then `""`; ties alphabetically so the order is total.
///
/// Gateway API (Listener): "Exact matches MUST be processed before wildcard matches, and
/// wildcard matches MUST be processed before fallback (empty Hostname value) matches."
/// and "more specific wildcard entries must be processed before less specific wildcard
/// entries". Two wildcards that can match the same host are nested suffixes, so the
/// longer one is also the one with more labels: ordering by length honours both the
/// listener rule (number of dots) and the route rule (number of characters).
pub(crate) fn specificity(a: &str, b: &str) -> Ordering {
    fn class(h: &str) -> u8 {
        if h.is_empty() {
            2
        } else if wildcard_suffix(h).is_some() {
            1
        } else {
            0
        }
    }
    class(a)
        .cmp(&class(b))
        .then_with(|| b.len().cmp(&a.len()))
        .then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_wildcard_and_any() {
        let cases = [
            ("", "anything.example.com", true),
            ("foo.example.com", "foo.example.com", true),
            ("foo.example.com", "FOO.example.com", true),
            ("foo.example.com", "bar.example.com", false),
            ("*.example.com", "foo.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "fooexample.com", false),
            ("*.example.com", "foo.example.net", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(hostname_matches(pattern, host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn intersection_table() {
        let cases: &[(Option<&str>, &[&str], &[&str])] = &[
            // Neither side restricts: any host.
            (None, &[], &[""]),
            (Some(""), &[], &[""]),
            // Only one side restricts: that side wins.
            (None, &["foo.bar.com"], &["foo.bar.com"]),
            (Some("foo.bar.com"), &[], &["foo.bar.com"]),
            (Some("*.example.com"), &[], &["*.example.com"]),
            // Exact listener.
            (
                Some("test.example.com"),
                &["test.example.com"],
                &["test.example.com"],
            ),
            (
                Some("test.example.com"),
                &["*.example.com"],
                &["test.example.com"],
            ),
            (Some("test.example.com"), &["other.example.com"], &[]),
            (
                Some("very.specific.com"),
                &["*.specific.com"],
                &["very.specific.com"],
            ),
            // Wildcard listener: matching route names survive, others are ignored.
            (
                Some("*.example.com"),
                &["test.example.com", "test.example.net"],
                &["test.example.com"],
            ),
            (
                Some("*.example.com"),
                &["foo.test.example.com", "*.example.com"],
                &["foo.test.example.com", "*.example.com"],
            ),
            (Some("*.example.com"), &["example.com"], &[]),
            // Two wildcards: the narrower one.
            (
                Some("*.example.com"),
                &["*.foo.example.com"],
                &["*.foo.example.com"],
            ),
            (
                Some("*.foo.example.com"),
                &["*.example.com"],
                &["*.foo.example.com"],
            ),
            (Some("*.wildcard.io"), &["*.nonmatchingwildcard.io"], &[]),
            // Case and duplicates.
            (
                Some("*.Example.com"),
                &["A.example.com", "a.example.com"],
                &["a.example.com"],
            ),
        ];
        for (listener, route, want) in cases {
            let route: Vec<String> = route.iter().map(|s| s.to_string()).collect();
            let got = intersect(*listener, &route);
            assert_eq!(got, *want, "listener {listener:?} route {route:?}");
        }
    }

    #[test]
    fn specificity_orders_exact_then_wildcard_then_any() {
        let mut hosts = vec![
            "",
            "*.example.com",
            "a.example.com",
            "*.foo.example.com",
            "abc.foo.example.com",
            "b.example.com",
        ];
        hosts.sort_by(|a, b| specificity(a, b));
        assert_eq!(
            hosts,
            vec![
                "abc.foo.example.com",
                "a.example.com",
                "b.example.com",
                "*.foo.example.com",
                "*.example.com",
                "",
            ]
        );
    }
}
