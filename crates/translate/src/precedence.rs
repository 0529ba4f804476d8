//! The order in which a virtual host tries its routes.
//!
//! Gateway API (HTTPRouteRule `matches`): "Proxy or Load Balancer routing configuration
//! generated from HTTPRoutes MUST prioritize matches based on the following criteria,
//! continuing on ties. Across all rules specified on applicable Routes, precedence must be
//! given to the match having:
//!
//! * "Exact" path match.
//! * "Prefix" path match with largest number of characters.
//! * Method match.
//! * Largest number of header matches.
//! * Largest number of query param matches.
//!
//! Note: The precedence of RegularExpression path matches are implementation-specific.
//!
//! If ties still exist across multiple Routes, matching precedence MUST be determined in
//! order of the following criteria, continuing on ties:
//!
//! * The oldest Route based on creation timestamp.
//! * The Route appearing first in alphabetical order by "{namespace}/{name}".
//!
//! If ties still exist within an HTTPRoute, matching precedence MUST be granted to the
//! FIRST matching rule (in list order) with a match meeting the above criteria."
//!
//! Where regular expressions go is Portico's choice, made so that a regex can be reached
//! at all: after the exact paths and before every prefix, longest pattern first (as
//! Envoy Gateway orders them). A regex is a deliberate, usually narrow match; put after
//! the prefixes, it would never answer on a host that also has a `/` catch-all (every
//! HTTPRoute without matches is one). The order ends with the rule index and then the
//! match index, so it is total.

use std::cmp::Ordering;

use portico_api::k8s::Time;

/// How a match's path compares, most specific kind first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathKind {
    Exact,
    Regex,
    Prefix,
}

/// Everything that orders one (route, rule, match) entry against another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Precedence {
    pub(crate) path_kind: PathKind,
    /// Characters in the path value.
    pub(crate) path_len: usize,
    pub(crate) has_method: bool,
    pub(crate) headers: usize,
    pub(crate) query_params: usize,
    /// `None` (objects from a folder) sorts after every timestamp.
    pub(crate) created: Option<Time>,
    /// `"<namespace>/<name>"`, compared as a string as the rule says.
    pub(crate) route: String,
    pub(crate) rule: usize,
    pub(crate) matcher: usize,
}

impl Ord for Precedence {
    fn cmp(&self, other: &Self) -> Ordering {
        self.path_kind
            .cmp(&other.path_kind)
            .then_with(|| other.path_len.cmp(&self.path_len))
            .then_with(|| other.has_method.cmp(&self.has_method))
            .then_with(|| other.headers.cmp(&self.headers))
            .then_with(|| other.query_params.cmp(&self.query_params))
            .then_with(|| {
                tie_break(
                    (&self.created, &self.route, self.rule, self.matcher),
                    (&other.created, &other.route, other.rule, other.matcher),
                )
            })
    }
}

/// The ties every route kind breaks the same way (HTTPRoute and GRPCRoute rules alike):
/// "the oldest Route based on creation timestamp", then "the Route appearing first in
/// alphabetical order by {namespace}/{name}", then the first rule and match within it.
/// A route without a creation timestamp sorts after those with one.
pub(crate) fn tie_break(
    a: (&Option<Time>, &str, usize, usize),
    b: (&Option<Time>, &str, usize, usize),
) -> Ordering {
    let created = match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    created
        .then_with(|| a.1.cmp(b.1))
        .then_with(|| a.2.cmp(&b.2))
        .then_with(|| a.3.cmp(&b.3))
}

impl PartialOrd for Precedence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(kind: PathKind, len: usize) -> Precedence {
        Precedence {
            path_kind: kind,
            path_len: len,
            has_method: false,
            headers: 0,
            query_params: 0,
            created: None,
            route: "ns/a".into(),
            rule: 0,
            matcher: 0,
        }
    }

    fn time(s: &str) -> Option<Time> {
        Some(Time(s.parse().unwrap()))
    }

    /// Each row: a label and an entry; the table is listed in the expected order and is
    /// sorted from reversed order to prove it.
    #[test]
    fn precedence_table() {
        let rows: Vec<(&str, Precedence)> = vec![
            ("exact, long", p(PathKind::Exact, 10)),
            ("exact, short", p(PathKind::Exact, 2)),
            ("regex after exact", p(PathKind::Regex, 12)),
            ("shorter regex", p(PathKind::Regex, 3)),
            (
                "exact and regex beat any prefix even a longer one",
                p(PathKind::Prefix, 30),
            ),
            ("longer prefix first", p(PathKind::Prefix, 6)),
            (
                "method match",
                Precedence {
                    has_method: true,
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "then most headers (method still wins)",
                Precedence {
                    headers: 3,
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "fewer headers",
                Precedence {
                    headers: 1,
                    query_params: 5,
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "then most query params",
                Precedence {
                    query_params: 2,
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "then the oldest route",
                Precedence {
                    created: time("2020-09-08T01:02:03Z"),
                    route: "zz/z".into(),
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "a newer route",
                Precedence {
                    created: time("2020-09-08T01:02:04Z"),
                    route: "aa/a".into(),
                    ..p(PathKind::Prefix, 1)
                },
            ),
            // Alphabetical on "{namespace}/{name}": '-' sorts before '/'.
            (
                "routes without timestamps, alphabetical",
                Precedence {
                    route: "foo-bar/x".into(),
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "foo/bar",
                Precedence {
                    route: "foo/bar".into(),
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "foo/baz",
                Precedence {
                    route: "foo/baz".into(),
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "then the rule index",
                Precedence {
                    route: "foo/baz".into(),
                    rule: 1,
                    ..p(PathKind::Prefix, 1)
                },
            ),
            (
                "then the match index",
                Precedence {
                    route: "foo/baz".into(),
                    rule: 1,
                    matcher: 1,
                    ..p(PathKind::Prefix, 1)
                },
            ),
        ];
        let mut shuffled: Vec<&(&str, Precedence)> = rows.iter().rev().collect();
        shuffled.sort_by(|a, b| a.1.cmp(&b.1));
        let got: Vec<&str> = shuffled.iter().map(|(label, _)| *label).collect();
        let want: Vec<&str> = rows.iter().map(|(label, _)| *label).collect();
        assert_eq!(got, want);
    }
}
