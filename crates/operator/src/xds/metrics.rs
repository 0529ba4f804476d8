//! Counters of the config server, registered in the operator's registry (served on the
//! metrics port, see crate::xds::admin).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Push latency buckets, in seconds: a push is built, sent, applied (socket binds, TLS
/// tables) and acknowledged; milliseconds on a healthy proxy, seconds when it is loaded.
const PUSH_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
pub struct XdsMetrics {
    /// Configs sent to proxies.
    pub pushes: IntCounter,
    /// Pushes a proxy applied.
    pub acks: IntCounter,
    /// Pushes a proxy rejected.
    pub nacks: IntCounter,
    /// From sending a push to its ACK or NACK.
    pub push_latency: Histogram,
    /// Streams open now.
    pub connected: IntGauge,
    /// Streams opened since start (reconnects included).
    pub streams: IntCounter,
}

impl XdsMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            pushes: IntCounter::new("portico_config_pushes_total", "Configs pushed to proxies")?,
            acks: IntCounter::new(
                "portico_config_acks_total",
                "Pushed configs that a proxy applied",
            )?,
            nacks: IntCounter::new(
                "portico_config_nacks_total",
                "Pushed configs that a proxy rejected",
            )?,
            push_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "portico_config_push_duration_seconds",
                    "From sending a config to a proxy to its ACK or NACK",
                )
                .buckets(PUSH_BUCKETS.to_vec()),
            )?,
            connected: IntGauge::new(
                "portico_config_proxies_connected",
                "Proxies with an open config stream",
            )?,
            streams: IntCounter::new(
                "portico_config_streams_total",
                "Config streams opened by proxies",
            )?,
        };
        registry.register(Box::new(metrics.pushes.clone()))?;
        registry.register(Box::new(metrics.acks.clone()))?;
        registry.register(Box::new(metrics.nacks.clone()))?;
        registry.register(Box::new(metrics.push_latency.clone()))?;
        registry.register(Box::new(metrics.connected.clone()))?;
        registry.register(Box::new(metrics.streams.clone()))?;
        Ok(metrics)
    }

    /// Metrics in a registry of their own, for tests and embedders that do not export.
    pub fn unregistered() -> Self {
        // Registering in a fresh registry cannot collide; the names are valid constants.
        Self::register(&Registry::new()).unwrap_or_else(|e| unreachable!("metric names: {e}"))
    }
}
