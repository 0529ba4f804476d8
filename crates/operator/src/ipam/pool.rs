//! A `LoadBalancerIPPool` as the allocator reads it: validated blocks as inclusive
//! address ranges, the Service selector, and whether it hands out new addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use portico_api::k8s::LabelSelector;
use portico_api::portico::{IpBlock, LoadBalancerIPPool};

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: IpAddr,
    pub stop: IpAddr,
}

impl Range {
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(self.start, ip)
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.stop)
    }

    /// How many addresses, saturating.
    pub fn size(&self) -> u128 {
        (to_u128(self.stop) - to_u128(self.start)).saturating_add(1)
    }

    /// The address `n` places after `start`, if still inside.
    fn nth(&self, n: u128) -> Option<IpAddr> {
        let v = to_u128(self.start).checked_add(n)?;
        (v <= to_u128(self.stop)).then(|| from_u128(self.start, v))
    }

    /// The first address not in `taken`, walking from `start`: at most `taken.len() + 1`
    /// steps, so a huge IPv6 range costs what is assigned in it, not its size.
    pub fn first_free(&self, taken: &impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
        let mut n = 0u128;
        loop {
            let ip = self.nth(n)?;
            if !taken(ip) {
                return Some(ip);
            }
            n += 1;
        }
    }
}

/// A pool, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<Range>,
    pub selector: Option<LabelSelector>,
    pub disabled: bool,
    /// Why the pool is not used at all (a block that does not parse): an operator
    /// mistake must not hand out addresses nobody meant to give.
    pub problem: Option<String>,
}

impl Pool {
    pub fn from_resource(pool: &LoadBalancerIPPool) -> Self {
        let mut ranges = Vec::new();
        let mut problems = Vec::new();
        for (i, block) in pool.spec.blocks.iter().enumerate() {
            match parse_block(block) {
                Ok(r) => ranges.push(r),
                Err(why) => problems.push(format!("blocks[{i}]: {why}")),
            }
        }
        if pool.spec.blocks.is_empty() {
            problems.push("no blocks".to_owned());
        }
        Self {
            name: pool.metadata.name.clone().unwrap_or_default(),
            ranges,
            selector: pool.spec.service_selector.clone(),
            disabled: pool.spec.disabled,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }

    /// Whether the pool may hold addresses of a Service with these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.problem.is_none() && self.selector.as_ref().is_none_or(|s| matches(s, labels))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Addresses in the pool (overlapping blocks counted twice), saturating.
    pub fn size(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.size()))
    }
}

fn parse_block(block: &IpBlock) -> Result<Range, String> {
    match (&block.cidr, &block.start, &block.stop) {
        (Some(cidr), None, None) => {
            let net: IpNet = cidr.parse().map_err(|e| format!("cidr {cidr:?}: {e}"))?;
            Ok(Range {
                start: net.network(),
                stop: net.broadcast(),
            })
        }
        (None, Some(start), stop) => {
            let start: IpAddr = start.parse().map_err(|e| format!("start {start:?}: {e}"))?;
            let stop: IpAddr = match stop {
                Some(s) => s.parse().map_err(|e| format!("stop {s:?}: {e}"))?,
                None => start,
            };
            if !same_family(start, stop) {
                return Err(format!(
                    "start {start} and stop {stop} are of different families"
                ));
            }
            if to_u128(stop) < to_u128(start) {
                return Err(format!("stop {stop} is before start {start}"));
            }
            Ok(Range { start, stop })
        }
        _ => Err("set either cidr, or start (and optionally stop)".to_owned()),
    }
}

/// `metav1.LabelSelector` semantics: every `matchLabels` pair and every expression.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // The API server rejects other operators; fail closed.
            _ => false,
        }
    });
    pairs && exprs
}

pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// `v` as an address of `like`'s family (`v` comes from a range of that family).
fn from_u128(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(v).unwrap_or(u32::MAX).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::k8s::LabelSelectorRequirement;
    use portico_api::portico::LoadBalancerIPPoolSpec;

    pub(crate) fn mk_pool(name: &str, blocks: &[(&str, Option<&str>)]) -> LoadBalancerIPPool {
        let blocks = blocks
            .iter()
            .map(|(a, b)| match b {
                None if a.contains('/') => IpBlock {
                    cidr: Some((*a).into()),
                    ..Default::default()
                },
                _ => IpBlock {
                    start: Some((*a).into()),
                    stop: b.map(Into::into),
                    ..Default::default()
                },
            })
            .collect();
        LoadBalancerIPPool::new(
            name,
            LoadBalancerIPPoolSpec {
                blocks,
                ..Default::default()
            },
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_and_ranges() {
        let pool = Pool::from_resource(&mk_pool(
            "p",
            &[
                ("10.0.0.0/30", None),
                ("10.1.0.5", Some("10.1.0.9")),
                ("2001:db8::/64", None),
            ],
        ));
        assert_eq!(pool.problem, None);
        assert_eq!(pool.ranges[0].size(), 4);
        assert!(pool.contains(ip("10.0.0.0")) && pool.contains(ip("10.0.0.3")));
        assert!(!pool.contains(ip("10.0.0.4")));
        assert!(pool.contains(ip("10.1.0.9")) && !pool.contains(ip("10.1.0.10")));
        assert!(pool.contains(ip("2001:db8::ffff")));
        assert_eq!(pool.size(), 4 + 5 + (1u128 << 64));
        // A single address.
        let one = Pool::from_resource(&mk_pool("one", &[("192.0.2.1", None)]));
        assert_eq!(one.size(), 1);
    }

    #[test]
    fn invalid_blocks_disable_the_pool() {
        for blocks in [
            vec![("10.0.0.0/33", None)],
            vec![("10.0.0.9", Some("10.0.0.1"))],
            vec![("10.0.0.1", Some("2001:db8::1"))],
            vec![("nonsense", None)],
            vec![],
        ] {
            let pool = Pool::from_resource(&mk_pool("p", &blocks));
            assert!(pool.problem.is_some(), "{blocks:?}");
            assert!(!pool.selects(&BTreeMap::new()));
        }
    }

    #[test]
    fn first_free_skips_taken_addresses() {
        let r = Range {
            start: ip("10.0.0.254"),
            stop: ip("10.0.1.1"),
        };
        let taken = [ip("10.0.0.254"), ip("10.0.0.255")];
        assert_eq!(r.first_free(&|a| taken.contains(&a)), Some(ip("10.0.1.0")));
        let all = |_| true;
        assert_eq!(r.first_free(&all), None);
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("tier".to_string(), "edge".to_string())].into();
        let sel = |k: &str, op: &str, v: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values: Some(v.iter().map(|s| s.to_string()).collect()),
            }]),
        };
        assert!(matches(&LabelSelector::default(), &labels));
        assert!(matches(&sel("tier", "In", &["edge"]), &labels));
        assert!(!matches(&sel("tier", "NotIn", &["edge"]), &labels));
        assert!(matches(&sel("zone", "DoesNotExist", &[]), &labels));
        assert!(!matches(&sel("tier", "Bogus", &[]), &labels));
        let by_label = LabelSelector {
            match_labels: Some([("tier".to_string(), "core".to_string())].into()),
            match_expressions: None,
        };
        assert!(!matches(&by_label, &labels));
    }
}
