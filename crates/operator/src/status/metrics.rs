//! The status writer's counters and the translator's passes as Prometheus series, read
//! at scrape time (the writer keeps plain atomics; nothing on its path knows about
//! Prometheus).
//!
//! ```text
//!   portico_reconciles_total                       snapshots translated (every change batch)
//!   portico_status_passes_total                    passes of the status writer over a snapshot
//!   portico_status_patches_total{result=...}       patched | unchanged | conflict | failed
//! ```

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};

use super::StatusCounters;
use crate::kube::provider::Snapshots;

/// Reads [`StatusCounters`] and the latest snapshot generation when scraped.
pub struct StatusCollector {
    counters: Arc<StatusCounters>,
    snapshots: Snapshots,
    reconciles: IntCounter,
    passes: IntCounter,
    patches: IntCounterVec,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCollector").finish_non_exhaustive()
    }
}

impl StatusCollector {
    pub fn new(
        counters: Arc<StatusCounters>,
        snapshots: Snapshots,
    ) -> Result<Self, prometheus::Error> {
        let reconciles = IntCounter::new(
            "portico_reconciles_total",
            "Snapshots of the watched objects translated (one per batch of changes)",
        )?;
        let passes = IntCounter::new(
            "portico_status_passes_total",
            "Passes of the status writer over a snapshot (leader only)",
        )?;
        let patches = IntCounterVec::new(
            Opts::new(
                "portico_status_patches_total",
                "Status writes by result: patched, unchanged (no patch needed), conflict (retried), failed",
            ),
            &["result"],
        )?;
        let descs = [reconciles.desc(), passes.desc(), patches.desc()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Ok(Self {
            counters,
            snapshots,
            reconciles,
            passes,
            patches,
            descs,
        })
    }
}

/// Moves a Prometheus counter up to `value` (the atomics only grow).
fn catch_up(counter: &IntCounter, value: u64) {
    let behind = value.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}

impl Collector for StatusCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let generation = self.snapshots.borrow().as_ref().map_or(0, |s| s.generation);
        catch_up(&self.reconciles, generation);
        let c = &self.counters;
        catch_up(&self.passes, c.passes());
        for (result, value) in [
            ("patched", c.patched()),
            ("unchanged", c.unchanged()),
            ("conflict", c.conflicts()),
            ("failed", c.failed()),
        ] {
            catch_up(&self.patches.with_label_values(&[result]), value);
        }
        let mut families = self.reconciles.collect();
        families.extend(self.passes.collect());
        families.extend(self.patches.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};
    use std::sync::atomic::Ordering;

    #[test]
    fn scrapes_show_the_writer_counters() {
        let counters = Arc::new(StatusCounters::default());
        let (_tx, snapshots) = tokio::sync::watch::channel(None);
        let registry = Registry::new();
        registry
            .register(Box::new(
                StatusCollector::new(counters.clone(), snapshots).unwrap(),
            ))
            .unwrap();
        let scrape = || {
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(scrape().contains("portico_status_patches_total{result=\"patched\"} 0"));
        counters.patched.fetch_add(3, Ordering::Relaxed);
        counters.conflicts.fetch_add(1, Ordering::Relaxed);
        counters.passes.fetch_add(2, Ordering::Relaxed);
        let text = scrape();
        assert!(
            text.contains("portico_status_patches_total{result=\"patched\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("portico_status_patches_total{result=\"conflict\"} 1"),
            "{text}"
        );
        assert!(text.contains("portico_status_passes_total 2"), "{text}");
        assert!(text.contains("portico_reconciles_total 0"), "{text}");
    }
}
