//! Portico's operator. For now: the providers' side of the data flow.
//!
//! ```text
//!   YAML folder ──> file::load_dir ──> FileProvider (last good per file) ─┐
//!   Kubernetes API ──> kube::KubeProvider (one watch per kind) ────────────┤ apply/delete/reset
//!                                                                         ▼
//!                                       Store (one index per kind) ──snapshot──> Inputs
//!                                                                         │
//!                       ProviderEvent { inputs, errors, generation } <────┘ ──> translator
//! ```
//!
//! - [`object`]: the internal model, one [`Object`] per Kubernetes object we read.
//! - [`store`]: one index per kind, keyed by `(namespace, name)`; snapshots are sorted.
//! - [`file`]: a folder of manifests into objects, with errors naming file and line.
//! - [`provider`]: [`FileProvider`], the folder's last good state as translator inputs.
//! - [`watch`]: [`FileProvider::watch`], reloading on change.
//! - [`kube`]: the Kubernetes provider (watches into the store, translate task), the
//!   start-up CRD check, the leader Lease.
//! - [`status`]: the leader's status writer.
//! - [`class`]: GatewayClass `parametersRef` -> `PorticoGatewayClassConfig`, the shape
//!   of the class's Gateway Services.
//! - [`service`]: one LoadBalancer Service per Gateway.
//! - [`ipam`]: LB-IPAM, addresses from LoadBalancerIPPools for LoadBalancer Services.
//! - [`xds`]: the config server streaming each proxy its config (ACK/NACK, records,
//!   NACKs on Gateway status, metrics).
//! - [`run`]: [`run()`] and its [`Config`], what `portico-operator` calls.

pub mod class;
pub mod file;
pub mod ipam;
pub mod kube;
pub mod object;
pub mod provider;
pub mod run;
pub mod service;
pub mod status;
pub mod store;
pub mod watch;
pub mod xds;

/// The translator's input, which every provider produces.
pub use portico_translate::Inputs;

pub use file::{LoadError, LoadResult, ParseCache, load_dir, load_dir_cached};
pub use object::{Object, ObjectKey};
pub use provider::{FileProvider, ProviderEvent};
pub use run::{Config, ConfigError, Operator, client, run, start};
pub use store::{Index, Store};
pub use watch::{DEFAULT_DEBOUNCE, WatchError, Watching};
