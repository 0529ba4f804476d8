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
//! - [`l2`]: ARP answers for the LoadBalancer IPs this node announces (XDP);
//!   [`l2_election`]: which node announces which IP (a Lease per IP).
//! - [`steering`]: Gateway Services steered to the node-local proxy (sk_lookup + SOCKMAP).
//! - [`source`]: Kubernetes Services and EndpointSlices into service entries;
//!   [`manifests`]: those of a folder of YAML.
//! - [`bpffs`]: the BPF filesystem the maps are pinned on.
//! - [`agent`]: the long-running agent (a source's snapshots into the datapath);
//!   [`watch_kube`], [`watch_dir`]: its sources; [`inventory`]: what they know;
//!   [`kube_client`]: reaching the API server without kube-proxy.
//! - [`status_server`]: the agent's status as JSON over HTTP (`portico status`), and
//!   [`metrics`] in the Prometheus text format.
//! - [`run`]: the one-shot `run --once`, `list` and the printer; [`probe`]: its diagnostic
//!   client.

pub mod agent;
pub mod bpffs;
pub mod datapath;
pub mod inventory;
pub mod kube_client;
pub mod l2;
pub mod l2_election;
mod local_route;
pub mod manifests;
pub mod maps;
pub mod metrics;
pub mod nodeport;
pub mod probe;
mod programs;
pub mod run;
pub mod service;
mod slots;
pub mod source;
pub mod status_server;
pub mod steering;
pub mod watch_dir;
pub mod watch_kube;

pub use datapath::{Datapath, DatapathError, SyncStats, list_pinned, remove_pinned};
pub use l2::L2Announcer;
pub use nodeport::NodePort;
pub use service::{BackendEntry, EntryError, Frontend, Protocol, ServiceEntry};
pub use source::service_entries;
pub use steering::{LocalRoutes, Steering, register_proxy_socket};
