//! The proxy's Prometheus metrics, served as text on the admin port's `/metrics`.
//!
//! ```text
//! ProxyMetrics (one per ProxyHandle, its own Registry)
//! ├── portico_proxy_requests_total{gateway,route,backend,code}     counter
//! ├── portico_proxy_request_duration_seconds{gateway,route}         histogram
//! ├── portico_proxy_upstream_connect_errors_total{backend}          counter
//! ├── portico_proxy_downstream_connections_active{listener}         gauge
//! ├── portico_proxy_config_info{version}                            gauge (1, one series)
//! └── portico_proxy_config_updates_total{outcome="ok"|"rejected"}   counter
//!
//! RoutingTable (per config) ── Route.stats: RouteStats, one per (gateway, route, clusters)
//!                               ├── labels         gateway, route object
//!                               ├── duration       OnceLock: the route's histogram
//!                               ├── by_backend[]   (cluster, OnceLock<CodeCounters>)
//!                               └── local          OnceLock<CodeCounters> for backend=""
//! ```
//!
//! Label values:
//! - `gateway`: "<namespace>/<name>" of the Gateway whose listener served the request;
//!   `route`: the route object ("<namespace>/<name>", the config's `Route.route`);
//!   `backend`: the cluster ("<namespace>/<service>:<port>"). All three are "" when the
//!   request matched no route (404, 421) or, for `backend`, when the proxy answered
//!   itself (redirect, CORS preflight, invalid backend, request timeout before a
//!   backend was picked).
//! - `code`: the status class, "1xx" to "5xx", not the exact status: five series per
//!   route and backend whatever clients and backends do, so cardinality is bounded by
//!   the config alone. The access log has the exact status.
//!
//! The hot path touches no map and formats no string once a route has served: a
//! route's handles are resolved on its first request (per backend: on the first
//! request that backend answers) and kept in `RouteStats`, which the tables of later
//! configs share; after that a request increments atomics. A route's series appear
//! when it first serves: each series costs ~1-2 KiB in the registry (label pairs, the
//! histogram's buckets), and resolving them eagerly for 5,000 configured routes, most
//! of which may never serve, held tens of MiB. Upstream connect errors (an error path)
//! look up their series.
//! Series of routes that a later config removed stay until the process restarts; their
//! number is bounded by the routes ever configured.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::table::{ClusterState, Route};

/// Request duration buckets, in seconds: from a cached local reply to a slow backend.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metrics of one proxy, registered in its own registry.
#[derive(Debug, Clone)]
pub(crate) struct ProxyMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    connect_errors: IntCounterVec,
    connections: IntGaugeVec,
    config_info: IntGaugeVec,
    config_ok: IntCounter,
    config_rejected: IntCounter,
    /// Requests that matched no route.
    unrouted: Arc<RouteStats>,
}

/// The label handles of one route entry, each resolved on first use.
#[derive(Debug)]
pub(crate) struct RouteStats {
    requests: IntCounterVec,
    duration_vec: HistogramVec,
    gateway: Arc<str>,
    route: Arc<str>,
    duration: OnceLock<Histogram>,
    by_backend: Box<[(Arc<ClusterState>, OnceLock<CodeCounters>)]>,
    local: OnceLock<CodeCounters>,
}

/// One counter per status class: index 0 is 1xx, 4 is 5xx.
#[derive(Debug)]
struct CodeCounters([IntCounter; 5]);

impl ProxyMetrics {
    pub(crate) fn register(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "portico_proxy_requests_total",
                "HTTP requests answered, by Gateway, route, backend and status class",
            ),
            &["gateway", "route", "backend", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "portico_proxy_request_duration_seconds",
                "From the request head to the end of the response body",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["gateway", "route"],
        )?;
        let connect_errors = IntCounterVec::new(
            Opts::new(
                "portico_proxy_upstream_connect_errors_total",
                "Failed connection attempts to backend endpoints (refused, unreachable, timed out)",
            ),
            &["backend"],
        )?;
        let connections = IntGaugeVec::new(
            Opts::new(
                "portico_proxy_downstream_connections_active",
                "Open client connections, by listener socket",
            ),
            &["listener"],
        )?;
        let config_info = IntGaugeVec::new(
            Opts::new(
                "portico_proxy_config_info",
                "1 for the version of the running config",
            ),
            &["version"],
        )?;
        let updates = IntCounterVec::new(
            Opts::new(
                "portico_proxy_config_updates_total",
                "Configs applied (ok) or rejected, the running one kept (rejected)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(connect_errors.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        let unrouted = RouteStats {
            requests: requests.clone(),
            duration_vec: duration.clone(),
            gateway: Arc::from(""),
            route: Arc::from(""),
            duration: OnceLock::new(),
            by_backend: Box::new([]),
            local: OnceLock::new(),
        };
        // The unrouted series are there from the start, as before any route serves.
        unrouted.duration();
        unrouted.local();
        let unrouted = Arc::new(unrouted);
        Ok(Self {
            registry,
            config_ok: updates.with_label_values(&["ok"]),
            config_rejected: updates.with_label_values(&["rejected"]),
            requests,
            duration,
            connect_errors,
            connections,
            config_info,
            unrouted,
        })
    }

    /// Metrics in a registry of their own.
    pub(crate) fn new() -> Self {
        // A fresh registry cannot hold a colliding name, and the names are constants.
        Self::register(Registry::new()).unwrap_or_else(|e| unreachable!("metric names: {e}"))
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only for invalid metric families, which the
        // constant names and label sets above are not.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The label handles of `route` served for `gateway`, unresolved: no series
    /// exists until the route serves a request.
    pub(crate) fn route_stats(&self, gateway: &Arc<str>, route: &Route) -> RouteStats {
        RouteStats {
            requests: self.requests.clone(),
            duration_vec: self.duration.clone(),
            gateway: gateway.clone(),
            route: Arc::from(route.object.as_str()),
            duration: OnceLock::new(),
            by_backend: route
                .backends
                .clusters()
                .map(|cluster| (cluster.clone(), OnceLock::new()))
                .collect(),
            local: OnceLock::new(),
        }
    }

    pub(crate) fn unrouted(&self) -> &Arc<RouteStats> {
        &self.unrouted
    }

    pub(crate) fn connect_error(&self, cluster: &str) {
        self.connect_errors.with_label_values(&[cluster]).inc();
    }

    /// The open-connection gauge of listener socket `listener`, resolved once per
    /// accept loop.
    pub(crate) fn connections(&self, listener: &str) -> IntGauge {
        self.connections.with_label_values(&[listener])
    }

    /// Records an update: the running version (one series: the previous version's is
    /// removed) or a rejection.
    pub(crate) fn config_applied(&self, previous: &str, version: &str) {
        if previous != version {
            // Absent when no config ran yet: nothing to remove then.
            let _ = self.config_info.remove_label_values(&[previous]);
        }
        self.config_info.with_label_values(&[version]).set(1);
        self.config_ok.inc();
    }

    pub(crate) fn config_rejected(&self) {
        self.config_rejected.inc();
    }
}

impl RouteStats {
    /// Counts one answered request: `backend` is the cluster that answered, `None` for
    /// the proxy's own replies.
    pub(crate) fn record(&self, backend: Option<&ClusterState>, status: u16, took: Duration) {
        self.duration().observe(took.as_secs_f64());
        let counters = backend
            .and_then(|b| {
                self.by_backend
                    .iter()
                    .find(|(cluster, _)| std::ptr::eq(Arc::as_ptr(cluster), b))
            })
            .map_or_else(
                || self.local(),
                |(cluster, counters)| counters.get_or_init(|| self.code_counters(&cluster.name)),
            );
        counters.count(status);
    }

    fn duration(&self) -> &Histogram {
        self.duration.get_or_init(|| {
            self.duration_vec
                .with_label_values(&[&*self.gateway, &*self.route])
        })
    }

    fn local(&self) -> &CodeCounters {
        self.local.get_or_init(|| self.code_counters(""))
    }

    fn code_counters(&self, backend: &str) -> CodeCounters {
        CodeCounters::new(&self.requests, &self.gateway, &self.route, backend)
    }
}

impl CodeCounters {
    fn new(requests: &IntCounterVec, gateway: &str, route: &str, backend: &str) -> Self {
        Self(
            ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|code| requests.with_label_values(&[gateway, route, backend, code])),
        )
    }

    fn count(&self, status: u16) {
        // Statuses are 100..=599 (http::StatusCode); anything else counts as 5xx.
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.0.get(class) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_bounded() {
        let metrics = ProxyMetrics::new();
        let stats = metrics.unrouted();
        for status in [101, 200, 204, 302, 404, 421, 503, 999] {
            stats.record(None, status, Duration::from_millis(1));
        }
        let text = metrics.render();
        for (code, n) in [("1xx", 1), ("2xx", 2), ("3xx", 1), ("4xx", 2), ("5xx", 2)] {
            let series = format!(
                "portico_proxy_requests_total{{backend=\"\",code=\"{code}\",gateway=\"\",route=\"\"}} {n}"
            );
            assert!(text.contains(&series), "{series} not in\n{text}");
        }
        assert!(
            text.contains(
                "portico_proxy_request_duration_seconds_count{gateway=\"\",route=\"\"} 8"
            )
        );
    }

    #[test]
    fn one_config_version_series() {
        let metrics = ProxyMetrics::new();
        metrics.config_applied("", "v1");
        metrics.config_applied("v1", "v2");
        metrics.config_rejected();
        let text = metrics.render();
        assert!(!text.contains("version=\"v1\""), "{text}");
        assert!(text.contains("portico_proxy_config_info{version=\"v2\"} 1"));
        assert!(text.contains("portico_proxy_config_updates_total{outcome=\"ok\"} 2"));
        assert!(text.contains("portico_proxy_config_updates_total{outcome=\"rejected\"} 1"));
    }
}
