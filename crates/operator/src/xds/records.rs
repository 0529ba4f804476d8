//! What the operator knows about each proxy: connected or not, which Gateways it serves,
//! the last version it acknowledged and the last push it rejected.
//!
//! Records are keyed by node name and published on a watch channel, so that the status
//! overlay (crate::xds::status), tests and `portico status` read one consistent map.
//! Each stream has an id: when a proxy reconnects before its old stream is noticed as
//! gone, the old stream's end must not mark the new one disconnected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The annotation of the operator's Lease in which the leader publishes its records,
/// renewed with the Lease (a JSON list of [`ProxyReport`]): `portico status` reads it
/// with nothing but `get` on Leases, and the operator needs no RBAC beyond the
/// `update` on its Lease the chart grants. Only the leader's view: with several
/// replicas, proxies connected to a follower are not in it.
pub const PROXIES_ANNOTATION: &str = "portico.dev/proxies";

/// One proxy, as published in [`PROXIES_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyReport {
    pub node: String,
    pub connected: bool,
    #[serde(default)]
    pub peer: Option<String>,
    /// The version of the latest push.
    #[serde(default)]
    pub pushed: Option<String>,
    /// The version it serves, as of its last ACK.
    #[serde(default)]
    pub acked: Option<String>,
    /// Its latest NACK, unless a later push was acknowledged.
    #[serde(default)]
    pub nack: Option<NackReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NackReport {
    pub version: String,
    pub error: String,
}

/// Every proxy the operator has seen since it started, by node name.
pub type Records = BTreeMap<String, ProxyRecord>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRecord {
    /// The stream this record belongs to (the latest of the node).
    pub stream: u64,
    pub connected: bool,
    pub peer: Option<SocketAddr>,
    /// `None`: every Gateway.
    pub gateways: Option<BTreeSet<String>>,
    /// The version of the latest push (acknowledged or not).
    pub pushed: Option<String>,
    /// The version the proxy serves, as of its last ACK (or its hello).
    pub acked: Option<String>,
    /// The latest push it rejected, unless a later one was acknowledged.
    pub nack: Option<Rejection>,
}

/// A NACK, and whose status it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub version: String,
    pub error: String,
    /// The config listener the error names ("" when none).
    pub listener: String,
    /// The Gateways ("<namespace>/<name>") served on that listener, or all those of the
    /// rejected config when the error is not about one listener.
    pub gateways: BTreeSet<String>,
}

/// The shared record map. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProxyRecords {
    tx: Arc<watch::Sender<Records>>,
}

impl Default for ProxyRecords {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Records::new())),
        }
    }
}

impl ProxyRecords {
    pub fn subscribe(&self) -> watch::Receiver<Records> {
        self.tx.subscribe()
    }

    pub fn get(&self, node: &str) -> Option<ProxyRecord> {
        self.tx.borrow().get(node).cloned()
    }

    /// The records as [`ProxyReport`]s, JSON (the value of [`PROXIES_ANNOTATION`]).
    pub fn report(&self) -> String {
        let reports: Vec<ProxyReport> = self
            .tx
            .borrow()
            .iter()
            .map(|(node, r)| ProxyReport {
                node: node.clone(),
                connected: r.connected,
                peer: r.peer.map(|p| p.to_string()),
                pushed: r.pushed.clone(),
                acked: r.acked.clone(),
                nack: r.nack.as_ref().map(|n| NackReport {
                    version: n.version.clone(),
                    error: n.error.clone(),
                }),
            })
            .collect();
        serde_json::to_string(&reports).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn connected(&self) -> usize {
        self.tx.borrow().values().filter(|r| r.connected).count()
    }

    pub(crate) fn connect(
        &self,
        node: &str,
        stream: u64,
        peer: Option<SocketAddr>,
        gateways: Option<BTreeSet<String>>,
        running: Option<String>,
    ) {
        self.tx.send_modify(|records| {
            records.insert(
                node.to_owned(),
                ProxyRecord {
                    stream,
                    connected: true,
                    peer,
                    gateways,
                    pushed: None,
                    acked: running,
                    nack: None,
                },
            );
        });
    }

    /// Applies `change` to the record of `node` if it still belongs to `stream`.
    fn update(&self, node: &str, stream: u64, change: impl FnOnce(&mut ProxyRecord)) {
        self.tx
            .send_if_modified(|records| match records.get_mut(node) {
                Some(record) if record.stream == stream => {
                    let before = record.clone();
                    change(record);
                    *record != before
                }
                _ => false,
            });
    }

    pub(crate) fn pushed(&self, node: &str, stream: u64, version: &str) {
        self.update(node, stream, |r| r.pushed = Some(version.to_owned()));
    }

    pub(crate) fn ack(&self, node: &str, stream: u64, version: &str) {
        self.update(node, stream, |r| {
            r.acked = Some(version.to_owned());
            r.nack = None;
        });
    }

    pub(crate) fn nack(&self, node: &str, stream: u64, rejection: Rejection) {
        self.update(node, stream, |r| r.nack = Some(rejection));
    }

    /// The stream ended. The NACK is dropped with it: a proxy that is gone does not hold
    /// a Gateway's status, and when it returns it gets the current config again.
    pub(crate) fn disconnect(&self, node: &str, stream: u64) {
        self.update(node, stream, |r| {
            r.connected = false;
            r.nack = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection() -> Rejection {
        Rejection {
            version: "v2".into(),
            error: "cannot bind".into(),
            listener: "0.0.0.0:80".into(),
            gateways: BTreeSet::from(["a/gw".to_owned()]),
        }
    }

    #[test]
    fn ack_clears_a_nack_and_an_old_stream_cannot_touch_a_new_one() {
        let records = ProxyRecords::default();
        records.connect("n1", 1, None, None, None);
        records.pushed("n1", 1, "v2");
        records.nack("n1", 1, rejection());
        assert_eq!(records.get("n1").and_then(|r| r.nack), Some(rejection()));
        records.ack("n1", 1, "v3");
        let record = records.get("n1");
        assert_eq!(record.as_ref().and_then(|r| r.nack.clone()), None);
        assert_eq!(record.and_then(|r| r.acked), Some("v3".to_owned()));

        // The node reconnects on stream 2 before stream 1 is seen ending.
        records.connect("n1", 2, None, None, Some("v3".into()));
        records.disconnect("n1", 1);
        assert_eq!(records.connected(), 1);
        records.disconnect("n1", 2);
        assert_eq!(records.connected(), 0);
    }

    #[test]
    fn the_report_lists_versions_and_nacks() {
        let records = ProxyRecords::default();
        records.connect("n1", 1, None, None, Some("v1".into()));
        records.pushed("n1", 1, "v2");
        records.nack("n1", 1, rejection());
        let reports: Vec<ProxyReport> =
            serde_json::from_str(&records.report()).expect("the report is JSON");
        assert_eq!(
            reports,
            vec![ProxyReport {
                node: "n1".into(),
                connected: true,
                peer: None,
                pushed: Some("v2".into()),
                acked: Some("v1".into()),
                nack: Some(NackReport {
                    version: "v2".into(),
                    error: "cannot bind".into()
                }),
            }]
        );
    }
}
