//! Which node answers ARP for which LoadBalancer IP: one `coordination.k8s.io/v1` Lease
//! per IP, so exactly one node announces each IP and another takes over when it goes.
//!
//! ```text
//!   snapshots ──lb_ips()──> desired IPs
//!       │ new IP:  spawn an election: LeaseManager(portico-l2-<ip>, identity = node)
//!       │ gone IP: stop it (the Lease is released) and withdraw
//!       ▼
//!   election events (ip, leading) ──> every L2Announcer: announce(ip) / withdraw(ip)
//!   shutdown: withdraw everything, release every Lease (the next node takes over at once)
//! ```
//!
//! The Leases are held with `kube-lease-manager` (server-side apply, so two nodes racing
//! for a free Lease cannot both win). A Lease per IP rather than per pool spreads the IPs
//! over the nodes. The XDP answer itself is pinned and survives the agent: an agent that
//! starts withdraws what a previous run left on its interfaces and announces only what
//! it wins; one that crashes keeps answering until restarted (its Lease expires and a
//! second node may answer too meanwhile: the neighbours' caches pick either, both deliver).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use portico_api::names::L2_LEASE_PREFIX;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent::{SharedStatus, set_status};
use crate::l2::L2Announcer;
use crate::watch_kube::Snapshots;

/// How the elections are held.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The namespace of the Leases.
    pub namespace: String,
    /// This node's identity in them (the node name).
    pub identity: String,
    /// How long a Lease stays valid without renewal: the longest a hand-over takes when a
    /// node dies without releasing.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    pub renew_before: Duration,
}

impl ElectionConfig {
    /// Defaults for `identity`: 15 s Leases renewed 5 s before expiry.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        ElectionConfig {
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_before: Duration::from_secs(5),
        }
    }
}

/// The Lease electing the announcer of `ip`.
pub fn lease_name(ip: Ipv4Addr) -> String {
    format!("{L2_LEASE_PREFIX}{}", ip.to_string().replace('.', "-"))
}

/// One running election.
struct Election {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the elections for the LoadBalancer IPs of `snapshots` and drives `announcers`,
/// until `shutdown`; then withdraws and releases everything.
pub fn spawn(
    client: Client,
    cfg: ElectionConfig,
    mut announcers: Vec<L2Announcer>,
    mut snapshots: Snapshots,
    status: SharedStatus,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // What a previous run left is not ours until we win it again.
        for a in &mut announcers {
            if let Err(e) = a.withdraw_all() {
                warn!(error = %e, "clearing stale announcements");
            }
        }
        let (events_tx, mut events) = mpsc::unbounded_channel::<(Ipv4Addr, bool)>();
        let mut elections: BTreeMap<Ipv4Addr, Election> = BTreeMap::new();
        let mut leading: BTreeSet<Ipv4Addr> = BTreeSet::new();
        // The first snapshot may already be there.
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    changed = snapshots.changed() => if changed.is_err() { break },
                    Some((ip, lead)) = events.recv() => {
                        // An event of an election stopped since is stale.
                        if elections.contains_key(&ip) {
                            set(&mut announcers, &mut leading, ip, lead);
                            publish(&status, &leading);
                        }
                        continue;
                    }
                }
            }
            first = false;
            let Some(inventory) = snapshots.borrow_and_update().clone() else {
                continue;
            };
            let wanted = inventory.lb_ips();
            for ip in &wanted {
                if !elections.contains_key(ip) {
                    elections.insert(*ip, start(&client, &cfg, *ip, events_tx.clone()));
                }
            }
            let gone: Vec<Ipv4Addr> = elections
                .keys()
                .filter(|ip| !wanted.contains(ip))
                .copied()
                .collect();
            for ip in gone {
                if let Some(e) = elections.remove(&ip) {
                    stop(e).await;
                }
                set(&mut announcers, &mut leading, ip, false);
            }
            publish(&status, &leading);
        }
        // Withdraw first: once the Leases are released another node answers at once.
        for ip in leading.clone() {
            set(&mut announcers, &mut leading, ip, false);
        }
        publish(&status, &leading);
        for (_, e) in std::mem::take(&mut elections) {
            stop(e).await;
        }
        info!("l2 announcements stopped");
    })
}

fn publish(status: &SharedStatus, leading: &BTreeSet<Ipv4Addr>) {
    set_status(status, |s| {
        s.l2_announced = leading.iter().copied().collect()
    });
}

fn set(announcers: &mut [L2Announcer], leading: &mut BTreeSet<Ipv4Addr>, ip: Ipv4Addr, lead: bool) {
    let changed = if lead {
        leading.insert(ip)
    } else {
        leading.remove(&ip)
    };
    if !changed {
        return;
    }
    for a in announcers.iter_mut() {
        let result = if lead {
            a.announce(ip)
        } else {
            a.withdraw(ip).map(drop)
        };
        if let Err(e) = result {
            warn!(%ip, error = %e, "changing an announcement");
        }
    }
}

/// Stops an election: its Lease is released before this returns (bounded).
async fn stop(e: Election) {
    e.stop.cancel();
    if tokio::time::timeout(Duration::from_secs(5), e.task)
        .await
        .is_err()
    {
        warn!("an election did not stop in time");
    }
}

/// Starts the election for `ip`; its outcome arrives on `events`.
fn start(
    client: &Client,
    cfg: &ElectionConfig,
    ip: Ipv4Addr,
    events: mpsc::UnboundedSender<(Ipv4Addr, bool)>,
) -> Election {
    let stop = CancellationToken::new();
    let (client, cfg, token) = (client.clone(), cfg.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let name = lease_name(ip);
        // Building reads (or creates) the Lease: retried until it works or we stop.
        let manager = loop {
            let built = LeaseManagerBuilder::new(client.clone(), &name)
                .with_namespace(&cfg.namespace)
                .with_identity(&cfg.identity)
                .with_duration(cfg.lease_duration.as_secs().max(2))
                .with_grace(
                    cfg.renew_before
                        .as_secs()
                        .clamp(1, cfg.lease_duration.as_secs().max(2) - 1),
                )
                .build()
                .await;
            match built {
                Ok(m) => break m,
                Err(e) => {
                    warn!(lease = %name, error = %e, "cannot use the lease, retrying");
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let (mut leader, manager_task) = manager.watch().await;
        loop {
            let lead = *leader.borrow_and_update();
            info!(lease = %name, %ip, leading = lead, "l2 election");
            if events.send((ip, lead)).is_err() {
                break;
            }
            tokio::select! {
                () = token.cancelled() => break,
                changed = leader.changed() => if changed.is_err() { break },
            }
        }
        // Dropping the receiver makes the manager release the Lease and return.
        drop(leader);
        match manager_task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(lease = %name, error = %e, "releasing the lease"),
            Err(e) => warn!(lease = %name, error = %e, "the lease task failed"),
        }
    });
    Election { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            lease_name(Ipv4Addr::new(172, 18, 0, 200)),
            "portico-l2-172-18-0-200"
        );
    }
}
