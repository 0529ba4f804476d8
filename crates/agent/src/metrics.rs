//! The agent's Prometheus metrics, served as text on the status port's `/metrics`.
//!
//! ```text
//! AgentMetrics (its own Registry), set from the AgentStatus at each scrape
//! ├── portico_agent_map_entries{map}                  gauge   portico_svc | portico_be | portico_l2
//! ├── portico_agent_gateway_routes                    gauge   Gateway addresses routed locally
//! ├── portico_agent_program_attached{program,target}  gauge   1 per attached hook
//! ├── portico_agent_syncs_total                       counter snapshots programmed
//! ├── portico_agent_sync_errors_total                 counter of which failed
//! ├── portico_agent_synced                            gauge   1 once the source was complete
//! └── portico_agent_healthy                           gauge   1 while the last sync succeeded
//! ```
//!
//! The agent loop keeps one [`AgentStatus`] (also served as JSON on `/status`); the
//! metrics are read from it when scraped, so the loop knows nothing about Prometheus and
//! the two views always agree.

use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::agent::AgentStatus;
use crate::maps::{BACKENDS_MAP, L2_MAP, SERVICES_MAP};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Registry,
    map_entries: IntGaugeVec,
    gateway_routes: IntGauge,
    attached: IntGaugeVec,
    syncs: IntCounter,
    sync_errors: IntCounter,
    synced: IntGauge,
    healthy: IntGauge,
}

impl AgentMetrics {
    pub fn register(registry: Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            map_entries: IntGaugeVec::new(
                Opts::new(
                    "portico_agent_map_entries",
                    "Entries the agent wrote in a BPF map: services (portico_svc), backend slots (portico_be), announced IPs (portico_l2)",
                ),
                &["map"],
            )?,
            gateway_routes: IntGauge::new(
                "portico_agent_gateway_routes",
                "Gateway addresses with a local route on this node (gateway steering)",
            )?,
            attached: IntGaugeVec::new(
                Opts::new(
                    "portico_agent_program_attached",
                    "1 for each attached eBPF hook: program socket-lb, nodeport, l2 or steering, target the cgroup or interface",
                ),
                &["program", "target"],
            )?,
            syncs: IntCounter::new(
                "portico_agent_syncs_total",
                "Snapshots of Services and EndpointSlices programmed into the maps",
            )?,
            sync_errors: IntCounter::new(
                "portico_agent_sync_errors_total",
                "Syncs that failed (retried with the next snapshot)",
            )?,
            synced: IntGauge::new(
                "portico_agent_synced",
                "1 once the source delivered a complete state and it was programmed",
            )?,
            healthy: IntGauge::new("portico_agent_healthy", "1 while the last sync succeeded")?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.map_entries.clone()))?;
        r.register(Box::new(metrics.gateway_routes.clone()))?;
        r.register(Box::new(metrics.attached.clone()))?;
        r.register(Box::new(metrics.syncs.clone()))?;
        r.register(Box::new(metrics.sync_errors.clone()))?;
        r.register(Box::new(metrics.synced.clone()))?;
        r.register(Box::new(metrics.healthy.clone()))?;
        Ok(metrics)
    }

    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        // A fresh registry cannot hold a colliding name, and the names are constants.
        Self::register(Registry::new()).unwrap_or_else(|e| unreachable!("metric names: {e}"))
    }

    /// Sets every series from `status` and renders the text exposition.
    pub fn render(&self, status: &AgentStatus) -> String {
        self.observe(status);
        let mut out = Vec::new();
        // Encoding fails only for invalid metric families, which the constants are not.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn observe(&self, s: &AgentStatus) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (map, entries) in [
            (SERVICES_MAP, count(s.services)),
            (BACKENDS_MAP, i64::from(s.backend_slots)),
            (L2_MAP, count(s.l2_announced.len())),
        ] {
            self.map_entries.with_label_values(&[map]).set(entries);
        }
        self.gateway_routes.set(count(s.gateway_addresses.len()));
        // What is attached only grows while the agent runs; reset anyway, so the series
        // are exactly the status's.
        self.attached.reset();
        for hook in &s.attached {
            let (program, target) = hook.split_once('@').unwrap_or((hook.as_str(), ""));
            self.attached.with_label_values(&[program, target]).set(1);
        }
        catch_up(&self.syncs, s.syncs);
        catch_up(&self.sync_errors, s.sync_errors);
        self.synced.set(i64::from(s.synced));
        self.healthy.set(i64::from(s.healthy));
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves a Prometheus counter up to `value` (the status's counts only grow).
fn catch_up(counter: &IntCounter, value: u64) {
    let behind = value.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_the_status() {
        let metrics = AgentMetrics::new();
        let mut status = AgentStatus {
            healthy: true,
            synced: true,
            syncs: 2,
            services: 3,
            backend_slots: 5,
            attached: vec!["socket-lb@/sys/fs/cgroup".into(), "steering".into()],
            gateway_addresses: vec!["10.0.0.1".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST)],
            ..AgentStatus::default()
        };
        let text = metrics.render(&status);
        for line in [
            r#"portico_agent_map_entries{map="portico_svc"} 3"#,
            r#"portico_agent_map_entries{map="portico_be"} 5"#,
            r#"portico_agent_map_entries{map="portico_l2"} 0"#,
            r#"portico_agent_program_attached{program="socket-lb",target="/sys/fs/cgroup"} 1"#,
            r#"portico_agent_program_attached{program="steering",target=""} 1"#,
            "portico_agent_gateway_routes 1",
            "portico_agent_syncs_total 2",
            "portico_agent_sync_errors_total 0",
            "portico_agent_healthy 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        status.syncs = 4;
        status.sync_errors = 1;
        status.healthy = false;
        let text = metrics.render(&status);
        for line in [
            "portico_agent_syncs_total 4",
            "portico_agent_sync_errors_total 1",
            "portico_agent_healthy 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
