//! Backends: the weighted shares of a route and the clusters (endpoint sets) behind them.
//!
//! ```text
//! Route.backends ── WeightedBackends ──┬─ share (weight) -> Cluster(Backend { cluster, filters })
//!                                      └─ share (weight) -> Invalid("BackendNotFound: ...")
//! ClusterState: ready endpoints + a round-robin cursor, shared by every route using it
//! ```
//!
//! Cluster references are resolved to `Arc`s when the table is built, so a request
//! never looks a cluster up by name, and an unchanged cluster keeps its `Arc` (and its
//! round-robin position) across config updates.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use portico_api::config::v1 as pb;

use super::health::{self, EndpointHealth};
use crate::{error::ConfigError, filters::RouteFilters, upstream_tls::UpstreamTlsConfig};

/// A cluster as the proxy serves it.
#[derive(Debug)]
pub(crate) struct ClusterState {
    pub(crate) name: String,
    pub(crate) protocol: UpstreamProtocol,
    /// TLS to the endpoints (BackendTLSPolicy); `None`: cleartext.
    pub(crate) tls: Option<Arc<UpstreamTlsConfig>>,
    /// Ready endpoints only: not-ready ones are never picked.
    endpoints: Vec<SocketAddr>,
    /// Passive health of each endpoint, by index (health.rs).
    health: Vec<EndpointHealth>,
    next: AtomicUsize,
    /// The config this state was built from, to reuse it when a new config carries the
    /// same cluster.
    source: pb::Cluster,
}

/// How to talk to a cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
}

impl ClusterState {
    pub(crate) fn build(c: &pb::Cluster) -> Result<Self, ConfigError> {
        let mut endpoints = Vec::new();
        for e in &c.endpoints {
            let ip: IpAddr = e.address.parse().map_err(|error| ConfigError::Address {
                address: e.address.clone(),
                error,
            })?;
            let port = u16::try_from(e.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or(ConfigError::Port(e.port))?;
            if e.ready {
                endpoints.push(SocketAddr::new(ip, port));
            }
        }
        let protocol = match pb::ClusterProtocol::try_from(c.protocol) {
            Ok(pb::ClusterProtocol::H2c) => UpstreamProtocol::H2c,
            // Unspecified means the Service port said nothing: HTTP/1.1, as Kubernetes'
            // default appProtocol for HTTP routes.
            _ => UpstreamProtocol::Http1,
        };
        // Built once per cluster config: the TLS clients key their pools on this
        // instance (see crate::upstream_tls).
        let tls = c
            .tls
            .as_ref()
            .map(|t| UpstreamTlsConfig::build(t, protocol == UpstreamProtocol::H2c).map(Arc::new))
            .transpose()?;
        Ok(Self {
            name: c.name.clone(),
            protocol,
            tls,
            health: endpoints
                .iter()
                .map(|_| EndpointHealth::default())
                .collect(),
            endpoints,
            next: AtomicUsize::new(0),
            source: c.clone(),
        })
    }

    pub(crate) fn same_source(&self, c: &pb::Cluster) -> bool {
        self.source == *c
    }

    /// The next ready endpoint, round robin; `None` when none is ready.
    pub(crate) fn pick(&self) -> Option<SocketAddr> {
        self.pick_excluding(&[])
    }

    /// The next ready endpoint, round robin, leaving out ejected endpoints and those
    /// in `tried` while others remain (health.rs); `None` when none is ready.
    pub(crate) fn pick_excluding(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        // Relaxed: the cursor only spreads load, it orders nothing else.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        health::choose(&self.endpoints, &self.health, start, tried, Instant::now())
    }

    /// Whether an endpoint other than those in `tried` is ready.
    pub(crate) fn has_untried(&self, tried: &[SocketAddr]) -> bool {
        self.endpoints.iter().any(|e| !tried.contains(e))
    }

    /// Records whether connecting to `endpoint` worked (passive health, health.rs).
    pub(crate) fn record_connect(&self, endpoint: SocketAddr, connected: bool) {
        let Some(i) = self.endpoints.iter().position(|e| *e == endpoint) else {
            return;
        };
        if self.health[i].record(connected, Instant::now()) {
            tracing::warn!(
                cluster = %self.name,
                %endpoint,
                failures = health::EJECT_AFTER,
                ejected_for = ?health::EJECTION,
                "endpoint ejected after consecutive connect failures"
            );
        }
    }
}

/// Where one share of a route's traffic goes.
#[derive(Debug)]
pub(crate) enum Target {
    Cluster(Backend),
    /// An unresolvable backendRef keeps its share and answers it with 500.
    Invalid(String),
}

/// A backendRef that resolved: its cluster and its own filters.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) cluster: Arc<ClusterState>,
    pub(crate) filters: RouteFilters,
}

/// The weighted backends of a route. Shares of weight 0 are dropped when building:
/// Gateway API (BackendRef.weight): "If only one backend is specified and it has a
/// weight greater than 0, 100% of the traffic is forwarded to that backend. If weight is
/// set to 0, no traffic should be forwarded for this entry."
#[derive(Debug)]
pub(crate) struct WeightedBackends {
    /// (cumulative weight up to and including this share, target)
    shares: Vec<(u64, Target)>,
    total: u64,
}

impl WeightedBackends {
    pub(crate) fn build(
        backends: &[pb::WeightedBackend],
        mut cluster: impl FnMut(&str) -> Result<Arc<ClusterState>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut shares = Vec::with_capacity(backends.len());
        let mut total = 0u64;
        for b in backends {
            // Resolve even weight-0 clusters: a dangling name is a broken config whatever
            // its weight.
            let target = match &b.target {
                Some(pb::weighted_backend::Target::Cluster(name)) => Target::Cluster(Backend {
                    cluster: cluster(name)?,
                    filters: RouteFilters::compile_backend(&b.filters)?,
                }),
                Some(pb::weighted_backend::Target::Invalid(reason)) => {
                    Target::Invalid(reason.clone())
                }
                None => Target::Invalid("backend without a target".to_owned()),
            };
            if b.weight == 0 {
                continue;
            }
            total += u64::from(b.weight);
            shares.push((total, target));
        }
        Ok(Self { shares, total })
    }

    /// The clusters of the valid shares, in config order (a cluster listed twice comes
    /// twice).
    pub(crate) fn clusters(&self) -> impl Iterator<Item = &Arc<ClusterState>> {
        self.shares.iter().filter_map(|(_, t)| match t {
            Target::Cluster(backend) => Some(&backend.cluster),
            Target::Invalid(_) => None,
        })
    }

    /// A share chosen at random in proportion to the weights; `None` when no share has
    /// a weight.
    pub(crate) fn pick(&self) -> Option<&Target> {
        self.pick_with(|total| fastrand::u64(0..total))
    }

    fn pick_with(&self, roll: impl FnOnce(u64) -> u64) -> Option<&Target> {
        if self.total == 0 {
            return None;
        }
        let r = roll(self.total);
        // The first share whose cumulative weight exceeds the roll: a share of weight w
        // owns exactly w of the `total` possible rolls.
        let i = self
            .shares
            .partition_point(|(cumulative, _)| *cumulative <= r);
        self.shares.get(i).map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cluster(name: &str, endpoints: &[(&str, u32, bool)]) -> pb::Cluster {
        pb::Cluster {
            name: name.to_owned(),
            endpoints: endpoints
                .iter()
                .map(|(a, p, ready)| pb::Endpoint {
                    address: (*a).to_owned(),
                    port: *p,
                    ready: *ready,
                    pod: String::new(),
                })
                .collect(),
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: Default::default(),
        }
    }

    fn share(weight: u32, cluster: &str) -> pb::WeightedBackend {
        pb::WeightedBackend {
            weight,
            target: Some(pb::weighted_backend::Target::Cluster(cluster.to_owned())),
            filters: vec![],
        }
    }

    #[test]
    fn round_robin_over_ready_endpoints_only() {
        let c = ClusterState::build(&cluster(
            "c",
            &[
                ("10.0.0.1", 80, true),
                ("10.0.0.2", 80, false),
                ("10.0.0.3", 80, true),
            ],
        ))
        .unwrap();
        let picks: Vec<_> = (0..4).map(|_| c.pick().unwrap().to_string()).collect();
        assert_eq!(
            picks,
            ["10.0.0.1:80", "10.0.0.3:80", "10.0.0.1:80", "10.0.0.3:80"]
        );
    }

    #[test]
    fn no_ready_endpoint_picks_none() {
        let c = ClusterState::build(&cluster("c", &[("10.0.0.1", 80, false)])).unwrap();
        assert!(c.pick().is_none());
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        assert!(ClusterState::build(&cluster("c", &[("not-an-ip", 80, true)])).is_err());
        assert!(ClusterState::build(&cluster("c", &[("10.0.0.1", 70000, true)])).is_err());
        assert!(ClusterState::build(&cluster("c", &[("10.0.0.1", 0, true)])).is_err());
    }

    #[test]
    fn weighted_pick_owns_exact_ranges() {
        let a = Arc::new(ClusterState::build(&cluster("a", &[])).unwrap());
        let b = Arc::new(ClusterState::build(&cluster("b", &[])).unwrap());
        let w = WeightedBackends::build(&[share(95, "a"), share(0, "b"), share(5, "b")], |name| {
            Ok(if name == "a" { a.clone() } else { b.clone() })
        })
        .unwrap();
        let name = |roll: u64| match w.pick_with(|total| {
            assert_eq!(total, 100);
            roll
        }) {
            Some(Target::Cluster(b)) => b.cluster.name.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(name(0), "a");
        assert_eq!(name(94), "a");
        assert_eq!(name(95), "b");
        assert_eq!(name(99), "b");
    }

    #[test]
    fn zero_total_weight_picks_none() {
        let w = WeightedBackends::build(&[share(0, "a")], |_| {
            Ok(Arc::new(ClusterState::build(&cluster("a", &[])).unwrap()))
        })
        .unwrap();
        assert!(w.pick().is_none());
        let empty = WeightedBackends::build(&[], |_| unreachable!()).unwrap();
        assert!(empty.pick().is_none());
    }

    #[test]
    fn unknown_cluster_is_an_error_even_at_weight_zero() {
        let err = WeightedBackends::build(&[share(0, "missing")], |name| {
            Err(ConfigError::UnknownCluster(name.to_owned()))
        });
        assert!(matches!(err, Err(ConfigError::UnknownCluster(n)) if n == "missing"));
    }
}
