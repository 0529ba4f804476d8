//! The long-running agent: a source's snapshots into the datapath, until shutdown.
//!
//! ```text
//!   source (watch_kube | watch_dir) ──Arc<Inventory>──┐ latest only
//!                                                     ▼
//!   loop: entries(node) ──Datapath::sync (diff: changed Services only)──> pinned maps
//!         gateway addresses ──diff──> `local` routes        (with --gateway-steering)
//!         status ──> Arc<Mutex<AgentStatus>>                (read by the status endpoint)
//! ```
//!
//! A failed sync is logged and retried with the next snapshot: the datapath diffs
//! against what it actually wrote, so nothing is lost. The maps and links stay pinned when
//! the agent stops: Services keep working while it restarts.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aya::programs::XdpMode;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::bpffs;
use crate::datapath::Datapath;
use crate::l2::L2Announcer;
use crate::l2_election::{self, ElectionConfig};
use crate::nodeport::NodePort;
use crate::run::{RunError, gateway_addresses};
use crate::source::SourceOptions;
use crate::steering::{LocalRoutes, Steering, own_netns};
use crate::watch_kube::Snapshots;

/// What the agent attaches and where.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the maps and links are pinned (on bpffs).
    pub pin_dir: PathBuf,
    /// The cgroup v2 directory whose processes are balanced.
    pub cgroup: PathBuf,
    /// Mount a bpffs here first when there is none.
    pub bpffs_root: Option<PathBuf>,
    /// This node's name, for `externalTrafficPolicy: Local`.
    pub node_name: Option<String>,
    /// Interfaces on which NodePort and LoadBalancer traffic arrives.
    pub nodeport_interfaces: Vec<String>,
    /// Steer Gateway Services to the node-local proxy.
    pub gateway_steering: bool,
}

/// What the agent reports about itself (served as JSON by the status endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentStatus {
    /// Whether the last sync succeeded.
    pub healthy: bool,
    /// Whether the source has delivered a complete state yet.
    pub synced: bool,
    /// How many syncs ran, and the last error if the last one failed.
    pub syncs: u64,
    pub last_error: Option<String>,
    /// How many syncs failed.
    pub sync_errors: u64,
    /// Services and backend slots in the maps.
    pub services: usize,
    pub backend_slots: u32,
    /// What is attached: `socket-lb@<cgroup>`, `nodeport@<iface>`, `steering`.
    pub attached: Vec<String>,
    /// Gateway addresses routed to this node.
    pub gateway_addresses: Vec<Ipv4Addr>,
    /// LoadBalancer IPs this node won the election for and answers ARP for.
    pub l2_announced: Vec<Ipv4Addr>,
}

/// L2 announcements: where, and how the nodes elect who answers for each IP.
#[derive(Clone)]
pub struct L2Setup {
    pub client: kube::Client,
    pub election: ElectionConfig,
    /// The interfaces to answer ARP on.
    pub interfaces: Vec<String>,
}

impl std::fmt::Debug for L2Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // kube's Client has no Debug of its own.
        f.debug_struct("L2Setup")
            .field("election", &self.election)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

/// The status, shared between the agent loop and whoever reports it.
pub type SharedStatus = Arc<Mutex<AgentStatus>>;

/// Attaches everything `cfg` asks for, then programs every snapshot of `source` until
/// `shutdown`. Must run on a multi-threaded tokio runtime (map writes block).
pub async fn run(
    cfg: &AgentConfig,
    mut source: Snapshots,
    l2: Option<L2Setup>,
    status: SharedStatus,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if let Some(root) = &cfg.bpffs_root {
        bpffs::ensure_mounted(root).map_err(|source| RunError::Bpffs {
            path: root.clone(),
            source,
        })?;
    }
    let mut dp = Datapath::load(&cfg.pin_dir, &cfg.cgroup)?;
    let mut attached = vec![format!("socket-lb@{}", cfg.cgroup.display())];
    let _steering = if cfg.gateway_steering {
        attached.push("steering".to_owned());
        Some(Steering::load(&cfg.pin_dir, &own_netns())?)
    } else {
        None
    };
    let _nodeports = cfg
        .nodeport_interfaces
        .iter()
        .map(|iface| {
            attached.push(format!("nodeport@{iface}"));
            NodePort::load(&cfg.pin_dir, iface)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let l2_task = match l2 {
        Some(l2) => {
            let announcers = l2
                .interfaces
                .iter()
                .map(|iface| {
                    attached.push(format!("l2@{iface}"));
                    L2Announcer::load(&cfg.pin_dir, iface, XdpMode::Skb)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(l2_election::spawn(
                l2.client,
                l2.election,
                announcers,
                source.clone(),
                status.clone(),
                shutdown.clone(),
            ))
        }
        None => None,
    };
    set_status(&status, |s| {
        s.attached = attached;
        s.services = dp.service_count();
        s.backend_slots = dp.backend_count();
        s.healthy = true;
    });
    let opts = SourceOptions {
        node_name: cfg.node_name.clone(),
    };
    let routes = LocalRoutes::default();
    let mut routed: BTreeSet<Ipv4Addr> = BTreeSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = source.changed() => if changed.is_err() {
                warn!("the source stopped");
                break;
            },
        }
        let Some(inventory) = source.borrow_and_update().clone() else {
            continue;
        };
        let entries = inventory.entries(&opts);
        let result = tokio::task::block_in_place(|| dp.sync(&entries));
        match &result {
            Ok(stats) => info!(
                added = stats.added,
                updated = stats.updated,
                removed = stats.removed,
                unchanged = stats.unchanged,
                "services synced"
            ),
            Err(e) => {
                error!(error = %e, "programming the services failed; retrying with the next change")
            }
        }
        if cfg.gateway_steering {
            let wanted = gateway_addresses(&entries);
            for ip in wanted.difference(&routed) {
                if let Err(e) = routes.add(*ip) {
                    warn!(%ip, error = %e, "routing a gateway address");
                }
            }
            for ip in routed.difference(&wanted) {
                if let Err(e) = routes.remove(*ip) {
                    warn!(%ip, error = %e, "unrouting a gateway address");
                }
            }
            routed = wanted;
        }
        set_status(&status, |s| {
            s.synced = true;
            s.syncs += 1;
            s.sync_errors += u64::from(result.is_err());
            s.healthy = result.is_ok();
            s.last_error = result.as_ref().err().map(ToString::to_string);
            s.services = dp.service_count();
            s.backend_slots = dp.backend_count();
            s.gateway_addresses = routed.iter().copied().collect();
        });
    }
    shutdown.cancel();
    if let Some(task) = l2_task {
        // Withdraws and releases the Leases, so that another node answers at once.
        let _ = task.await;
    }
    info!("agent stopping; the pinned datapath keeps serving");
    Ok(())
}

pub(crate) fn set_status(status: &SharedStatus, f: impl FnOnce(&mut AgentStatus)) {
    // A poisoned lock only means a reader panicked mid-read; the data is still whole.
    let mut guard = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard);
}
