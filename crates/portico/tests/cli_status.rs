//! `portico dev-cluster`, then `portico status --wait` and `portico config view` against
//! it; killing the proxy makes `status` report the error and exit 1. Needs root (the pod
//! network); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use portico_testkit::{PodNetwork, Process};

fn portico() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(portico())
        .args(args)
        .output()
        .expect("portico runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_config_view_against_dev_cluster() {
    if let Some(why) = PodNetwork::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let ready = dir.path().join("ready.json");
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/gateway-api/crds/experimental"
    );
    let cluster = Process::spawn(
        portico(),
        [
            "dev-cluster",
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
            "--crds",
            crds,
        ],
    )
    .unwrap();
    cluster
        .wait_for_line("dev cluster ready", Duration::from_secs(180))
        .await
        .unwrap();
    let kc = kubeconfig.to_str().unwrap();
    let (code, out) = run(&["status", "--wait", "--timeout", "120s", "--kubeconfig", kc]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Operator:           OK"), "{out}");
    assert!(out.contains("Proxy:              OK"), "{out}");
    assert!(out.contains("Cert-sync:          OK"), "{out}");
    assert!(
        out.contains("DaemonSet           portico-proxy           Desired: 1, Ready: 1/1"),
        "{out}"
    );
    assert!(out.contains("Proxies connected:  1"), "{out}");
    assert!(out.contains("last ACK"), "{out}");

    let (code, out) = run(&["config", "view", "--kubeconfig", kc]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("enable-gateway-api ") && l.ends_with("true")),
        "{out}"
    );

    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let pid = info["pids"]["portico-proxy"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (code, out) = run(&["status", "--wait", "--timeout", "1s", "--kubeconfig", kc]);
    let mut last = (code, out);
    for _ in 0..60 {
        if last.0 != 0
            && last
                .1
                .contains("DaemonSet portico-proxy: 0 of 1 pods ready")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = run(&["status", "--kubeconfig", kc]);
    }
    assert_ne!(last.0, 0, "{}", last.1);
    assert!(
        last.1
            .contains("DaemonSet portico-proxy: 0 of 1 pods ready"),
        "{}",
        last.1
    );
    cluster.stop(Duration::from_secs(30)).await.unwrap();
}
