//! The agent binary's configuration and what `portico-agent run` does.
//!
//! ```text
//!   --from-dir DIR ──manifests::load_dir──> Services, EndpointSlices
//!       ──source::service_entries_with(node)──> [ServiceEntry] ──Datapath::sync──> pinned maps
//!   --nodeport-interface IF...   NodePort programs on each (tcx)
//!   --gateway-steering           sk_lookup in the agent's netns + `local` routes for the
//!                                Gateway addresses
//! ```
//!
//! The programs and maps are pinned, so the datapath keeps balancing after the command
//! exits; running it again adopts the maps and changes only what differs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::datapath::{Datapath, DatapathError, SyncStats};
use crate::manifests::load_dir;
use crate::maps::flags;
use crate::nodeport::NodePort;
use crate::service::ServiceEntry;
use crate::source::{SourceOptions, service_entries_with};
use crate::steering::{LocalRoutes, RouteError, Steering, own_netns};
use crate::{bpffs, datapath};

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where the maps and links are pinned (on bpffs).
    pub pin_dir: PathBuf,
    /// The cgroup v2 directory whose processes are balanced.
    pub cgroup: PathBuf,
    /// Mount a bpffs here first when there is none (usually /sys/fs/bpf).
    pub bpffs_root: Option<PathBuf>,
    /// A folder of Service and EndpointSlice manifests.
    pub from_dir: PathBuf,
    /// This node's name, for `externalTrafficPolicy: Local`.
    pub node_name: Option<String>,
    /// Interfaces on which NodePort and LoadBalancer traffic arrives.
    pub nodeport_interfaces: Vec<String>,
    /// Attach Gateway steering to the agent's network namespace and route Gateway
    /// addresses to this node.
    pub gateway_steering: bool,
}

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("mounting bpffs at {}: {source}", path.display())]
    Bpffs { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("writing the report: {0}")]
    Report(#[from] io::Error),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// The service entries the manifests in `dir` describe; problems with files are logged
/// and the rest is used.
pub fn entries_from_dir(dir: &Path) -> Vec<ServiceEntry> {
    entries_from_dir_with(&SourceOptions::default(), dir)
}

/// [`entries_from_dir`] on the node `opts` describes.
pub fn entries_from_dir_with(opts: &SourceOptions, dir: &Path) -> Vec<ServiceEntry> {
    let loaded = load_dir(dir);
    for e in &loaded.errors {
        warn!(error = %e, "skipping a manifest");
    }
    service_entries_with(opts, &loaded.services, &loaded.slices)
}

/// The addresses of Gateway frontends, which must be delivered on this node.
pub fn gateway_addresses(
    entries: &[ServiceEntry],
) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    entries
        .iter()
        .filter(|e| e.flags & flags::GATEWAY != 0 && !e.frontend.addr.ip().is_unspecified())
        .map(|e| *e.frontend.addr.ip())
        .collect()
}

/// Loads and attaches the datapath, programs the services of `from_dir`, and prints what
/// is programmed.
pub fn run(cfg: &RunConfig, out: &mut impl Write) -> Result<SyncStats, RunError> {
    if let Some(root) = &cfg.bpffs_root {
        bpffs::ensure_mounted(root).map_err(|source| RunError::Bpffs {
            path: root.clone(),
            source,
        })?;
    }
    let mut dp = Datapath::load(&cfg.pin_dir, &cfg.cgroup)?;
    let _steering = if cfg.gateway_steering {
        Some(Steering::load(&cfg.pin_dir, &own_netns())?)
    } else {
        None
    };
    let _nodeports = cfg
        .nodeport_interfaces
        .iter()
        .map(|iface| NodePort::load(&cfg.pin_dir, iface))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = SourceOptions {
        node_name: cfg.node_name.clone(),
    };
    let entries = entries_from_dir_with(&opts, &cfg.from_dir);
    let stats = dp.sync(&entries)?;
    if cfg.gateway_steering {
        let routes = LocalRoutes::default();
        for ip in gateway_addresses(&entries) {
            routes.add(ip)?;
        }
    }
    writeln!(
        out,
        "programmed: {} added, {} updated, {} removed, {} unchanged",
        stats.added, stats.updated, stats.removed, stats.unchanged
    )?;
    print_entries(&dp.list()?, out)?;
    Ok(stats)
}

/// Prints the services pinned under `pin_dir`, like `cilium bpf lb list`.
pub fn list(pin_dir: &Path, out: &mut impl Write) -> Result<(), RunError> {
    print_entries(&datapath::list_pinned(pin_dir)?, out)?;
    Ok(())
}

/// One line per backend, the frontend on the first (flags in hex):
/// ```text
/// FRONTEND              BACKENDS                    WEIGHT  FLAGS
/// 10.96.0.10:80/TCP     10.0.0.1:8080               1       0x0
///                       10.0.0.2:8080               1
/// 10.96.0.11:80/TCP     (none: refuses connections)
/// ```
pub fn print_entries(entries: &[ServiceEntry], out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<24}{:<24}{:<8}FLAGS",
        "FRONTEND", "BACKENDS", "WEIGHT"
    )?;
    for e in entries {
        let frontend = e.frontend.to_string();
        if e.backends.is_empty() {
            writeln!(out, "{frontend:<24}(none: refuses connections)")?;
            continue;
        }
        for (i, b) in e.backends.iter().enumerate() {
            let (f, flags) = if i == 0 {
                (frontend.as_str(), flag_names(e.flags))
            } else {
                ("", String::new())
            };
            writeln!(
                out,
                "{f:<24}{:<24}{:<8}{flags}",
                b.addr.to_string(),
                b.weight
            )?;
        }
    }
    Ok(())
}

/// `0x0`, or the flags in hex and by name: `0x6 external,local`.
pub fn flag_names(bits: u32) -> String {
    let names: Vec<&str> = [
        (flags::GATEWAY, "gateway"),
        (flags::EXTERNAL, "external"),
        (flags::LOCAL, "local"),
    ]
    .iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        format!("{bits:#x}")
    } else {
        format!("{bits:#x} {}", names.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::service::{BackendEntry, Frontend, Protocol};

    use super::*;

    #[test]
    fn print_entries_lists_frontends_backends_and_empty_services() {
        let entries = vec![
            ServiceEntry {
                frontend: Frontend::new("10.96.0.10:80".parse().unwrap(), Protocol::Tcp),
                flags: 0,
                backends: vec![
                    BackendEntry {
                        addr: "10.0.0.1:8080".parse().unwrap(),
                        weight: 1,
                    },
                    BackendEntry {
                        addr: "10.0.0.2:8080".parse().unwrap(),
                        weight: 3,
                    },
                ],
            },
            ServiceEntry {
                frontend: Frontend::new("10.96.0.11:53".parse().unwrap(), Protocol::Udp),
                flags: 0,
                backends: vec![],
            },
        ];
        let mut out = Vec::new();
        print_entries(&entries, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(
            lines[1],
            "10.96.0.10:80/TCP       10.0.0.1:8080           1       0x0"
        );
        assert_eq!(
            lines[2],
            "                        10.0.0.2:8080           3"
        );
        assert_eq!(
            lines[3],
            "10.96.0.11:53/UDP       (none: refuses connections)"
        );
    }

    #[test]
    fn flags_are_printed_by_name() {
        assert_eq!(flag_names(0), "0x0");
        assert_eq!(
            flag_names(flags::EXTERNAL | flags::LOCAL),
            "0x6 external,local"
        );
        assert_eq!(flag_names(flags::GATEWAY), "0x1 gateway");
    }

    #[test]
    fn entries_from_dir_reads_services_and_slices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yaml"),
            r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.0.0.1]
"#,
        )
        .unwrap();
        let entries = entries_from_dir(dir.path());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].frontend.to_string(), "10.96.0.10:80/TCP");
        assert_eq!(
            entries[0].backends[0].addr,
            "10.0.0.1:8080".parse().unwrap()
        );
    }
}
