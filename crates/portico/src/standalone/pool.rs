//! Addresses for Gateways that ask for none, from a pool (`--address-pool 127.0.10.0/24`).
//!
//! In a cluster every Gateway gets a LoadBalancer IP of its own, so every Gateway can
//! listen on port 80. On one machine the Gateways would all share the default address
//! and the second one on port 80 could not bind. A pool of loopback addresses plays the
//! LoadBalancer: the whole of 127.0.0.0/8 is loopback on Linux, so any address of it can
//! be bound without configuring anything.
//!
//! ```text
//!   provider event ──> Gateways of our classes without spec.addresses
//!                        │ still there?   keep their address   (remembered across reloads)
//!                        │ gone?          release it
//!                        │ new?           next free address after the last one handed out
//!                        ▼                (oldest Gateway first; ties by namespace/name)
//!   Options::assigned_addresses ──> translator (binds there, reports it in status.addresses)
//! ```
//!
//! Handing out the address *after* the last one rather than the lowest free one keeps a
//! released address out of use for as long as possible: a client that still talks to a
//! deleted Gateway's address then gets a refused connection, not another Gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use portico_api::gateway::{Gateway, GatewayClass};
use portico_translate::ObjectRef;

/// An IPv4 block, `a.b.c.d/len`, whose host addresses are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    network: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolParseError {
    #[error("{0:?} is not an IPv4 block like 127.0.10.0/24")]
    Syntax(String),
    #[error("{0:?}: the prefix length must be 0 to 32")]
    Prefix(String),
    #[error("{input:?} has host bits set; did you mean {network}/{prefix}?")]
    HostBits {
        input: String,
        network: Ipv4Addr,
        prefix: u8,
    },
}

impl FromStr for AddressPool {
    type Err = PoolParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| PoolParseError::Syntax(s.to_owned()))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| PoolParseError::Syntax(s.to_owned()))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| PoolParseError::Syntax(s.to_owned()))?;
        if prefix > 32 {
            return Err(PoolParseError::Prefix(s.to_owned()));
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if network != addr {
            return Err(PoolParseError::HostBits {
                input: s.to_owned(),
                network,
                prefix,
            });
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl AddressPool {
    /// The first and last address handed out: the network and broadcast addresses are
    /// left out, as a LoadBalancer pool would, except in /31 and /32 blocks that have no
    /// others.
    fn range(&self) -> (u32, u32) {
        let first = u32::from(self.network);
        let last = first | !mask(self.prefix);
        if self.prefix >= 31 {
            (first, last)
        } else {
            (first + 1, last - 1)
        }
    }

    /// How many addresses the pool hands out.
    pub fn len(&self) -> u64 {
        let (first, last) = self.range();
        u64::from(last - first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The pool's state: which Gateway holds which address.
#[derive(Debug)]
pub(crate) struct Assigner {
    pool: AddressPool,
    assigned: BTreeMap<ObjectRef, IpAddr>,
    /// The last address handed out; the search for a free one starts after it.
    cursor: Option<u32>,
}

impl Assigner {
    pub(crate) fn new(pool: AddressPool) -> Self {
        Self {
            pool,
            assigned: BTreeMap::new(),
            cursor: None,
        }
    }

    /// Brings the assignments in line with the Gateways of a new snapshot and returns
    /// them. Gateways that want an address are those of a class whose controllerName is
    /// `controller` and that set no `spec.addresses`.
    pub(crate) fn update(
        &mut self,
        classes: &[GatewayClass],
        gateways: &[Gateway],
        controller: &str,
    ) -> &BTreeMap<ObjectRef, IpAddr> {
        let ours: BTreeSet<&str> = classes
            .iter()
            .filter(|c| c.spec.controller_name == controller)
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        let mut wanting: Vec<&Gateway> = gateways
            .iter()
            .filter(|g| ours.contains(g.spec.gateway_class_name.as_str()))
            .filter(|g| g.spec.addresses.as_ref().is_none_or(Vec::is_empty))
            .collect();
        // "First come, first served": the oldest Gateway gets an address first.
        wanting.sort_by(|a, b| {
            let key = |g: &Gateway| {
                (
                    g.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    g.metadata.namespace.clone().unwrap_or_default(),
                    g.metadata.name.clone().unwrap_or_default(),
                )
            };
            key(a).cmp(&key(b))
        });
        let keys: Vec<ObjectRef> = wanting.iter().map(|g| key_of(g)).collect();

        let before = self.assigned.len();
        self.assigned.retain(|k, _| keys.contains(k));
        if self.assigned.len() != before {
            tracing::debug!(
                released = before - self.assigned.len(),
                "address pool: released addresses of Gateways that are gone"
            );
        }
        for key in keys {
            if self.assigned.contains_key(&key) {
                continue;
            }
            match self.next_free() {
                Some(addr) => {
                    tracing::info!(gateway = %key, %addr, "address pool: assigned");
                    self.assigned.insert(key, addr);
                }
                None => tracing::warn!(
                    gateway = %key,
                    pool = %self.pool,
                    "address pool exhausted: the Gateway binds the default address"
                ),
            }
        }
        &self.assigned
    }

    fn next_free(&mut self) -> Option<IpAddr> {
        let (first, last) = self.pool.range();
        let used: BTreeSet<IpAddr> = self.assigned.values().copied().collect();
        let size = u64::from(last - first) + 1;
        let start = match self.cursor {
            Some(c) if c < last => c + 1,
            _ => first,
        };
        let mut candidate = start;
        for _ in 0..size {
            let addr = IpAddr::V4(Ipv4Addr::from(candidate));
            if !used.contains(&addr) {
                self.cursor = Some(candidate);
                return Some(addr);
            }
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
        }
        None
    }
}

fn key_of(g: &Gateway) -> ObjectRef {
    ObjectRef::new(
        g.metadata.namespace.clone().unwrap_or_default(),
        g.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn class(name: &str, controller: &str) -> GatewayClass {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
             metadata: {{name: {name}}}\nspec: {{controllerName: {controller}}}\n"
        ))
        .unwrap()
    }

    fn gateway(name: &str, class: &str, created: &str, addresses: &str) -> Gateway {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {{name: {name}, namespace: ns, creationTimestamp: '{created}'}}\n\
             spec: {{gatewayClassName: {class}, listeners: [], {addresses}}}\n"
        ))
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_blocks_and_rejects_host_bits() {
        let pool: AddressPool = "127.0.10.0/24".parse().unwrap();
        assert_eq!(pool.to_string(), "127.0.10.0/24");
        assert_eq!(pool.len(), 254);
        assert_eq!("10.0.0.7/32".parse::<AddressPool>().unwrap().len(), 1);
        assert_eq!("10.0.0.6/31".parse::<AddressPool>().unwrap().len(), 2);
        let err = "127.0.10.1/24".parse::<AddressPool>().unwrap_err();
        assert!(err.to_string().contains("127.0.10.0/24"), "{err}");
        assert!("127.0.10.0".parse::<AddressPool>().is_err());
        assert!("127.0.10.0/33".parse::<AddressPool>().is_err());
        assert!("::1/128".parse::<AddressPool>().is_err());
    }

    #[test]
    fn oldest_first_remembered_and_released() {
        let mut a = Assigner::new("127.0.10.0/30".parse().unwrap());
        let classes = [class("portico", "me"), class("other", "them")];
        let old = gateway("old", "portico", "2024-01-01T00:00:00Z", "");
        let new = gateway("new", "portico", "2024-01-02T00:00:00Z", "");
        let theirs = gateway("theirs", "other", "2023-01-01T00:00:00Z", "");
        let fixed = gateway(
            "fixed",
            "portico",
            "2023-01-01T00:00:00Z",
            "addresses: [{value: 127.0.0.9}]",
        );
        let got = a
            .update(&classes, &[new.clone(), old.clone(), theirs, fixed], "me")
            .clone();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[&ObjectRef::new("ns", "old")], ip("127.0.10.1"));
        assert_eq!(got[&ObjectRef::new("ns", "new")], ip("127.0.10.2"));

        // Reloads keep addresses; a Gateway that goes away releases its address, and the
        // next Gateway gets the address after the last one handed out, then wraps.
        let got = a.update(&classes, std::slice::from_ref(&new), "me").clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&ObjectRef::new("ns", "new")], ip("127.0.10.2"));
        let third = gateway("third", "portico", "2024-01-03T00:00:00Z", "");
        let got = a
            .update(&classes, &[new.clone(), third.clone()], "me")
            .clone();
        assert_eq!(got[&ObjectRef::new("ns", "third")], ip("127.0.10.1"));

        // Exhausted: the Gateway gets nothing (and binds the default address).
        let fourth = gateway("fourth", "portico", "2024-01-04T00:00:00Z", "");
        let got = a.update(&classes, &[new, third, fourth], "me").clone();
        assert_eq!(got.len(), 2);
        assert!(!got.contains_key(&ObjectRef::new("ns", "fourth")));
    }
}
