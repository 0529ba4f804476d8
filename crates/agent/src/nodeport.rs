//! NodePort and LoadBalancer traffic from outside the node: the tc programs of
//! `bpf/nodeport.c`, attached with tcx to the node's external interfaces.
//!
//! ```text
//!   client ──> [iface ingress: portico_nodeport_in]  VIP:port -> backend   (portico_ct fwd + rev)
//!                         │ routed (ip_forward)
//!                         ▼
//!                      backend ── reply ──> node ──> [iface egress: portico_nodeport_out]
//!                                                    backend -> VIP:port  ──> client
//! ```
//!
//! The frontends are service entries flagged [`crate::maps::flags::EXTERNAL`] in the maps
//! [`crate::Datapath`] programs (a LoadBalancer IP and port, or `0.0.0.0:<nodePort>` for
//! any address of the node); `externalTrafficPolicy: Local` is the source's business (it
//! programs the node's own backends only, and none drops). The links are pinned under
//! `links/` per interface, so translation goes on while the agent restarts.

use std::path::Path;

use aya::maps::{HashMap, MapData};
use aya::programs::links::FdLink;
use aya::programs::links::PinnedLink;
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use tracing::info;

use crate::datapath::{
    DatapathError, map_err, prepare_pin_dir, prog_err, replace_pinned_link, take_map,
};
use crate::maps::{CT_MAP, CtKey, CtValue};
use crate::programs::{NODEPORT, NODEPORT_EGRESS, NODEPORT_INGRESS};

/// The NodePort programs, attached to one interface.
pub struct NodePort {
    ct: HashMap<MapData, CtKey, CtValue>,
    interface: String,
    _links: Vec<PinnedLink>,
    _ebpf: Ebpf,
}

impl std::fmt::Debug for NodePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePort")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl NodePort {
    /// Loads the programs against the maps pinned in `pin_dir` and attaches them to
    /// `interface` (ingress and egress) in the calling thread's network namespace.
    pub fn load(pin_dir: &Path, interface: &str) -> Result<Self, DatapathError> {
        let links_dir = prepare_pin_dir(pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(NODEPORT)
            .map_err(Box::new)?;
        let mut links = Vec::with_capacity(2);
        for (name, attach) in [
            (NODEPORT_INGRESS, TcAttachType::Ingress),
            (NODEPORT_EGRESS, TcAttachType::Egress),
        ] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(prog_err(name))?;
            program.load().map_err(prog_err(name))?;
            // tcx (kernel 6.6+): a BPF link per hook, which can be pinned like the cgroup
            // links; aya falls back to netlink clsact on older kernels, whose links
            // cannot be pinned (the conversion below fails and says so).
            let id = program.attach(interface, attach).map_err(prog_err(name))?;
            let link: FdLink = program
                .take_link(id)
                .map_err(prog_err(name))?
                .try_into()
                .map_err(|source| DatapathError::Link { name, source })?;
            let pin = links_dir.join(format!("{name}@{interface}"));
            links.push(replace_pinned_link(&pin, name, link)?);
        }
        let ct = take_map(&mut ebpf, CT_MAP)?;
        info!(pin_dir = %pin_dir.display(), interface, "nodeport translation attached");
        Ok(NodePort {
            ct,
            interface: interface.to_owned(),
            _links: links,
            _ebpf: ebpf,
        })
    }

    /// The interface the programs are attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Entries in the connection tracking map (two per translated flow).
    pub fn tracked_entries(&self) -> Result<usize, DatapathError> {
        let mut n = 0;
        for key in self.ct.keys() {
            key.map_err(map_err(CT_MAP))?;
            n += 1;
        }
        Ok(n)
    }
}
