//! Listeners that cannot be told apart: within one Gateway (or one ListenerSet), between
//! a ListenerSet and the listeners of higher precedence, and between Gateways that share
//! the proxy's sockets.
//!
//! Gateway API (Gateway listeners): "The set of listeners that all share a protocol value
//! MUST have _different_ values for _at least one_ of these fields to be distinct: HTTP,
//! HTTPS, TLS: Port, Hostname; TCP, UDP: Port. [...] Supports TCP protocol Listeners, as
//! well as HTTP, HTTPS, or TLS protocol Listeners, and sees HTTP, HTTPS, or TLS protocols
//! with the same `port` as one with TCP Protocol. In this case all the Listeners that
//! share a port with the TCP Listener are not distinct and so MUST NOT be accepted."
//!
//! Different protocols on one port conflict (ProtocolConflict), except UDP next to a
//! TCP-based protocol, which use different sockets, and HTTPS next to TLS (below). The
//! same protocol and port with the same hostname (for TCP and UDP: at all) is a
//! HostnameConflict, the closest reason the Gateway API defines.
//!
//! HTTPS and TLS listeners on one port are *compatible* when their hostnames differ:
//! both start with a ClientHello, and the proxy routes the connection by its SNI before
//! any byte is decrypted (TLS routes first, then the HTTPS virtual hosts; see
//! `crates/proxy/src/l4`). Gateway API (Gateway listeners, "Compatible Listeners"): "A
//! Gateway's Listeners are considered _compatible_ if: 1. They are distinct. 2. The
//! implementation can serve them in compliance with the Addresses requirement [...]
//! For example, an implementation that [...] cannot mix HTTPS and generic TLS listens
//! on the same port would not consider those cases compatible, even though they are
//! distinct." Portico can mix them, so only the same hostname on both (which SNI cannot
//! tell apart) is a conflict: a HostnameConflict, as between two HTTPS listeners.
//!
//! Conflicts are computed among the Gateway API's core protocols even while some are
//! unsupported, so that supporting one later does not flip the status of listeners that
//! were already there; listeners with unknown protocols or unusable ports never conflict.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use portico_api::k8s::Time;
use portico_api::names::reason;

use crate::gateway::GatewayPlan;
use crate::listener::{Conflict, ListenerPlan, Origin};
use crate::status::ObjectRef;

const CORE_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP"];

/// Protocols whose listeners are told apart by hostname as well as by port.
const HOSTNAME_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS"];

/// Why `a` and `b` cannot be told apart (a conflict reason), if they cannot.
fn indistinct(a: &ListenerPlan, b: &ListenerPlan) -> Option<&'static str> {
    let takes_part =
        |l: &ListenerPlan| CORE_PROTOCOLS.contains(&l.protocol.as_str()) && !l.invalid_port;
    if !takes_part(a) || !takes_part(b) || a.port != b.port || is_udp(a) != is_udp(b) {
        return None;
    }
    if a.protocol != b.protocol && !(is_sni_routed(a) && is_sni_routed(b)) {
        return Some(reason::PROTOCOL_CONFLICT);
    }
    if HOSTNAME_PROTOCOLS.contains(&a.protocol.as_str()) && a.hostname != b.hostname {
        return None;
    }
    Some(reason::HOSTNAME_CONFLICT)
}

fn is_udp(l: &ListenerPlan) -> bool {
    l.protocol == "UDP"
}

/// Listeners whose connections the proxy tells apart by SNI: HTTPS and TLS.
fn is_sni_routed(l: &ListenerPlan) -> bool {
    l.protocol == "HTTPS" || l.protocol == "TLS"
}

/// Keeps the more telling of two conflicts: a protocol conflict says more than a
/// hostname conflict.
fn keep_stronger(slot: &mut Option<Conflict>, found: Conflict) {
    if slot
        .as_ref()
        .is_none_or(|c| c.reason == reason::HOSTNAME_CONFLICT && found.reason != c.reason)
    {
        *slot = Some(found);
    }
}

/// `named` is how the message names `other` (`listener "x"`, ...), the listener that
/// `this` conflicts with.
fn describe(reason: &str, this: &ListenerPlan, other: &ListenerPlan, named: &str) -> String {
    let port = this.port;
    if reason == reason::PROTOCOL_CONFLICT {
        format!(
            "port {port} is also used by {named} with protocol {}",
            other.protocol
        )
    } else if this.protocol != other.protocol {
        // HTTPS next to TLS: only the SNI tells them apart.
        format!(
            "{named} ({}) has the same port and hostname: the SNI cannot tell them apart",
            other.protocol
        )
    } else {
        format!("{named} has the same port, protocol and hostname")
    }
}

/// Marks the listeners of one object (a Gateway, or one ListenerSet) that cannot be told
/// apart, all of them.
///
/// Gateway API: "If a set of Listeners contains Listeners that are not distinct, then
/// those Listeners are _Conflicted_ [...] The implementation MUST NOT pick one conflicting
/// Listener as the winner. ALL indistinct Listeners must not be accepted for processing."
pub(crate) fn mark_within(listeners: &mut [ListenerPlan]) {
    let mut conflicts: Vec<Option<Conflict>> = vec![None; listeners.len()];
    for (i, a) in listeners.iter().enumerate() {
        for (j, b) in listeners.iter().enumerate() {
            if i == j {
                continue;
            }
            if let Some(reason) = indistinct(a, b) {
                let found = Conflict {
                    reason,
                    message: describe(reason, a, b, &format!("listener {:?}", b.section_name)),
                };
                keep_stronger(&mut conflicts[i], found);
            }
        }
    }
    for (listener, conflict) in listeners.iter_mut().zip(conflicts) {
        if let Some(conflict) = conflict {
            keep_stronger(&mut listener.conflict, conflict);
        }
    }
}

/// Marks the listeners of a ListenerSet that conflict with a listener of higher
/// precedence (`earlier`: the Gateway's own, then older ListenerSets'). Here the earlier
/// listener wins; an earlier listener that lost a conflict itself is out of the merged
/// list and blocks nothing (the upstream ListenerSetProtocolConflict test: a set whose
/// only listener is rejected does not keep later sets from using the port).
///
/// Gateway API (ListenerSet listeners): "Implementations MUST treat the parent Gateway as
/// having the merged list of all listeners from itself and attached ListenerSets using the
/// following precedence: 1. "parent" Gateway 2. ListenerSet ordered by creation time
/// (oldest first) 3. ListenerSet ordered alphabetically by "{namespace}/{name}". [...] If
/// a listener has a conflict, this will be reported in the Status.ListenerEntryStatus
/// setting the `Conflicted` condition to True."
///
/// The message names the other listener's section and whether the Gateway or another
/// ListenerSet declares it, not which one: "Implementations SHOULD be cautious about what
/// information from the parent or siblings are reported".
pub(crate) fn mark_against_earlier(earlier: &[ListenerPlan], listeners: &mut [ListenerPlan]) {
    for listener in listeners.iter_mut() {
        for other in earlier.iter().filter(|o| o.conflict.is_none()) {
            if let Some(reason) = indistinct(listener, other) {
                let named = match other.origin {
                    Origin::Gateway => format!("the Gateway's listener {:?}", other.section_name),
                    Origin::ListenerSet(_) => format!(
                        "listener {:?} of a ListenerSet of higher precedence",
                        other.section_name
                    ),
                };
                let found = Conflict {
                    reason,
                    message: describe(reason, listener, other, &named),
                };
                keep_stronger(&mut listener.conflict, found);
            }
        }
    }
}

/// Several Gateways share the proxy's sockets. Gateway API: "implementations MAY merge
/// separate Gateways onto a single data plane, and these rules _also_ apply in that case".
/// Two valid listeners of different Gateways on the same address and port with the same
/// hostname cannot be told apart: the listener of the older Gateway (creation timestamp,
/// then namespace/name, the Gateway API's usual tie-break) keeps the socket and the newer
/// one is marked conflicted. Within a Gateway, the merged list is already conflict-free.
pub(crate) fn settle_across_gateways(plans: &mut BTreeMap<ObjectRef, GatewayPlan<'_>>) {
    let mut order: Vec<(Option<&Time>, ObjectRef)> = plans
        .values()
        .filter(|p| p.is_programmed())
        .map(|p| (p.created, p.key.clone()))
        .collect();
    // Timestamps first, Gateways without one (standalone files) after them.
    order.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    let order: Vec<ObjectRef> = order.into_iter().map(|(_, key)| key).collect();

    // (socket, UDP?, hostname) -> "<ns>/<gateway>/<listener>" that owns it: a UDP socket
    // and a TCP one on the same port are two sockets.
    type Slot = (SocketAddr, bool, Option<String>);
    let mut owners: BTreeMap<Slot, String> = BTreeMap::new();
    for key in order {
        let Some(plan) = plans.get_mut(&key) else {
            continue;
        };
        let addresses = plan.addresses.clone();
        // Behind Services each Gateway has proxy ports of its own (crate::proxy_port).
        let proxy_ports = plan.proxy_ports.clone();
        for listener in plan.listeners.iter_mut().filter(|l| l.is_valid()) {
            let owner = format!("{key}/{}", listener.name);
            let port = proxy_ports
                .get(&listener.port)
                .copied()
                .unwrap_or(listener.port);
            let udp = is_udp(listener);
            let slots: Vec<Slot> = addresses
                .iter()
                .map(|ip| (SocketAddr::new(*ip, port), udp, listener.hostname.clone()))
                .collect();
            let taken = slots
                .iter()
                .find_map(|slot| owners.get(slot).map(|other| (slot.0, other)));
            if let Some((socket, other)) = taken {
                listener.conflict = Some(Conflict {
                    reason: reason::HOSTNAME_CONFLICT,
                    message: format!(
                        "{socket} with hostname {:?} is already served by listener {other} of an older Gateway",
                        listener.hostname.as_deref().unwrap_or("")
                    ),
                });
                continue;
            }
            for slot in slots {
                owners.insert(slot, owner.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_api::gateway::gateways::GatewayListeners;

    fn listener(name: &str, port: i32, protocol: &str, hostname: Option<&str>) -> ListenerPlan {
        ListenerPlan::from_gateway(
            &GatewayListeners {
                name: name.into(),
                port,
                protocol: protocol.into(),
                hostname: hostname.map(Into::into),
                ..Default::default()
            },
            &ObjectRef::new("ns", "gw"),
        )
    }

    fn reasons(listeners: &[ListenerPlan]) -> Vec<Option<&'static str>> {
        listeners
            .iter()
            .map(|l| l.conflict.as_ref().map(|c| c.reason))
            .collect()
    }

    #[test]
    fn conflicts_within_one_object() {
        let mut listeners = vec![
            listener("a", 80, "HTTP", Some("a.example.com")),
            listener("b", 80, "HTTP", Some("b.example.com")),
            listener("c", 80, "HTTP", Some("a.example.com")),
            listener("d", 8080, "HTTP", None),
            listener("e", 8080, "TCP", None),
            listener("f", 53, "UDP", None),
            listener("g", 53, "TCP", None),
            listener("h", 9000, "example.com/custom", None),
            listener("i", 9000, "HTTP", None),
            listener("j", 7000, "TCP", None),
            listener("k", 7000, "TCP", Some("ignored.example.com")),
            listener("l", 0, "HTTP", None),
            listener("m", 0, "HTTP", None),
            // HTTPS and TLS share a port by SNI: distinct hostnames are compatible,
            // the same hostname is not, and HTTP next to either is a protocol conflict.
            listener("n", 443, "HTTPS", Some("*.example.com")),
            listener("o", 443, "TLS", Some("abc.example.com")),
            listener("p", 8443, "HTTPS", Some("same.example.com")),
            listener("q", 8443, "TLS", Some("same.example.com")),
            listener("r", 9443, "TLS", Some("tls.example.com")),
            listener("s", 9443, "HTTP", Some("http.example.com")),
        ];
        mark_within(&mut listeners);
        assert_eq!(
            reasons(&listeners),
            vec![
                Some(reason::HOSTNAME_CONFLICT),
                None,
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                None,
                None,
                None,
                None,
                // TCP listeners are told apart by port only.
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::HOSTNAME_CONFLICT),
                // Listeners without a usable port take no part.
                None,
                None,
                None,
                None,
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
            ]
        );
    }

    #[test]
    fn earlier_listeners_win() {
        let mut rejected = listener("rejected", 80, "HTTP", Some("fine.example.com"));
        rejected.conflict = Some(Conflict {
            reason: reason::HOSTNAME_CONFLICT,
            message: String::new(),
        });
        let earlier = vec![
            listener("gateway-listener", 80, "HTTP", Some("gw.example.com")),
            listener("other", 80, "HTTP", Some("other.example.com")),
            rejected,
        ];
        let mut later = vec![
            listener("fine", 80, "HTTP", Some("fine.example.com")),
            listener("same-host", 80, "HTTP", Some("other.example.com")),
            listener("tcp", 80, "TCP", None),
            listener("elsewhere", 8080, "TCP", None),
        ];
        mark_against_earlier(&earlier, &mut later);
        assert_eq!(
            reasons(&earlier),
            vec![None, None, Some(reason::HOSTNAME_CONFLICT)]
        );
        assert_eq!(
            reasons(&later),
            vec![
                None,
                Some(reason::HOSTNAME_CONFLICT),
                Some(reason::PROTOCOL_CONFLICT),
                None
            ]
        );
        let message = &later[2].conflict.as_ref().map(|c| c.message.clone());
        assert_eq!(
            message.as_deref(),
            Some(
                "port 80 is also used by the Gateway's listener \"gateway-listener\" with protocol HTTP"
            )
        );
    }
}
