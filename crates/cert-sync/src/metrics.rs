//! cert-sync's metrics, served on `--metrics-listen` at `/metrics`.
//!
//! Per certificateRef (label set [`CertLabels`]: the source Secret's namespace and name,
//! and the Gateway as `<namespace>/<name>`, which may live in another namespace):
//! - `portico_certificate_expiry_timestamp_seconds`: the leaf certificate's notAfter;
//! - `portico_certificate_invalid`: 1 while the reference cannot be served (missing,
//!   not permitted, not a usable certificate, expired).
//!
//! Series of references that went away are removed, so an alert on the expiry of a
//! certificate nobody uses any more clears by itself.

use std::collections::BTreeSet;

use prometheus::{GaugeVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// The labels of the per-certificate series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertLabels {
    pub namespace: String,
    pub name: String,
    /// `<namespace>/<name>` of the Gateway.
    pub gateway: String,
}

impl CertLabels {
    const NAMES: [&'static str; 3] = ["namespace", "name", "gateway"];

    fn values(&self) -> [&str; 3] {
        [&self.namespace, &self.name, &self.gateway]
    }
}

#[derive(Debug, Clone)]
pub struct CertSyncMetrics {
    pub expiry: GaugeVec,
    pub invalid: IntGaugeVec,
    /// Copies in the secrets namespace, as of the last pass.
    pub copies: IntGauge,
    /// Passes run (leader or not).
    pub passes: IntCounter,
    /// Secrets created, replaced or deleted.
    pub writes: IntCounter,
    /// Writes, deletions and Events that failed.
    pub errors: IntCounter,
    /// Events published.
    pub events: IntCounter,
    /// Whether this replica holds the Lease.
    pub leader: IntGauge,
}

impl CertSyncMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            expiry: GaugeVec::new(
                Opts::new(
                    "portico_certificate_expiry_timestamp_seconds",
                    "notAfter of the leaf certificate a Gateway listener refers to, in seconds since the Unix epoch",
                ),
                &CertLabels::NAMES,
            )?,
            invalid: IntGaugeVec::new(
                Opts::new(
                    "portico_certificate_invalid",
                    "1 while a Gateway's certificateRef cannot be served (missing, not permitted, unusable or expired)",
                ),
                &CertLabels::NAMES,
            )?,
            copies: IntGauge::new(
                "portico_cert_sync_copies",
                "Secret copies in the secrets namespace",
            )?,
            passes: IntCounter::new("portico_cert_sync_passes_total", "Sync passes run")?,
            writes: IntCounter::new(
                "portico_cert_sync_writes_total",
                "Secret copies created, updated or deleted",
            )?,
            errors: IntCounter::new(
                "portico_cert_sync_errors_total",
                "Writes, deletions and Events that failed",
            )?,
            events: IntCounter::new("portico_cert_sync_events_total", "Events published")?,
            leader: IntGauge::new(
                "portico_cert_sync_leader",
                "1 while this replica holds the Lease",
            )?,
        };
        registry.register(Box::new(metrics.expiry.clone()))?;
        registry.register(Box::new(metrics.invalid.clone()))?;
        registry.register(Box::new(metrics.copies.clone()))?;
        registry.register(Box::new(metrics.passes.clone()))?;
        registry.register(Box::new(metrics.writes.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
        Ok(metrics)
    }

    /// Sets the per-certificate series to exactly `current` (expiry when known, and
    /// whether invalid), removing those of `previous` that are gone. Returns the label
    /// sets now exported, to pass as `previous` next time.
    pub fn set_certificates(
        &self,
        previous: &BTreeSet<CertLabels>,
        current: &[(CertLabels, Option<i64>, bool)],
    ) -> BTreeSet<CertLabels> {
        let now: BTreeSet<CertLabels> = current.iter().map(|(l, _, _)| l.clone()).collect();
        for gone in previous.difference(&now) {
            // Absent series are fine to "remove": nothing to do then.
            let _ = self.expiry.remove_label_values(&gone.values());
            let _ = self.invalid.remove_label_values(&gone.values());
        }
        for (labels, not_after, invalid) in current {
            match not_after {
                #[allow(clippy::cast_precision_loss)] // Unix seconds fit an f64 exactly.
                Some(t) => self
                    .expiry
                    .with_label_values(&labels.values())
                    .set(*t as f64),
                None => {
                    let _ = self.expiry.remove_label_values(&labels.values());
                }
            }
            self.invalid
                .with_label_values(&labels.values())
                .set(i64::from(*invalid));
        }
        now
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn labels(name: &str) -> CertLabels {
        CertLabels {
            namespace: "apps".into(),
            name: name.into(),
            gateway: "apps/web".into(),
        }
    }

    #[test]
    fn series_follow_the_current_references() {
        let registry = Registry::new();
        let m = CertSyncMetrics::register(&registry).unwrap();
        let exported = m.set_certificates(
            &BTreeSet::new(),
            &[
                (labels("a"), Some(1_800_000_000), false),
                (labels("b"), None, true),
            ],
        );
        let t = text(&registry);
        assert!(
            t.contains(r#"portico_certificate_expiry_timestamp_seconds{gateway="apps/web",name="a",namespace="apps"} 1800000000"#),
            "{t}"
        );
        assert!(t.contains(
            r#"portico_certificate_invalid{gateway="apps/web",name="b",namespace="apps"} 1"#
        ));
        m.set_certificates(&exported, &[(labels("b"), Some(5), false)]);
        let t = text(&registry);
        assert!(!t.contains(r#"name="a""#), "{t}");
        assert!(t.contains(
            r#"portico_certificate_invalid{gateway="apps/web",name="b",namespace="apps"} 0"#
        ));
    }
}
