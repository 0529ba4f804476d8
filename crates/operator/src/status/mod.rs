//! Status is data: the translator computes the desired status of every object, and one
//! writer task, gated on the leader Lease, makes the API server carry it.
//!
//! - [`diff`]: whether a status really changed (ignoring `lastTransitionTime`).
//! - [`writer`]: [`StatusWriter`], merge patches on the status subresource with our field
//!   manager, a resourceVersion precondition, a timeout, bounded retries and counters.
//! - [`metrics`]: those counters as Prometheus series on the metrics port.

pub mod diff;
pub mod metrics;
pub mod writer;

pub use diff::{differs, normalized};
pub use writer::{StatusCounters, StatusWriter};

/// The field manager of every write the operator makes (status patches, Services).
pub const FIELD_MANAGER: &str = portico_api::names::CONTROLLER_NAME;
