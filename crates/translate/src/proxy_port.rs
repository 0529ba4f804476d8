//! Which port of the proxy serves each Gateway listener port when Gateways are reached
//! through their Services ([`Exposure::Service`](crate::Exposure::Service)).
//!
//! Every Gateway has its own Service, so two Gateways may both listen on port 80: the
//! Service's `port` is the listener port, and its `targetPort` is a proxy port unique per
//! (Gateway, listener port). The proxies serve every Gateway, so that proxy port is what
//! tells them apart.
//!
//! ```text
//!   Gateway ns/a :80 ─> Service portico-gateway-a  port 80 ─> targetPort 2xxxx ─┐
//!   Gateway ns/b :80 ─> Service portico-gateway-b  port 80 ─> targetPort 2yyyy ─┤ proxy pods
//!   Gateway ns/b :443 ─>                           port 443 ─> targetPort 2zzzz ─┘ (0.0.0.0)
//! ```
//!
//! The scheme, deterministic so that the operator (Service `targetPort`) and the
//! translator (proxy `Listener.port`) agree without talking:
//! - the range is [`PROXY_PORT_BASE`], `PROXY_PORT_BASE + PROXY_PORT_SPAN` (20000-29999:
//!   below the NodePort range 30000-32767, above the usual well-known ports);
//! - the preferred port of `(namespace/name, port)` is the base plus the first 8 bytes
//!   of `sha256("<namespace>/<name>:<port>")` modulo the span;
//! - claims are made oldest Gateway first (`creationTimestamp`, then namespace/name),
//!   ports in ascending order; a claim whose preferred port is taken moves to the next
//!   free one (wrapping). An older Gateway never moves for a newer one; a Gateway moves
//!   only when an older Gateway it collided with is deleted.
//!
//! TCP and UDP listeners on one listener port share the proxy port (different sockets).

use std::collections::{BTreeMap, BTreeSet};

use portico_api::gateway::Gateway;
use sha2::{Digest, Sha256};

use crate::index::{Index, object_ref};
use crate::inputs::{Inputs, Options};
use crate::status::ObjectRef;

/// The first proxy port.
pub const PROXY_PORT_BASE: u16 = 20000;
/// How many proxy ports there are.
pub const PROXY_PORT_SPAN: u16 = 10000;

/// `(Gateway, listener port) -> proxy port` for every Gateway of ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPorts(BTreeMap<(ObjectRef, u16), u16>);

impl ProxyPorts {
    /// The ports of every Gateway of our classes in `inputs`, counting the listeners of
    /// every ListenerSet that names it as parent (attached or not: a port reserved for a
    /// set that is not attached costs nothing, and attaching it later moves no one).
    pub fn assign(inputs: &Inputs, options: &Options) -> Self {
        Self::from_index(&Index::new(inputs, options))
    }

    pub(crate) fn from_index(index: &Index<'_>) -> Self {
        let mut ports: BTreeMap<ObjectRef, BTreeSet<u16>> = BTreeMap::new();
        let mut gateways: Vec<&Gateway> = index
            .gateways
            .values()
            .copied()
            .filter(|g| index.is_ours(g))
            .collect();
        for g in &gateways {
            let set = ports.entry(object_ref(&g.metadata)).or_default();
            set.extend(
                g.spec
                    .listeners
                    .iter()
                    .filter_map(|l| u16::try_from(l.port).ok()),
            );
        }
        for set in index.listener_sets.values() {
            let Some(parent) = index.listener_set_parent(set) else {
                continue;
            };
            if let Some(own) = ports.get_mut(&parent) {
                own.extend(
                    set.spec
                        .listeners
                        .iter()
                        .filter_map(|l| u16::try_from(l.port).ok()),
                );
            }
        }
        gateways.sort_by(|a, b| {
            let created = |g: &Gateway| g.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| object_ref(&a.metadata).cmp(&object_ref(&b.metadata)))
        });
        let mut taken: BTreeSet<u16> = BTreeSet::new();
        let mut out = BTreeMap::new();
        for g in gateways {
            let key = object_ref(&g.metadata);
            for port in ports
                .get(&key)
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| *p > 0)
            {
                let Some(proxy) = claim(&key, port, &taken) else {
                    // Every proxy port is taken (10000 listener ports): the listener
                    // keeps its own port, which the Service then targets as is.
                    continue;
                };
                taken.insert(proxy);
                out.insert((key.clone(), port), proxy);
            }
        }
        Self(out)
    }

    /// The proxy port of `gateway`'s listener port `port`.
    pub fn get(&self, gateway: &ObjectRef, port: u16) -> Option<u16> {
        self.0.get(&(gateway.clone(), port)).copied()
    }

    /// Every `(Gateway, listener port) -> proxy port`.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectRef, u16, u16)> + '_ {
        self.0.iter().map(|((g, p), proxy)| (g, *p, *proxy))
    }
}

/// The preferred port of `(gateway, port)`, or the next free one after it.
fn claim(gateway: &ObjectRef, port: u16, taken: &BTreeSet<u16>) -> Option<u16> {
    let digest = Sha256::digest(format!("{gateway}:{port}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let span = u64::from(PROXY_PORT_SPAN);
    let preferred = u16::try_from(u64::from_be_bytes(head) % span).unwrap_or(0);
    (0..PROXY_PORT_SPAN)
        .map(|i| PROXY_PORT_BASE + (preferred + i) % PROXY_PORT_SPAN)
        .find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::gateway::GatewayClass;
    use portico_api::gateway::gateways::GatewayListeners;
    use portico_api::k8s::Time;
    use portico_api::k8s_openapi::jiff::Timestamp;
    use portico_api::names;

    fn mk_gateway(name: &str, age: i64, ports: &[i32]) -> Gateway {
        let mut g = Gateway::default();
        g.metadata.namespace = Some("ns".into());
        g.metadata.name = Some(name.into());
        g.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_000_000 - age).unwrap()));
        g.spec.gateway_class_name = "portico".into();
        g.spec.listeners = ports
            .iter()
            .map(|p| GatewayListeners {
                name: format!("l{p}"),
                port: *p,
                protocol: "HTTP".into(),
                ..Default::default()
            })
            .collect();
        g
    }

    fn inputs(gateways: Vec<Gateway>) -> Inputs {
        let mut class = GatewayClass::default();
        class.metadata.name = Some("portico".into());
        class.spec.controller_name = names::CONTROLLER_NAME.into();
        Inputs {
            gateway_classes: vec![class],
            gateways,
            ..Inputs::default()
        }
    }

    fn gw(name: &str) -> ObjectRef {
        ObjectRef::new("ns", name)
    }

    #[test]
    fn two_gateways_on_port_80_get_distinct_proxy_ports_in_range() {
        let ports = ProxyPorts::assign(
            &inputs(vec![
                mk_gateway("a", 2, &[80, 443]),
                mk_gateway("b", 1, &[80]),
            ]),
            &Options::default(),
        );
        let (a80, a443, b80) = (
            ports.get(&gw("a"), 80).unwrap(),
            ports.get(&gw("a"), 443).unwrap(),
            ports.get(&gw("b"), 80).unwrap(),
        );
        let all = BTreeSet::from([a80, a443, b80]);
        assert_eq!(all.len(), 3);
        assert!(
            all.iter()
                .all(|p| (PROXY_PORT_BASE..PROXY_PORT_BASE + PROXY_PORT_SPAN).contains(p))
        );
        assert_eq!(ports.get(&gw("a"), 8080), None);
    }

    #[test]
    fn deterministic_and_stable_when_gateways_come_and_go() {
        let a = mk_gateway("a", 3, &[80]);
        let b = mk_gateway("b", 2, &[80]);
        let first = ProxyPorts::assign(&inputs(vec![a.clone(), b.clone()]), &Options::default());
        let again = ProxyPorts::assign(&inputs(vec![b.clone(), a.clone()]), &Options::default());
        assert_eq!(first, again);
        // A newer Gateway does not move the older ones.
        let more = ProxyPorts::assign(
            &inputs(vec![a, b, mk_gateway("c", 1, &[80, 81])]),
            &Options::default(),
        );
        assert_eq!(more.get(&gw("a"), 80), first.get(&gw("a"), 80));
        assert_eq!(more.get(&gw("b"), 80), first.get(&gw("b"), 80));
    }

    #[test]
    fn a_collision_moves_the_newer_claim_to_the_next_free_port() {
        let key = gw("a");
        let preferred = claim(&key, 80, &BTreeSet::new()).unwrap();
        let taken = BTreeSet::from([preferred]);
        let next = claim(&key, 80, &taken).unwrap();
        let want = if preferred == PROXY_PORT_BASE + PROXY_PORT_SPAN - 1 {
            PROXY_PORT_BASE
        } else {
            preferred + 1
        };
        assert_eq!(next, want);
        let full: BTreeSet<u16> = (PROXY_PORT_BASE..PROXY_PORT_BASE + PROXY_PORT_SPAN).collect();
        assert_eq!(claim(&key, 80, &full), None);
    }

    #[test]
    fn gateways_of_other_classes_get_nothing() {
        let mut other = mk_gateway("x", 1, &[80]);
        other.spec.gateway_class_name = "someone-else".into();
        let ports = ProxyPorts::assign(&inputs(vec![other]), &Options::default());
        assert_eq!(ports, ProxyPorts::default());
    }
}
