//! `portico lb list` against maps the node agent's datapath really pinned: the services
//! a test programs are what the command prints. Privileged (root and BPF); elsewhere the
//! test says loudly that it was skipped.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use portico_agent::{BackendEntry, Datapath, Frontend, Protocol, ServiceEntry};

const PORTICO: &str = env!("CARGO_BIN_EXE_portico");
const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";

/// A cgroup and a pin directory of this test's own, removed on drop.
struct Node {
    cgroup: PathBuf,
    pin_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = portico_agent::remove_pinned(&self.pin_dir);
        let _ = fs::remove_dir(&self.cgroup);
    }
}

fn node(test: &str) -> Option<Node> {
    let why = if !nix::unistd::Uid::effective().is_root() {
        Some("not root".to_owned())
    } else if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        Some(format!("no cgroup v2 hierarchy at {CGROUP_ROOT}"))
    } else {
        portico_agent::bpffs::ensure_mounted(Path::new(BPFFS))
            .err()
            .map(|e| format!("no bpffs at {BPFFS}: {e}"))
    };
    if let Some(why) = why {
        eprintln!("SKIPPED: {test}: needs root and BPF ({why})");
        return None;
    }
    let id = format!("portico-lb-list-{}", std::process::id());
    let node = Node {
        cgroup: Path::new(CGROUP_ROOT).join(&id),
        pin_dir: Path::new(BPFFS).join(&id),
    };
    fs::create_dir(&node.cgroup).unwrap();
    Some(node)
}

#[test]
fn lb_list_prints_the_pinned_services() {
    let Some(node) = node("lb_list_prints_the_pinned_services") else {
        return;
    };
    let mut datapath = Datapath::load(&node.pin_dir, &node.cgroup).unwrap();
    let services = [
        ServiceEntry {
            frontend: Frontend::new("10.124.0.10:80".parse().unwrap(), Protocol::Tcp),
            flags: 0,
            backends: vec![
                BackendEntry {
                    addr: "10.124.1.1:8080".parse().unwrap(),
                    weight: 1,
                },
                BackendEntry {
                    addr: "10.124.1.2:8080".parse().unwrap(),
                    weight: 3,
                },
            ],
        },
        ServiceEntry {
            frontend: Frontend::new("10.124.0.11:53".parse().unwrap(), Protocol::Udp),
            flags: 0,
            backends: vec![],
        },
    ];
    datapath.sync(&services).unwrap();
    // The agent is gone; the command reads what it pinned.
    drop(datapath);

    let out = Command::new(PORTICO)
        .args(["lb", "list", "--pin-dir"])
        .arg(&node.pin_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    for want in [
        "10.124.0.10:80/TCP      10.124.1.1:8080         1       0x0",
        "                        10.124.1.2:8080         3",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("10.124.0.11:53/UDP")),
        "{text}"
    );
}
