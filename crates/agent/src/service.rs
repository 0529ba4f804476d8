//! The agent's model of a load-balanced service, independent of the maps' encoding.
//!
//! ```text
//!   ServiceEntry { frontend: VIP:port, protocol, flags, backends: [BackendEntry { addr, weight }] }
//!        │ encode(offset)                                   ▲ decode
//!        ▼                                                  │
//!   SvcKey -> SvcValue { count, offset, total_weight, flags } + Backend per slot
//! ```

use std::fmt;
use std::net::SocketAddrV4;

use crate::maps::{Backend, IPPROTO_TCP, IPPROTO_UDP, SvcKey, SvcValue};

/// The transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            IPPROTO_TCP => Some(Protocol::Tcp),
            IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// What identifies a service in the datapath: the address clients dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: SocketAddrV4,
    pub protocol: Protocol,
}

impl Frontend {
    pub fn new(addr: SocketAddrV4, protocol: Protocol) -> Self {
        Frontend { addr, protocol }
    }

    pub(crate) fn key(&self) -> SvcKey {
        SvcKey::new(self.addr, self.protocol.number())
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.protocol)
    }
}

/// One backend of a service. A weight of 0 keeps the backend listed but never chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendEntry {
    pub addr: SocketAddrV4,
    pub weight: u32,
}

/// A service as the datapath balances it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceEntry {
    pub frontend: Frontend,
    /// Passed through to the map for the agent's own use (shown by `portico lb list`).
    pub flags: u32,
    /// In slot order; the datapath's choice is weighted and does not depend on the order.
    pub backends: Vec<BackendEntry>,
}

/// Why an entry cannot be programmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("{frontend}: the backends' weights add up to more than {}", u32::MAX)]
    WeightOverflow { frontend: Frontend },
    #[error("{frontend}: {count} backends do not fit in the {capacity} backend slots")]
    TooManyBackends {
        frontend: Frontend,
        count: usize,
        capacity: u32,
    },
}

impl ServiceEntry {
    /// Encodes the entry for the maps, its backends starting at slot `offset`. Backends
    /// of weight 0 are dropped (they could never be picked); a service whose weights are
    /// all 0 has no backends and refuses connections.
    pub(crate) fn encode(
        &self,
        offset: u32,
    ) -> Result<(SvcKey, SvcValue, Vec<Backend>), EntryError> {
        let mut cum: u32 = 0;
        let mut slots = Vec::with_capacity(self.backends.len());
        for b in self.backends.iter().filter(|b| b.weight > 0) {
            cum = cum
                .checked_add(b.weight)
                .ok_or(EntryError::WeightOverflow {
                    frontend: self.frontend,
                })?;
            slots.push(Backend::new(b.addr, b.weight, cum));
        }
        let count = u32::try_from(slots.len()).map_err(|_| EntryError::TooManyBackends {
            frontend: self.frontend,
            count: slots.len(),
            capacity: u32::MAX,
        })?;
        let value = SvcValue {
            count,
            offset,
            total_weight: cum,
            flags: self.flags,
        };
        Ok((self.frontend.key(), value, slots))
    }

    /// The number of slots the entry needs.
    pub(crate) fn slot_count(&self) -> usize {
        self.backends.iter().filter(|b| b.weight > 0).count()
    }

    /// Rebuilds an entry from the maps; `None` when the key's protocol is not ours.
    pub(crate) fn decode(key: &SvcKey, value: &SvcValue, backends: &[Backend]) -> Option<Self> {
        let protocol = Protocol::from_number(key.proto)?;
        Some(ServiceEntry {
            frontend: Frontend::new(key.frontend(), protocol),
            flags: value.flags,
            backends: backends
                .iter()
                .map(|b| BackendEntry {
                    addr: b.socket_addr(),
                    weight: b.weight,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(backends: &[(&str, u32)]) -> ServiceEntry {
        ServiceEntry {
            frontend: Frontend::new("10.96.0.1:80".parse().unwrap(), Protocol::Tcp),
            flags: 0,
            backends: backends
                .iter()
                .map(|(a, w)| BackendEntry {
                    addr: a.parse().unwrap(),
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn encode_accumulates_weights_and_drops_zero_weights() {
        let e = entry(&[
            ("10.0.0.1:8080", 1),
            ("10.0.0.2:8080", 0),
            ("10.0.0.3:8080", 3),
        ]);
        let (key, value, slots) = e.encode(40).unwrap();
        assert_eq!(key.frontend(), "10.96.0.1:80".parse().unwrap());
        assert_eq!(key.proto, IPPROTO_TCP);
        assert_eq!(
            value,
            SvcValue {
                count: 2,
                offset: 40,
                total_weight: 4,
                flags: 0
            }
        );
        assert_eq!(slots.iter().map(|b| b.cum).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(e.slot_count(), 2);
    }

    #[test]
    fn decode_reverses_encode() {
        let e = entry(&[("10.0.0.1:8080", 1), ("10.0.0.3:9090", 5)]);
        let (key, value, slots) = e.encode(0).unwrap();
        assert_eq!(ServiceEntry::decode(&key, &value, &slots), Some(e));
    }

    #[test]
    fn no_backends_encodes_an_empty_service() {
        let (_, value, slots) = entry(&[]).encode(7).unwrap();
        assert_eq!((value.count, value.total_weight), (0, 0));
        assert!(slots.is_empty());
    }

    #[test]
    fn weights_that_overflow_are_rejected() {
        let e = entry(&[("10.0.0.1:1", u32::MAX), ("10.0.0.2:1", 1)]);
        assert!(matches!(
            e.encode(0),
            Err(EntryError::WeightOverflow { .. })
        ));
    }
}
