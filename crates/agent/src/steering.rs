//! Gateway steering: traffic for Gateway Services goes to the node-local proxy.
//!
//! ```text
//!   client ──SYN to VIP:80──> node  (a `local` route makes VIP deliverable here)
//!                              │ socket lookup
//!                              ▼
//!          sk_lookup portico_steer: portico_svc[VIP:80/TCP].flags & GATEWAY ?
//!                              │ yes: bpf_sk_assign(portico_proxy[0])
//!                              ▼
//!          the proxy's listener (bound anywhere, e.g. 127.0.0.1:15080)
//!          accept() -> getsockname() = VIP:80: the Gateway and listener the client meant
//! ```
//!
//! The service entries are the ones [`crate::Datapath`] programs (flag
//! [`crate::maps::flags::GATEWAY`]); this module attaches the sk_lookup program to a network
//! namespace (the node's), holds the SOCKMAP the proxy's sockets are registered in, and
//! adds the `local` routes without which a Gateway address would be forwarded instead of
//! delivered. The link is pinned as `links/portico_steer` beside the maps, and replaced
//! (new first, old released after) by a restarted agent, as the cgroup links are.
//!
//! The SOCKMAP holds a reference to the socket, not the socket itself: when the proxy
//! closes its listener the kernel removes it from the map, and Gateway connections are
//! refused until a new listener is registered.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::maps::{MapData, SockMap};
use aya::programs::SkLookup;
use aya::programs::links::{FdLink, PinnedLink};
use aya::{Ebpf, EbpfLoader};
use tracing::info;

use crate::datapath::{
    DatapathError, is_not_found, map_err, prepare_pin_dir, prog_err, replace_pinned_link, take_map,
};
use crate::local_route::{Change, change_local_route};
use crate::maps::{PROXY_MAP, PROXY_TCP_SLOT, PROXY_UDP_SLOT};
use crate::programs::{STEER, STEER_PROGRAM};
use crate::service::Protocol;

/// The sk_lookup program attached to a network namespace, and the proxy's SOCKMAP.
pub struct Steering {
    proxy: SockMap<MapData>,
    _link: PinnedLink,
    _ebpf: Ebpf,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // aya's SockMap has no Debug of its own.
        f.debug_struct("Steering").finish_non_exhaustive()
    }
}

fn slot(protocol: Protocol) -> u32 {
    match protocol {
        Protocol::Tcp => PROXY_TCP_SLOT,
        Protocol::Udp => PROXY_UDP_SLOT,
    }
}

impl Steering {
    /// Loads the steering program against the maps pinned in `pin_dir` (created there if
    /// no [`crate::Datapath`] made them yet) and attaches it to the network namespace
    /// `netns` (`/proc/self/ns/net`, `/run/netns/<name>`, ...).
    pub fn load(pin_dir: &Path, netns: &Path) -> Result<Self, DatapathError> {
        let links_dir = prepare_pin_dir(pin_dir)?;
        let netns_file = File::open(netns).map_err(|source| DatapathError::Io {
            what: "opening network namespace",
            path: netns.to_path_buf(),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(STEER)
            .map_err(Box::new)?;
        let name = STEER_PROGRAM;
        let program: &mut SkLookup = ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(prog_err(name))?;
        program.load().map_err(prog_err(name))?;
        let id = program.attach(&netns_file).map_err(prog_err(name))?;
        let link: FdLink = program.take_link(id).map_err(prog_err(name))?.into();
        let link = replace_pinned_link(&links_dir.join(name), name, link)?;
        let proxy: SockMap<MapData> = take_map(&mut ebpf, PROXY_MAP)?;
        info!(pin_dir = %pin_dir.display(), netns = %netns.display(), "gateway steering attached");
        Ok(Steering {
            proxy,
            _link: link,
            _ebpf: ebpf,
        })
    }

    /// Registers the proxy's socket for `protocol`: a listening TCP socket, or a bound UDP
    /// socket. Gateway traffic of that protocol goes to it from now on.
    pub fn set_proxy_socket(
        &mut self,
        protocol: Protocol,
        socket: &impl AsRawFd,
    ) -> Result<(), DatapathError> {
        self.proxy
            .set(slot(protocol), socket, 0)
            .map_err(map_err(PROXY_MAP))?;
        info!(%protocol, "proxy socket registered for gateway steering");
        Ok(())
    }

    /// Forgets the proxy's socket for `protocol`; returns whether there was one.
    pub fn clear_proxy_socket(&mut self, protocol: Protocol) -> Result<bool, DatapathError> {
        match self.proxy.clear_index(&slot(protocol)) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(map_err(PROXY_MAP)(e)),
        }
    }
}

/// Registers a proxy socket in the SOCKMAP pinned under `pin_dir`, without loading
/// anything: what a proxy process calls for its own listener once the agent has attached
/// the steering program.
pub fn register_proxy_socket(
    pin_dir: &Path,
    protocol: Protocol,
    socket: &impl AsRawFd,
) -> Result<(), DatapathError> {
    let map = MapData::from_pin(pin_dir.join(PROXY_MAP))
        .and_then(aya::maps::Map::from_map_data)
        .map_err(map_err(PROXY_MAP))?;
    let mut proxy: SockMap<MapData> = SockMap::try_from(map).map_err(map_err(PROXY_MAP))?;
    proxy
        .set(slot(protocol), socket, 0)
        .map_err(map_err(PROXY_MAP))
}

/// Why a route could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}`: {detail}")]
pub struct RouteError {
    command: String,
    detail: String,
    missing: bool,
}

/// The `local` routes that make Gateway addresses deliverable on the node, so that
/// sk_lookup sees their packets: `ip route replace local <ip>/32 dev lo`, sent over
/// rtnetlink ([`crate::local_route`]), since the agent's image has no iproute2.
#[derive(Debug, Clone, Default)]
pub struct LocalRoutes {
    /// A named network namespace (`/run/netns/<name>`, as `ip -n` takes it), or the
    /// agent's own.
    pub netns: Option<String>,
}

impl LocalRoutes {
    /// Routes `ip` to this node; replacing an existing route is not an error.
    pub fn add(&self, ip: Ipv4Addr) -> Result<(), RouteError> {
        self.change(Change::Replace, ip)
    }

    /// Removes the route `add` made; removing a missing route is not an error.
    pub fn remove(&self, ip: Ipv4Addr) -> Result<(), RouteError> {
        match self.change(Change::Delete, ip) {
            Err(e) if e.missing => Ok(()),
            other => other,
        }
    }

    fn change(&self, change: Change, ip: Ipv4Addr) -> Result<(), RouteError> {
        let netns = self
            .netns
            .as_ref()
            .map(|name| Path::new("/run/netns").join(name));
        change_local_route(netns.as_deref(), change, ip).map_err(|e| RouteError {
            command: format!(
                "{} local {ip}/32 dev lo{}",
                match change {
                    Change::Replace => "route replace",
                    Change::Delete => "route del",
                },
                self.netns
                    .as_ref()
                    .map(|n| format!(" (netns {n})"))
                    .unwrap_or_default()
            ),
            missing: e.is_missing(),
            detail: e.to_string(),
        })
    }
}

/// The network namespace of the calling process, for [`Steering::load`] on a node.
pub fn own_netns() -> PathBuf {
    PathBuf::from("/proc/self/ns/net")
}
