//! `portico-agent run` and `list` as an operator uses them: a folder of manifests in,
//! the datapath programmed, the maps printed. Privileged like the socket LB tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Lab, replies};

const AGENT: &str = env!("CARGO_BIN_EXE_portico-agent");

fn manifests(backend_port: Option<u16>) -> String {
    let endpoints = match backend_port {
        Some(_) => "endpoints:\n- addresses: [10.123.0.2]\n",
        None => "endpoints: []\n",
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 10.123.100.10
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {}, protocol: TCP}}]
{endpoints}"#,
        backend_port.unwrap_or(1)
    )
}

fn agent(lab: &Lab, args: &[&str], from_dir: Option<&Path>) -> String {
    let mut cmd = Command::new(AGENT);
    cmd.args(args).arg("--pin-dir").arg(&lab.pin_dir);
    if let Some(dir) = from_dir {
        cmd.arg("--cgroup")
            .arg(&lab.cgroup)
            .arg("--no-mount-bpffs")
            .arg("--from-dir")
            .arg(dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "portico-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn run_programs_a_folder_and_list_prints_it() {
    let Some(mut lab) = Lab::new("run_programs_a_folder_and_list_prints_it") else {
        return;
    };
    let backend = lab.tcp_backend("10.123.0.2", "web-0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifests(Some(backend.port()))).unwrap();

    let out = agent(&lab, &["run", "--once"], Some(dir.path()));
    assert!(
        out.contains("programmed: 1 added, 0 updated, 0 removed, 0 unchanged"),
        "{out}"
    );
    let listed = agent(&lab, &["list"], None);
    let row = format!("10.123.100.10:80/TCP    {backend:<24}1       0x0");
    assert!(listed.lines().any(|l| l.trim_end() == row), "{listed}");

    // The agent has exited; the pinned datapath still balances.
    let got = lab.probe(&["tcp", "10.123.100.10:80", "--count", "3"]);
    assert_eq!(replies(&got, "10.123.100.10:80"), ["web-0"; 3]);

    // The endpoint goes away: a second run updates the one service, which now refuses.
    std::fs::write(&file, manifests(None)).unwrap();
    let out = agent(&lab, &["run", "--once"], Some(dir.path()));
    assert!(out.contains("0 added, 1 updated, 0 removed"), "{out}");
    assert!(
        out.contains("10.123.100.10:80/TCP    (none: refuses connections)"),
        "{out}"
    );
    assert_eq!(
        lab.probe(&["tcp", "10.123.100.10:80"]),
        ["error kind=ConnectionRefused os=111"]
    );
}

#[test]
fn run_watches_the_folder_and_reprograms_on_change() {
    let Some(mut lab) = Lab::new("run_watches_the_folder_and_reprograms_on_change") else {
        return;
    };
    let backend = lab.tcp_backend("10.123.0.2", "web-0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifests(Some(backend.port()))).unwrap();
    let mut child = Command::new(AGENT)
        .arg("run")
        .arg("--pin-dir")
        .arg(&lab.pin_dir)
        .arg("--cgroup")
        .arg(&lab.cgroup)
        .arg("--no-mount-bpffs")
        .arg("--from-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded waits: the first state, then the change, each within 10 s.
    let wait_for = |want: &str| {
        let started = std::time::Instant::now();
        loop {
            let got = lab.probe(&["tcp", "10.123.100.10:80", "--timeout-ms", "300"]);
            if got.first().is_some_and(|l| l.contains(want)) {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "wanted {want}, got {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("reply=web-0");
    // The endpoint goes away while the agent runs: the file change alone reprograms it.
    std::fs::write(&file, manifests(None)).unwrap();
    wait_for("kind=ConnectionRefused");
    let _ = child.kill();
    let _ = child.wait();
}
