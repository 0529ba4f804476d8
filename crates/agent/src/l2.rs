//! L2 announcements: this node answers ARP for the LoadBalancer IPs it was elected to
//! announce, on selected interfaces, so that a segment without a load balancer (a kind
//! network, a bare-metal LAN) sends the IPs' traffic to it.
//!
//! ```text
//!   who-has 172.18.0.200? ──> [iface XDP portico_l2_arp]
//!                                portico_l2[(ifindex, 172.18.0.200)] = our MAC ?
//!                                  yes: is-at <our MAC>, sent back out (XDP_TX)
//!                                  no:  to the kernel, as usual
//! ```
//!
//! One node per IP: whoever wins the election for an IP calls [`L2Announcer::announce`],
//! and the loser [`L2Announcer::withdraw`]. In a cluster the election is a Lease per IP
//! ([`crate::l2_election`]). The ARP answer is what makes the IP reachable; the traffic itself is then
//! served by the NodePort programs or Gateway steering.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use tracing::info;

use crate::datapath::{
    DatapathError, is_not_found, map_err, prepare_pin_dir, prog_err, replace_pinned_link, take_map,
};
use crate::maps::{L2_MAP, L2_STATS_MAP, L2Key, L2Value, addr_from_map, addr_to_map};
use crate::programs::{L2, L2_PROGRAM};

/// The ARP responder, attached to one interface.
pub struct L2Announcer {
    announced: HashMap<MapData, L2Key, L2Value>,
    stats: PerCpuArray<MapData, u64>,
    interface: String,
    ifindex: u32,
    mac: [u8; 6],
    _link: PinnedLink,
    _ebpf: Ebpf,
}

impl std::fmt::Debug for L2Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Announcer")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("mac", &format_mac(&self.mac))
            .finish_non_exhaustive()
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The index and MAC address of `interface` in the calling thread's network namespace.
fn link_of(interface: &str) -> Result<(u32, [u8; 6]), DatapathError> {
    let not_found = |detail: &str| DatapathError::Io {
        what: "finding the interface",
        path: interface.into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, detail.to_owned()),
    };
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| DatapathError::Io {
        what: "listing interfaces for",
        path: interface.into(),
        source: e.into(),
    })?;
    for ifa in addrs {
        if ifa.interface_name != interface {
            continue;
        }
        if let Some(link) = ifa.address.as_ref().and_then(|a| a.as_link_addr())
            && let Some(mac) = link.addr()
        {
            let index = u32::try_from(link.ifindex()).map_err(|_| not_found("bad ifindex"))?;
            return Ok((index, mac));
        }
    }
    Err(not_found("no such interface with a link-layer address"))
}

impl L2Announcer {
    /// Loads the responder against the maps pinned in `pin_dir` and attaches it to
    /// `interface` in the calling thread's network namespace. `mode` is the XDP mode:
    /// [`XdpMode::Skb`] (generic) works on every device; native is faster where the
    /// driver has it.
    pub fn load(pin_dir: &Path, interface: &str, mode: XdpMode) -> Result<Self, DatapathError> {
        let links_dir = prepare_pin_dir(pin_dir)?;
        let (ifindex, mac) = link_of(interface)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(L2)
            .map_err(Box::new)?;
        let name = L2_PROGRAM;
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(prog_err(name))?;
        program.load().map_err(prog_err(name))?;
        let id = program.attach(interface, mode).map_err(prog_err(name))?;
        let link: FdLink = program
            .take_link(id)
            .map_err(prog_err(name))?
            .try_into()
            .map_err(|source| DatapathError::Link { name, source })?;
        let link = replace_pinned_link(&links_dir.join(format!("{name}@{interface}")), name, link)?;
        let announced = take_map(&mut ebpf, L2_MAP)?;
        let stats = take_map(&mut ebpf, L2_STATS_MAP)?;
        info!(interface, mac = %format_mac(&mac), "L2 announcements attached");
        Ok(L2Announcer {
            announced,
            stats,
            interface: interface.to_owned(),
            ifindex,
            mac,
            _link: link,
            _ebpf: ebpf,
        })
    }

    /// The MAC address this node answers with on the interface.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn key(&self, ip: Ipv4Addr) -> L2Key {
        L2Key {
            ifindex: self.ifindex,
            addr: addr_to_map(ip),
        }
    }

    /// Starts answering ARP for `ip` (this node won its election).
    pub fn announce(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        let value = L2Value {
            mac: self.mac,
            pad: 0,
        };
        self.announced
            .insert(self.key(ip), value, 0)
            .map_err(map_err(L2_MAP))?;
        info!(interface = %self.interface, %ip, "announcing");
        Ok(())
    }

    /// Stops answering ARP for `ip`; returns whether it was announced.
    pub fn withdraw(&mut self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
        match self.announced.remove(&self.key(ip)) {
            Ok(()) => {
                info!(interface = %self.interface, %ip, "withdrawn");
                Ok(true)
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(map_err(L2_MAP)(e)),
        }
    }

    /// Withdraws every IP announced on this interface (what a previous agent left);
    /// returns how many there were.
    pub fn withdraw_all(&mut self) -> Result<usize, DatapathError> {
        let ips = self.announced()?;
        for ip in &ips {
            self.withdraw(*ip)?;
        }
        Ok(ips.len())
    }

    /// The IPs announced on this interface, sorted.
    pub fn announced(&self) -> Result<Vec<Ipv4Addr>, DatapathError> {
        let mut ips = Vec::new();
        for key in self.announced.keys() {
            let key = key.map_err(map_err(L2_MAP))?;
            if key.ifindex == self.ifindex {
                ips.push(addr_from_map(key.addr));
            }
        }
        ips.sort();
        Ok(ips)
    }

    /// ARP replies sent, on every interface of this pin directory, since the map was made.
    pub fn replies(&self) -> Result<u64, DatapathError> {
        let values = self.stats.get(&0, 0).map_err(map_err(L2_STATS_MAP))?;
        Ok(values.iter().sum())
    }
}
