//! The BPF maps' keys and values, mirrored byte for byte from `bpf/lb.h` and
//! `bpf/sock_lb.c`.
//!
//! ```text
//!   portico_svc   SvcKey { addr, port, proto }        -> SvcValue { count, offset, total_weight, flags }
//!   portico_be    u32 slot                            -> Backend { addr, port, weight, cum }
//!   portico_rnat  RnatKey { cookie, addr, port }      -> RnatValue { addr, port }   (kernel-written)
//!   portico_ct    CtKey { saddr, daddr, sport, dport, proto, dir } -> CtValue { addr, port }   (kernel-written)
//!   portico_l2    L2Key { ifindex, addr }             -> L2Value { mac }   (ARP answers)
//!   portico_proxy u32 slot                            -> socket   (SOCKMAP, steering)
//! ```
//!
//! Addresses and ports are stored in network byte order, as the socket context holds them:
//! `addr` holds the four octets in memory order, `port` the two. The `from_*`/`*()` helpers
//! are the only place that converts. Every struct has a size test: a change on one side
//! without the other fails here before it corrupts a map.

// `aya::Pod` is an unsafe marker trait: implementing it promises that every bit pattern is
// a valid value and that the struct has no padding, so that aya may copy it to and from
// the kernel as bytes. All fields below are integers, padding is spelled out as fields,
// and the size tests check that there is none left.
#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// The names of the maps, as the C source declares them (and as they are pinned).
pub const SERVICES_MAP: &str = "portico_svc";
pub const BACKENDS_MAP: &str = "portico_be";
pub const REVNAT_MAP: &str = "portico_rnat";
/// The SOCKMAP holding the node-local proxy's sockets (`bpf/steer.c`).
pub const PROXY_MAP: &str = "portico_proxy";
/// The NodePort datapath's connection tracking (`bpf/nodeport.c`).
pub const CT_MAP: &str = "portico_ct";
/// L2 announcements (`bpf/l2.c`): the IPs answered per interface, and a reply counter.
pub const L2_MAP: &str = "portico_l2";
pub const L2_STATS_MAP: &str = "portico_l2_stats";
/// Its slots: the proxy's TCP listener and its UDP socket.
pub const PROXY_TCP_SLOT: u32 = 0;
pub const PROXY_UDP_SLOT: u32 = 1;

/// `svc_value.flags`, as `bpf/lb.h` defines them.
pub mod flags {
    /// A Gateway Service: steered to the node-local proxy, never balanced to a backend.
    pub const GATEWAY: u32 = 1 << 0;
    /// A NodePort or LoadBalancer frontend, for traffic from outside the node.
    pub const EXTERNAL: u32 = 1 << 1;
    /// `externalTrafficPolicy: Local`: the backends are this node's only.
    pub const LOCAL: u32 = 1 << 2;
}

/// Capacities, as declared in the C source.
pub const SERVICES_CAPACITY: u32 = 16384;
pub const BACKEND_SLOTS: u32 = 131072;

/// IP protocol numbers the datapath balances.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// `struct svc_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SvcKey {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

/// `struct svc_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcValue {
    /// Number of backends; 0 makes connects fail with ECONNREFUSED.
    pub count: u32,
    /// First slot of the service's backends in `portico_be`.
    pub offset: u32,
    /// Sum of the backends' weights.
    pub total_weight: u32,
    pub flags: u32,
}

/// `struct backend`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backend {
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
    pub weight: u32,
    /// Sum of the weights of this slot and of the service's slots before it.
    pub cum: u32,
}

/// `struct rnat_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RnatKey {
    pub cookie: u64,
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// `struct rnat_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RnatValue {
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// `struct ct_key` (`bpf/nodeport.c`): a flow as the packet carries it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// 0: client -> frontend, the value is the backend; 1: backend -> client, the value
    /// is the frontend.
    pub dir: u8,
    pub pad: u16,
}

/// `struct ct_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtValue {
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// `struct l2_key` (`bpf/l2.c`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L2Key {
    pub ifindex: u32,
    /// Network byte order, as [`addr_to_map`] gives it.
    pub addr: u32,
}

/// `struct l2_value`: the MAC the interface answers with.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L2Value {
    pub mac: [u8; 6],
    pub pad: u16,
}

unsafe impl aya::Pod for L2Key {}
unsafe impl aya::Pod for L2Value {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtValue {}
unsafe impl aya::Pod for SvcKey {}
unsafe impl aya::Pod for SvcValue {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for RnatKey {}
unsafe impl aya::Pod for RnatValue {}

/// An IPv4 address as the kernel stores it in `user_ip4`: octets in memory order.
pub fn addr_to_map(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn addr_from_map(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

/// A port as the kernel stores it in `user_port`: network byte order.
pub fn port_to_map(port: u16) -> u16 {
    port.to_be()
}

pub fn port_from_map(raw: u16) -> u16 {
    u16::from_be(raw)
}

impl SvcKey {
    pub fn new(frontend: SocketAddrV4, proto: u8) -> Self {
        SvcKey {
            addr: addr_to_map(*frontend.ip()),
            port: port_to_map(frontend.port()),
            proto,
            pad: 0,
        }
    }

    pub fn frontend(&self) -> SocketAddrV4 {
        SocketAddrV4::new(addr_from_map(self.addr), port_from_map(self.port))
    }
}

impl Backend {
    pub fn new(addr: SocketAddrV4, weight: u32, cum: u32) -> Self {
        Backend {
            addr: addr_to_map(*addr.ip()),
            port: port_to_map(addr.port()),
            pad: 0,
            weight,
            cum,
        }
    }

    pub fn socket_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(addr_from_map(self.addr), port_from_map(self.port))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::mem::{align_of, size_of};

    use super::*;

    // The sizes clang gives the structs in bpf/sock_lb.c, as its BTF reports them
    // (`bpftool btf dump file sock_lb.o`): no implicit padding anywhere.
    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(size_of::<SvcKey>(), 8);
        assert_eq!(size_of::<SvcValue>(), 16);
        assert_eq!(size_of::<Backend>(), 16);
        assert_eq!(size_of::<RnatKey>(), 16);
        assert_eq!(align_of::<RnatKey>(), 8);
        assert_eq!(size_of::<RnatValue>(), 8);
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(size_of::<CtValue>(), 8);
        assert_eq!(size_of::<L2Key>(), 8);
        assert_eq!(size_of::<L2Value>(), 8);
    }

    #[test]
    fn addresses_and_ports_are_in_network_order_in_memory() {
        let key = SvcKey::new("10.96.0.10:53".parse().unwrap(), IPPROTO_UDP);
        assert_eq!(key.addr.to_ne_bytes(), [10, 96, 0, 10]);
        assert_eq!(key.port.to_ne_bytes(), [0, 53]);
        assert_eq!(key.frontend(), "10.96.0.10:53".parse().unwrap());
        let b = Backend::new("10.0.1.2:8080".parse().unwrap(), 3, 7);
        assert_eq!(b.port.to_ne_bytes(), 8080u16.to_be_bytes());
        assert_eq!(b.socket_addr(), "10.0.1.2:8080".parse().unwrap());
    }
}
