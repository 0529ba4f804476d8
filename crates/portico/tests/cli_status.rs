//! `portico dev-cluster`, then `portico status --wait` and `portico config view` against
//! it; a Gateway shows Programmed with its address; a Gateway whose proxy port another
//! program holds on the proxy's node is NACKed by the proxy, and `status` shows the NACK
//! and exits 1; killing the proxy makes `status` report the error and exit 1. Needs root
//! (the pod network); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dev_cluster;

use std::process::Command;
use std::time::Duration;

use dev_cluster::{DevCluster, portico};
use portico_api::gateway::Gateway;
use portico_api::k8s_openapi::api::core::v1::Namespace;
use portico_api::kube::api::{Api, Patch, PatchParams, PostParams};
use portico_testkit::{PodNetwork, Process, eventually, next_proxy_port};

/// The namespace of the test's Gateways.
const NS: &str = "status-test";

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

fn gateway(name: &str) -> Gateway {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"gatewayClassName": "portico",
                 "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]},
    }))
    .unwrap()
}

/// `portico status` until `done` holds for (exit code, output); the last one.
async fn status_until(kc: &str, done: impl Fn(i32, &str) -> bool) -> (i32, String) {
    let mut last = run(&["status", "--kubeconfig", kc]);
    for _ in 0..120 {
        if done(last.0, &last.1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = run(&["status", "--kubeconfig", kc]);
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_config_view_against_dev_cluster() {
    if let Some(why) = PodNetwork::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let cluster = DevCluster::start().await;
    let kc = cluster.kc();
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

    // A Gateway: Programmed, with the address LB-IPAM gave its Service.
    let client = cluster.client().await;
    let namespace: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), NS);
    let apply = PatchParams::apply("cli-status-test").force();
    gateways
        .patch("web", &apply, &Patch::Apply(gateway("web")))
        .await
        .unwrap();
    let web_row = |out: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with("status-test/web "))
            .map(str::to_owned)
    };
    let (code, out) = status_until(kc, |code, out| {
        code == 0 && web_row(out).is_some_and(|r| r.contains("Programmed=True"))
    })
    .await;
    assert_eq!(code, 0, "{out}");
    let row = web_row(&out).unwrap_or_default();
    assert!(
        row.contains("Programmed=True") && row.contains("address 10.245."),
        "{out}"
    );

    // Another program holds the next Gateway's proxy port in the proxy's network
    // namespace: the proxy cannot bind it and NACKs the config.
    let port = next_proxy_port(&client, gateway("blocked"), 80)
        .await
        .unwrap();
    let netns = cluster.info["netns"].as_str().unwrap();
    let echo = portico().with_file_name("portico-echo");
    let holder = Process::spawn(
        "ip",
        [
            "netns".as_ref(),
            "exec".as_ref(),
            netns.as_ref(),
            echo.as_os_str(),
            "--listen".as_ref(),
            format!("0.0.0.0:{port}").as_ref(),
        ],
    )
    .unwrap();
    holder
        .wait_for_listen_addr(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", holder.output()));
    gateways
        .patch("blocked", &apply, &Patch::Apply(gateway("blocked")))
        .await
        .unwrap();
    let (code, out) = status_until(kc, |code, out| code != 0 && out.contains("last NACK")).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("last NACK"), "{out}");
    assert!(
        out.contains(&port.to_string()),
        "the NACK names the port: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("rejected config") && l.starts_with("Errors:")),
        "{out}"
    );
    let (_, blocked) = eventually(Duration::from_secs(30), || async move {
        let (code, out) = run(&["status", "--kubeconfig", kc]);
        out.lines()
            .find(|l| l.trim_start().starts_with("status-test/blocked "))
            .filter(|r| r.contains("Programmed=False (Invalid)"))
            .map(|r| (code, r.to_owned()))
            .ok_or(out)
    })
    .await
    .unwrap();
    assert!(blocked.contains("Programmed=False (Invalid)"), "{blocked}");
    holder.stop(Duration::from_secs(10)).await.unwrap();

    cluster.kill("portico-proxy");
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
    cluster.stop().await;
}
