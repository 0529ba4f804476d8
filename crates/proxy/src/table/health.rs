//! Passive health: endpoints that keep refusing connections are left out of the
//! rotation for a while (Envoy's outlier detection, on connect failures only).
//!
//! ```text
//! connect failed ──> failures += 1 ── reaches EJECT_AFTER ──> ejected for EJECTION
//! connect ok     ──> failures = 0                              (then back in rotation;
//!                                                               failing again ejects again)
//! pick: round robin over endpoints not ejected; when every one is, over all of them
//!       (a cluster never goes dark because of ejection alone)
//! ```
//!
//! The state belongs to the cluster's `ClusterState`: a config that changes the
//! cluster's endpoints starts it afresh.

use std::{
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// Consecutive connect failures that eject an endpoint.
pub(crate) const EJECT_AFTER: u32 = 3;
/// How long an ejected endpoint stays out of the rotation.
pub(crate) const EJECTION: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct EndpointHealth {
    failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

impl EndpointHealth {
    pub(crate) fn ejected(&self, now: Instant) -> bool {
        // A poisoned lock still holds a valid instant.
        let until = self.ejected_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| now < until)
    }

    /// Records a connect outcome; returns true when this failure ejected the endpoint.
    pub(crate) fn record(&self, connected: bool, now: Instant) -> bool {
        if connected {
            self.failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < EJECT_AFTER {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let mut until = self.ejected_until.lock().unwrap_or_else(|e| e.into_inner());
        *until = Some(now + EJECTION);
        true
    }
}

/// The endpoint at or after `start` (round robin) that is neither ejected nor in
/// `tried`; else the first not in `tried`; else the one at `start`.
pub(crate) fn choose(
    endpoints: &[SocketAddr],
    health: &[EndpointHealth],
    start: usize,
    tried: &[SocketAddr],
    now: Instant,
) -> Option<SocketAddr> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let order = (0..n).map(|k| (start + k) % n);
    let fresh = |i: &usize| !tried.contains(&endpoints[*i]);
    order
        .clone()
        .filter(fresh)
        .find(|i| !health.get(*i).is_some_and(|h| h.ejected(now)))
        .or_else(|| order.clone().find(fresh))
        .or(Some(start % n))
        .map(|i| endpoints[i])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([10, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn ejected_after_consecutive_failures_then_back() {
        let h = EndpointHealth::default();
        let t0 = Instant::now();
        assert!(!h.record(false, t0));
        assert!(!h.record(true, t0), "a success resets the count");
        assert!(!h.record(false, t0));
        assert!(!h.record(false, t0));
        assert!(h.record(false, t0));
        assert!(h.ejected(t0));
        assert!(!h.ejected(t0 + EJECTION));
    }

    #[test]
    fn choose_skips_ejected_and_tried() {
        let endpoints = addrs(3);
        let health: Vec<EndpointHealth> = (0..3).map(|_| EndpointHealth::default()).collect();
        let now = Instant::now();
        for _ in 0..EJECT_AFTER {
            health[0].record(false, now);
        }
        assert_eq!(choose(&endpoints, &health, 0, &[], now), Some(endpoints[1]));
        assert_eq!(
            choose(&endpoints, &health, 0, &[endpoints[1]], now),
            Some(endpoints[2])
        );
        // Every healthy one tried: an ejected untried one beats a tried one.
        assert_eq!(
            choose(&endpoints, &health, 1, &[endpoints[1], endpoints[2]], now),
            Some(endpoints[0])
        );
        // Every one tried: round robin as if nothing were known.
        assert_eq!(
            choose(&endpoints, &health, 4, &endpoints, now),
            Some(endpoints[1])
        );
        assert_eq!(choose(&[], &[], 0, &[], now), None);
    }
}
