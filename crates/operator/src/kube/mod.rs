//! The Kubernetes side of the operator: watches feeding the [`Store`](crate::Store), the
//! start-up CRD check, and the leader Lease.
//!
//! - [`kinds`]: which index each watched kind feeds; watch events as
//!   `apply`/`delete`/`reset` ([`Relist`]).
//! - [`provider`]: [`KubeProvider`], one watch per kind plus the translate task
//!   publishing [`Snapshot`]s.
//! - [`crds`]: [`wait_for_crds`], naming the Gateway API CRDs that are missing.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease.
//! - [`reflect`]: a reflector waking a whole-plan controller (LB-IPAM, cert-sync).

pub mod crds;
pub mod kinds;
pub mod lease;
pub mod provider;
pub mod reflect;

pub use crds::{CrdError, InstalledCrds, RequiredCrd, check_crds, required_crds, wait_for_crds};
pub use kinds::{Relist, Watched};
pub use lease::{Elector, LeaseConfig, LeaseError};
pub use provider::{KubeProvider, ProviderConfig, Snapshot, Snapshots};
