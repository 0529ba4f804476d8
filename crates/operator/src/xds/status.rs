//! A proxy's NACK on the status of the Gateways it concerns.
//!
//! The translator cannot know that a proxy failed to apply its config (a port taken on
//! the node, say), so the status writer would keep saying Programmed=True. This overlay
//! sits between the provider's snapshots and the status writer:
//!
//! ```text
//!   provider snapshots ──┐
//!                        ├─> overlay ──> snapshots with rejected Gateways ──> status writer
//!   ProxyRecords (NACKs)─┘               Programmed=False, reason Invalid
//! ```
//!
//! Gateway API (GatewayConditionReason): "Invalid ... the Gateway is not programmed
//! because it is syntactically or semantically invalid"; the message says which proxy
//! rejected which version and why. The listener whose socket failed gets the same
//! condition. When no NACK applies, the provider's snapshot passes through untouched
//! (same `Arc`), so the writer sees no change.

use std::collections::BTreeMap;
use std::sync::Arc;

use portico_api::names::{condition, reason};
use portico_translate::{Condition, ConditionStatus, ObjectRef, Output, Statuses};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kube::provider::{Snapshot, Snapshots};
use crate::xds::records::Records;

/// Per Gateway, what its proxies rejected: (message, config listeners concerned).
pub type GatewayRejections = BTreeMap<ObjectRef, (String, Vec<String>)>;

/// The NACKs of connected proxies, by Gateway. Several proxies rejecting for the same
/// Gateway are joined in one message, in node order.
pub fn rejections(records: &Records) -> GatewayRejections {
    let mut out: GatewayRejections = BTreeMap::new();
    for (node, record) in records {
        let Some(nack) = record.nack.as_ref().filter(|_| record.connected) else {
            continue;
        };
        for gateway in &nack.gateways {
            let Some((ns, name)) = gateway.split_once('/') else {
                continue;
            };
            let message = format!(
                "proxy {node} rejected config {}: {}",
                short(&nack.version),
                nack.error
            );
            let entry = out.entry(ObjectRef::new(ns, name)).or_default();
            if entry.0.is_empty() {
                entry.0 = message;
            } else {
                entry.0 = format!("{}; {message}", entry.0);
            }
            if !nack.listener.is_empty() && !entry.1.contains(&nack.listener) {
                entry.1.push(nack.listener.clone());
            }
        }
    }
    out
}

/// The first 12 characters of a content-hash version, as in logs.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// Sets Programmed=False, reason Invalid on every rejected Gateway of `statuses`, and on
/// its listeners served on a rejected socket (`sockets` maps a Gateway's listener
/// "<namespace>/<gateway>/<listener>" to the config listener it is served on).
pub fn apply(
    statuses: &mut Statuses,
    rejected: &GatewayRejections,
    sockets: &BTreeMap<String, String>,
) {
    for (gateway, (message, listeners)) in rejected {
        let Some(status) = statuses.gateways.get_mut(gateway) else {
            continue;
        };
        set_not_programmed(&mut status.conditions, message);
        for listener in &mut status.listeners {
            let vhost = format!("{gateway}/{}", listener.name);
            if sockets.get(&vhost).is_some_and(|s| listeners.contains(s)) {
                set_not_programmed(&mut listener.conditions, message);
            }
        }
    }
}

fn set_not_programmed(conditions: &mut Vec<Condition>, message: &str) {
    let generation = conditions.iter().find_map(|c| c.observed_generation);
    let not_programmed = Condition {
        type_: condition::PROGRAMMED.to_owned(),
        status: ConditionStatus::False,
        reason: reason::INVALID.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == condition::PROGRAMMED)
    {
        Some(c) => *c = not_programmed,
        None => conditions.push(not_programmed),
    }
}

/// Which config listener serves each Gateway listener: from the virtual host names.
fn sockets(output: &Output) -> BTreeMap<String, String> {
    output
        .config
        .listeners
        .iter()
        .flat_map(|l| {
            l.virtual_hosts
                .iter()
                .map(move |v| (v.name.clone(), l.name.clone()))
        })
        .collect()
}

/// Republishes `snapshots` with the NACKs of `records` applied, until `shutdown`.
pub fn overlay(
    mut snapshots: Snapshots,
    mut records: watch::Receiver<Records>,
    shutdown: CancellationToken,
) -> (Snapshots, JoinHandle<()>) {
    let (tx, rx) = watch::channel(snapshots.borrow().clone());
    let task = tokio::spawn(async move {
        let mut last: Option<(u64, GatewayRejections)> = None;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let rejected = rejections(&records.borrow_and_update());
            if let Some(snapshot) = snapshot {
                let key = (snapshot.generation, rejected);
                // Records change with every ACK; only a change of what the statuses say
                // (or a new snapshot) is worth a writer pass.
                if last.as_ref() != Some(&key) {
                    tx.send_replace(Some(with_rejections(&snapshot, &key.1)));
                    last = Some(key);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = snapshots.changed() => if changed.is_err() { break },
                changed = records.changed() => if changed.is_err() { break },
            }
        }
    });
    (rx, task)
}

fn with_rejections(snapshot: &Arc<Snapshot>, rejected: &GatewayRejections) -> Arc<Snapshot> {
    if rejected.is_empty() {
        return snapshot.clone();
    }
    let mut output = snapshot.output.clone();
    apply(&mut output.statuses, rejected, &sockets(&snapshot.output));
    Arc::new(Snapshot {
        generation: snapshot.generation,
        inputs: snapshot.inputs.clone(),
        options: snapshot.options.clone(),
        output,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::xds::records::{ProxyRecord, Rejection};
    use portico_translate::{GatewayStatus, ListenerStatus};

    fn programmed() -> Condition {
        Condition {
            type_: condition::PROGRAMMED.to_owned(),
            status: ConditionStatus::True,
            reason: reason::PROGRAMMED.to_owned(),
            message: String::new(),
            observed_generation: Some(3),
        }
    }

    fn record(node_connected: bool, gateways: &[&str]) -> ProxyRecord {
        ProxyRecord {
            stream: 1,
            connected: node_connected,
            peer: None,
            gateways: None,
            pushed: Some("0123456789abcdef".into()),
            acked: Some("old".into()),
            nack: Some(Rejection {
                version: "0123456789abcdef".into(),
                error: "listener 0.0.0.0:80: cannot bind 0.0.0.0:80: Address in use".into(),
                listener: "0.0.0.0:80".into(),
                gateways: gateways
                    .iter()
                    .map(|g| (*g).to_owned())
                    .collect::<BTreeSet<_>>(),
            }),
        }
    }

    #[test]
    fn a_nack_makes_its_gateways_and_their_listeners_not_programmed() {
        let records = Records::from([
            ("node-a".to_owned(), record(true, &["ns/gw"])),
            // A proxy that is gone holds no status.
            ("node-b".to_owned(), record(false, &["ns/other"])),
        ]);
        let rejected = rejections(&records);
        assert_eq!(rejected.len(), 1);

        let gw = ObjectRef::new("ns", "gw");
        let mut statuses = Statuses::default();
        statuses.gateways.insert(
            gw.clone(),
            GatewayStatus {
                conditions: vec![programmed()],
                listeners: vec![
                    ListenerStatus {
                        name: "http".into(),
                        conditions: vec![programmed()],
                        ..ListenerStatus::default()
                    },
                    ListenerStatus {
                        name: "other-port".into(),
                        conditions: vec![programmed()],
                        ..ListenerStatus::default()
                    },
                ],
                ..GatewayStatus::default()
            },
        );
        let sockets = BTreeMap::from([
            ("ns/gw/http".to_owned(), "0.0.0.0:80".to_owned()),
            ("ns/gw/other-port".to_owned(), "0.0.0.0:81".to_owned()),
        ]);
        apply(&mut statuses, &rejected, &sockets);

        let status = &statuses.gateways[&gw];
        let c = &status.conditions[0];
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, reason::INVALID)
        );
        assert_eq!(
            c.message,
            "proxy node-a rejected config 0123456789ab: listener 0.0.0.0:80: cannot bind 0.0.0.0:80: Address in use"
        );
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(
            status.listeners[0].conditions[0].status,
            ConditionStatus::False
        );
        assert_eq!(
            status.listeners[1].conditions[0].status,
            ConditionStatus::True
        );
    }
}
