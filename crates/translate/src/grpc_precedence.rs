//! The order in which a virtual host tries its GRPCRoute entries.
//!
//! Gateway API (GRPCRouteRule `matches`): "Proxy or Load Balancer routing configuration
//! generated from GRPCRoutes MUST prioritize rules based on the following criteria,
//! continuing on ties. Merging MUST not be done between GRPCRoutes and HTTPRoutes.
//! Precedence MUST be given to the rule with the largest number of:
//!
//! * Characters in a matching non-wildcard hostname.
//! * Characters in a matching hostname.
//! * Characters in a matching service.
//! * Characters in a matching method.
//! * Header matches.
//!
//! If ties still exist across multiple Routes, matching precedence MUST be determined in
//! order of the following criteria, continuing on ties:
//!
//! * The oldest Route based on creation timestamp.
//! * The Route appearing first in alphabetical order by "{namespace}/{name}".
//!
//! If ties still exist within the Route that has been given precedence, matching
//! precedence MUST be granted to the first matching rule meeting the above criteria."
//!
//! The two hostname criteria are settled before this order applies: entries are grouped
//! by the hostname they answer for, most specific group first (see [`crate::config`]).
//! The order ends with the rule and match indexes, so it is total.

use std::cmp::Ordering;

use crate::precedence::tie_break;
use portico_api::k8s::Time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcPrecedence {
    /// Characters in the service of the method match (0 when it matches any service).
    pub(crate) service_len: usize,
    /// Characters in the method of the method match (0 when it matches any method).
    pub(crate) method_len: usize,
    pub(crate) headers: usize,
    /// `None` (objects from a folder) sorts after every timestamp.
    pub(crate) created: Option<Time>,
    /// `"<namespace>/<name>"`.
    pub(crate) route: String,
    pub(crate) rule: usize,
    pub(crate) matcher: usize,
}

impl Ord for GrpcPrecedence {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .service_len
            .cmp(&self.service_len)
            .then_with(|| other.method_len.cmp(&self.method_len))
            .then_with(|| other.headers.cmp(&self.headers))
            .then_with(|| {
                tie_break(
                    (&self.created, &self.route, self.rule, self.matcher),
                    (&other.created, &other.route, other.rule, other.matcher),
                )
            })
    }
}

impl PartialOrd for GrpcPrecedence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(service_len: usize, method_len: usize, headers: usize) -> GrpcPrecedence {
        GrpcPrecedence {
            service_len,
            method_len,
            headers,
            created: None,
            route: "ns/a".into(),
            rule: 0,
            matcher: 0,
        }
    }

    /// Listed in the expected order; sorted from reversed order to prove it.
    #[test]
    fn precedence_table() {
        let rows: Vec<(&str, GrpcPrecedence)> = vec![
            ("longest service", p(20, 0, 0)),
            ("then longest method", p(10, 8, 0)),
            ("shorter method", p(10, 4, 3)),
            ("same service and method, more headers", p(10, 0, 2)),
            ("fewer headers", p(10, 0, 1)),
            (
                "then the oldest route",
                GrpcPrecedence {
                    created: Some(Time("2020-09-08T01:02:03Z".parse().unwrap())),
                    route: "zz/z".into(),
                    ..p(0, 0, 0)
                },
            ),
            ("routes without timestamps", p(0, 0, 0)),
            (
                "alphabetical",
                GrpcPrecedence {
                    route: "ns/b".into(),
                    ..p(0, 0, 0)
                },
            ),
            (
                "then the rule index",
                GrpcPrecedence {
                    route: "ns/b".into(),
                    rule: 1,
                    ..p(0, 0, 0)
                },
            ),
        ];
        let mut shuffled: Vec<&(&str, GrpcPrecedence)> = rows.iter().rev().collect();
        shuffled.sort_by(|a, b| a.1.cmp(&b.1));
        let got: Vec<&str> = shuffled.iter().map(|(label, _)| *label).collect();
        let want: Vec<&str> = rows.iter().map(|(label, _)| *label).collect();
        assert_eq!(got, want);
    }
}
