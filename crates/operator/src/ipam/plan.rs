//! The allocator: pools and Services in, the addresses every Service should show out.
//! Pure (no I/O, no clock): it is re-run from the cluster's state on every change, so
//! an operator restart rebuilds the same allocations from the Services' status.
//!
//! ```text
//!   requests, oldest first (creationTimestamp, then namespace/name)
//!   pass 1 keep:   each Service keeps the addresses it already shows when they are
//!                  still valid (in a pool that selects it, of the family it wants,
//!                  among the ones it asks for) and no older Service holds them
//!   pass 2 assign: each Service still without addresses gets the ones it asks for
//!                  (all or none) or the first free address of the first pool, by
//!                  name, that selects it and is not disabled
//!   taken: address -> Service   (one holder per address: never handed out twice)
//! ```
//!
//! Deleted Services are simply absent from the requests, so their addresses are free on
//! the next run. A disabled pool gives nothing new but its addresses stay with their
//! Services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ipam::pool::Pool;
use crate::ipam::request::Request;
use crate::object::ObjectKey;

/// What one Service should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// These addresses, in this order (requested order, or the one assigned).
    Assigned(Vec<IpAddr>),
    /// None; why, for the Service's Event.
    NotAssigned(String),
}

/// One pool's counts after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub total: u128,
    pub used: u128,
    pub problem: Option<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub services: BTreeMap<ObjectKey, Assignment>,
    pub pools: BTreeMap<String, PoolUsage>,
}

/// Allocates addresses of `pools` to `requests`.
pub fn plan(pools: &[Pool], requests: &[Request]) -> Plan {
    let mut pools: Vec<&Pool> = pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by(|a, b| {
        let time = |r: &Request| r.created.as_ref().map(|t| t.0);
        time(a).cmp(&time(b)).then_with(|| a.key.cmp(&b.key))
    });

    let mut taken: BTreeMap<IpAddr, &ObjectKey> = BTreeMap::new();
    let mut kept: BTreeMap<&ObjectKey, Vec<IpAddr>> = BTreeMap::new();

    // Pass 1: keep what is still valid, oldest Service first.
    for r in order.iter().filter(|r| r.invalid_requests.is_empty()) {
        let mut keep = Vec::new();
        for ip in &r.current {
            let valid = pools
                .iter()
                .any(|p| p.selects(&r.labels) && p.contains(*ip))
                && if r.requested.is_empty() {
                    keep.is_empty() && r.wants_ipv4.is_none_or(|v4| v4 == ip.is_ipv4())
                } else {
                    r.requested.contains(ip)
                };
            if valid && !taken.contains_key(ip) && !keep.contains(ip) {
                keep.push(*ip);
            }
        }
        for ip in &keep {
            taken.insert(*ip, &r.key);
        }
        kept.insert(&r.key, keep);
    }

    // Pass 2: complete or assign.
    let mut services = BTreeMap::new();
    for r in &order {
        let assignment = if !r.invalid_requests.is_empty() {
            Assignment::NotAssigned(format!(
                "requested {} not IP addresses",
                quoted(&r.invalid_requests)
            ))
        } else if !r.requested.is_empty() {
            assign_requested(&pools, r, &mut taken)
        } else if let Some(ip) = kept.get(&r.key).and_then(|k| k.first()) {
            Assignment::Assigned(vec![*ip])
        } else {
            assign_any(&pools, r, &mut taken)
        };
        services.insert(r.key.clone(), assignment);
    }

    let usage = pools
        .iter()
        .map(|p| {
            let used = taken.keys().filter(|ip| p.contains(**ip)).count();
            let usage = PoolUsage {
                total: p.size(),
                used: used as u128,
                problem: p.problem.clone(),
            };
            (p.name.clone(), usage)
        })
        .collect();
    Plan {
        services,
        pools: usage,
    }
}

/// Every requested address or none: a Service never serves on part of what it asked
/// for without saying so.
fn assign_requested<'r>(
    pools: &[&Pool],
    r: &'r Request,
    taken: &mut BTreeMap<IpAddr, &'r ObjectKey>,
) -> Assignment {
    for ip in &r.requested {
        match taken.get(ip) {
            Some(holder) if *holder == &r.key => continue,
            Some(holder) => {
                let why = format!("requested address {ip} is assigned to Service {holder}");
                release(taken, &r.key);
                return Assignment::NotAssigned(why);
            }
            None => {}
        }
        let from = pools
            .iter()
            .find(|p| !p.disabled && p.selects(&r.labels) && p.contains(*ip));
        if from.is_none() {
            release(taken, &r.key);
            return Assignment::NotAssigned(format!(
                "requested address {ip} is in no enabled LoadBalancerIPPool that selects this Service"
            ));
        }
    }
    for ip in &r.requested {
        taken.insert(*ip, &r.key);
    }
    Assignment::Assigned(r.requested.clone())
}

fn assign_any<'r>(
    pools: &[&Pool],
    r: &'r Request,
    taken: &mut BTreeMap<IpAddr, &'r ObjectKey>,
) -> Assignment {
    let candidates: Vec<&&Pool> = pools
        .iter()
        .filter(|p| !p.disabled && p.selects(&r.labels))
        .collect();
    for pool in &candidates {
        let free = pool
            .ranges
            .iter()
            .filter(|range| r.wants_ipv4.is_none_or(|v4| v4 == range.start.is_ipv4()))
            .find_map(|range| range.first_free(&|ip| taken.contains_key(&ip)));
        if let Some(ip) = free {
            taken.insert(ip, &r.key);
            return Assignment::Assigned(vec![ip]);
        }
    }
    if candidates.is_empty() {
        Assignment::NotAssigned("no enabled LoadBalancerIPPool selects this Service".to_owned())
    } else {
        let names: Vec<&str> = candidates.iter().map(|p| p.name.as_str()).collect();
        Assignment::NotAssigned(format!(
            "no free address left in LoadBalancerIPPool {}",
            names.join(", ")
        ))
    }
}

fn release(taken: &mut BTreeMap<IpAddr, &ObjectKey>, key: &ObjectKey) {
    taken.retain(|_, holder| *holder != key);
}

fn quoted(values: &[String]) -> String {
    let q: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    let verb = if values.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", q.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ipam::pool::tests::mk_pool;
    use portico_api::k8s::LabelSelector;
    use portico_api::k8s::Time;
    use portico_api::k8s_openapi::jiff::Timestamp;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(name: &str, blocks: &[(&str, Option<&str>)]) -> Pool {
        Pool::from_resource(&mk_pool(name, blocks))
    }

    fn req(name: &str, age: i64) -> Request {
        Request {
            key: ObjectKey::namespaced("ns", name),
            uid: Some(format!("uid-{name}")),
            created: Some(Time(Timestamp::from_second(1_000_000 - age).unwrap())),
            labels: BTreeMap::new(),
            requested: Vec::new(),
            invalid_requests: Vec::new(),
            wants_ipv4: None,
            current: Vec::new(),
        }
    }

    fn got(plan: &Plan, name: &str) -> Result<Vec<String>, String> {
        match &plan.services[&ObjectKey::namespaced("ns", name)] {
            Assignment::Assigned(ips) => Ok(ips.iter().map(ToString::to_string).collect()),
            Assignment::NotAssigned(why) => Err(why.clone()),
        }
    }

    #[test]
    fn assigns_in_order_and_never_twice() {
        let pools = [pool("a", &[("10.0.0.1", Some("10.0.0.2"))])];
        let plan = plan(&pools, &[req("young", 1), req("old", 10), req("third", 0)]);
        assert_eq!(got(&plan, "old"), Ok(vec!["10.0.0.1".into()]));
        assert_eq!(got(&plan, "young"), Ok(vec!["10.0.0.2".into()]));
        let why = got(&plan, "third").unwrap_err();
        assert!(
            why.contains("no free address left in LoadBalancerIPPool a"),
            "{why}"
        );
        assert_eq!(
            plan.pools["a"],
            PoolUsage {
                total: 2,
                used: 2,
                problem: None
            }
        );
    }

    #[test]
    fn current_addresses_survive_a_restart_and_a_new_older_service() {
        let pools = [pool("a", &[("10.0.0.0/30", None)])];
        let mut young = req("young", 1);
        young.current = vec![ip("10.0.0.0")];
        // An older Service without an address does not take the younger one's.
        let plan = plan(&pools, &[young.clone(), req("old", 10)]);
        assert_eq!(got(&plan, "young"), Ok(vec!["10.0.0.0".into()]));
        assert_eq!(got(&plan, "old"), Ok(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn duplicates_in_status_go_to_the_older_service() {
        let pools = [pool("a", &[("10.0.0.0/30", None)])];
        let (mut young, mut old) = (req("young", 1), req("old", 10));
        young.current = vec![ip("10.0.0.0")];
        old.current = vec![ip("10.0.0.0")];
        let plan = plan(&pools, &[young, old]);
        assert_eq!(got(&plan, "old"), Ok(vec!["10.0.0.0".into()]));
        assert_eq!(got(&plan, "young"), Ok(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn deleted_services_release_their_addresses() {
        let pools = [pool("a", &[("10.0.0.1", None)])];
        let mut gone = req("gone", 10);
        gone.current = vec![ip("10.0.0.1")];
        let before = plan(&pools, &[gone, req("waiting", 1)]);
        assert!(got(&before, "waiting").is_err());
        let after = plan(&pools, &[req("waiting", 1)]);
        assert_eq!(got(&after, "waiting"), Ok(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn requested_addresses_all_or_none() {
        let pools = [
            pool("a", &[("10.0.0.0/29", None)]),
            pool("b", &[("2001:db8::/126", None)]),
        ];
        let mut holder = req("holder", 10);
        holder.requested = vec![ip("10.0.0.5")];
        let mut both = req("both", 5);
        both.requested = vec![ip("10.0.0.6"), ip("2001:db8::2")];
        let mut clash = req("clash", 1);
        clash.requested = vec![ip("10.0.0.7"), ip("10.0.0.5")];
        let mut outside = req("outside", 0);
        outside.requested = vec![ip("192.0.2.1")];
        let mut bogus = req("bogus", 0);
        bogus.invalid_requests = vec!["ten".into()];
        let plan = plan(
            &pools,
            &[holder, both, clash, outside, bogus, req("any", 0)],
        );
        assert_eq!(got(&plan, "holder"), Ok(vec!["10.0.0.5".into()]));
        assert_eq!(
            got(&plan, "both"),
            Ok(vec!["10.0.0.6".into(), "2001:db8::2".into()])
        );
        let why = got(&plan, "clash").unwrap_err();
        assert!(why.contains("assigned to Service ns/holder"), "{why}");
        assert!(
            got(&plan, "outside")
                .unwrap_err()
                .contains("no enabled LoadBalancerIPPool")
        );
        assert!(
            got(&plan, "bogus")
                .unwrap_err()
                .contains("\"ten\" is not IP addresses")
        );
        // 10.0.0.7 was released when "clash" failed: "any" gets the first free one.
        assert_eq!(got(&plan, "any"), Ok(vec!["10.0.0.0".into()]));
        assert_eq!(plan.pools["a"].used, 3);
        assert_eq!(plan.pools["b"].used, 1);
    }

    #[test]
    fn selectors_families_and_disabled_pools() {
        let mut edge = mk_pool("edge", &[("10.1.0.0/31", None)]);
        edge.spec.service_selector = Some(LabelSelector {
            match_labels: Some([("tier".to_string(), "edge".to_string())].into()),
            match_expressions: None,
        });
        let mut off = mk_pool("off", &[("10.9.0.0/31", None)]);
        off.spec.disabled = true;
        let pools = [
            Pool::from_resource(&edge),
            Pool::from_resource(&off),
            pool("v6", &[("2001:db8::/127", None)]),
            pool("z", &[("10.2.0.0/31", None)]),
        ];
        let mut tagged = req("tagged", 3);
        tagged.labels = [("tier".to_string(), "edge".to_string())].into();
        let mut v6 = req("v6", 2);
        v6.wants_ipv4 = Some(false);
        let mut v4 = req("v4", 1);
        v4.wants_ipv4 = Some(true);
        // A Service keeps its address from a pool that was disabled since.
        let mut kept = req("kept", 0);
        kept.current = vec![ip("10.9.0.1")];
        let plan = plan(&pools, &[tagged, v6, v4, kept]);
        assert_eq!(got(&plan, "tagged"), Ok(vec!["10.1.0.0".into()]));
        assert_eq!(got(&plan, "v6"), Ok(vec!["2001:db8::".into()]));
        assert_eq!(got(&plan, "v4"), Ok(vec!["10.2.0.0".into()]));
        assert_eq!(got(&plan, "kept"), Ok(vec!["10.9.0.1".into()]));
    }

    #[test]
    fn addresses_leave_services_their_pool_no_longer_selects() {
        let pools = [pool("a", &[("10.0.0.0/31", None)])];
        let mut moved = req("moved", 1);
        moved.current = vec![ip("192.0.2.9")];
        let plan = plan(&pools, &[moved]);
        assert_eq!(got(&plan, "moved"), Ok(vec!["10.0.0.0".into()]));
        let empty = super::plan(&[], &[req("none", 1)]);
        assert!(
            got(&empty, "none")
                .unwrap_err()
                .contains("no enabled LoadBalancerIPPool selects")
        );
    }
}
