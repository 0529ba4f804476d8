//! portico-cert-sync: copies the TLS Secrets that the listeners of Portico's Gateways
//! refer to into one namespace (`portico-secrets` by default), so that proxies read
//! certificates from there only (a namespaced Role) and never need Secrets elsewhere.
//!
//! ```text
//!   Gateway (our class) ─ listener tls.certificateRefs ─┐  ReferenceGrants
//!                                                        ▼      │
//!   Secret apps/web-cert ──────────────> plan (pure) <───────────┘
//!   (type kubernetes.io/tls)               │
//!                                          ├─> Secret portico-secrets/apps-web-cert
//!                                          │     labels: app.kubernetes.io/managed-by,
//!                                          │     portico.dev/source-namespace, -name
//!                                          ├─> delete copies nobody refers to any more
//!                                          ├─> Event on the Gateway: RefNotPermitted,
//!                                          │     InvalidCertificateRef, CertificateExpiring
//!                                          └─> portico_certificate_expiry_timestamp_seconds
//! ```
//!
//! - [`config`]: flags (each with a `PORTICO_*` variable) and their checks.
//! - [`naming`]: copy names (`<namespace>-<name>`, hashed when too long or taken).
//! - [`certificate`]: what a Secret holds, checked (PEM, key matches, not expired).
//! - [`plan`]: the pure core: writes, deletions, reports.
//! - [`events`]: Warning Events on Gateways.
//! - [`metrics`]: the Prometheus metrics.
//! - [`sync`]: reflectors and the pass loop against the API server.
//! - [`run`](mod@run): [`start`]/[`run()`], what `portico-cert-sync` calls.

pub mod certificate;
pub mod config;
pub mod events;
pub mod metrics;
pub mod naming;
pub mod plan;
pub mod run;
pub mod sync;

pub use config::{Config, ConfigError, LogFormat};
pub use metrics::{CertLabels, CertSyncMetrics};
pub use run::{CertSync, run, start};
