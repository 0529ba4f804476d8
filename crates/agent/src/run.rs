//! The agent binary's configuration and what `portico-agent run` does.
//!
//! ```text
//!   --from-dir DIR ──portico_operator::load_dir──> Services, EndpointSlices
//!       ──source::service_entries──> [ServiceEntry] ──Datapath::sync──> pinned maps
//! ```
//!
//! The programs and maps are pinned, so the datapath keeps balancing after the command
//! exits; running it again adopts the maps and changes only what differs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use portico_operator::{Object, load_dir};
use tracing::warn;

use crate::datapath::{Datapath, DatapathError, SyncStats};
use crate::service::ServiceEntry;
use crate::source::service_entries;
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
}

/// The service entries the manifests in `dir` describe; problems with files are logged
/// and the rest is used.
pub fn entries_from_dir(dir: &Path) -> Vec<ServiceEntry> {
    let loaded = load_dir(dir);
    for e in &loaded.errors {
        warn!(error = %e, "skipping a manifest");
    }
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for obj in loaded.files.into_values().flatten() {
        match obj.object {
            Object::Service(s) => services.push(s),
            Object::EndpointSlice(s) => slices.push(s),
            _ => {}
        }
    }
    service_entries(&services, &slices)
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
    let stats = dp.sync(&entries_from_dir(&cfg.from_dir))?;
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
                (frontend.as_str(), format!("{:#x}", e.flags))
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
