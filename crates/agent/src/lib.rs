//! Portico's node agent: socket-level load balancing for Services in eBPF.
//!
//! ```text
//!   Services + EndpointSlices ──source::service_entries──> [ServiceEntry]   (pure)
//!                                                               │ Datapath::sync / upsert / delete
//!                                                               ▼
//!   pin_dir (bpffs): portico_svc, portico_be, portico_rnat  <── read by ──  cgroup programs
//!                                                                connect4, sendmsg4,
//!                                                                recvmsg4, getpeername4
//! ```
//!
//! - [`maps`]: the map layouts, mirrored from `bpf/sock_lb.c`.
//! - [`service`]: the agent's model of a balanced service.
//! - [`datapath`]: loading and attaching the programs, programming the maps, adoption of
//!   pinned maps after a restart.
//! - [`nodeport`]: NodePort and LoadBalancer traffic from outside the node (tc/tcx).
//! - [`l2`]: ARP answers for the LoadBalancer IPs this node announces (XDP).
//! - [`steering`]: Gateway Services steered to the node-local proxy (sk_lookup + SOCKMAP).
//! - [`source`]: Kubernetes Services and EndpointSlices into service entries;
//!   [`manifests`]: those of a folder of YAML.
//! - [`bpffs`]: the BPF filesystem the maps are pinned on.
//! - [`run`]: the agent binary's configuration and main loop; [`probe`]: its diagnostic
//!   client.

pub mod bpffs;
pub mod datapath;
pub mod l2;
pub mod manifests;
pub mod maps;
pub mod nodeport;
pub mod probe;
mod programs;
pub mod run;
pub mod service;
mod slots;
pub mod source;
pub mod steering;

pub use datapath::{Datapath, DatapathError, SyncStats, list_pinned, remove_pinned};
pub use l2::L2Announcer;
pub use nodeport::NodePort;
pub use service::{BackendEntry, EntryError, Frontend, Protocol, ServiceEntry};
pub use source::service_entries;
pub use steering::{LocalRoutes, Steering, register_proxy_socket};
