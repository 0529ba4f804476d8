//! `portico connectivity test` against `portico dev-cluster`: every check passes (the
//! two-node one skipped with its reason), the namespace is gone afterwards; with the
//! proxy killed, a second run exits 1 naming the Gateway checks. Needs root (the pod
//! network); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dev_cluster;

use std::process::Command;
use std::time::Duration;

use dev_cluster::{DevCluster, portico};
use portico_api::k8s_openapi::api::core::v1::Namespace;
use portico_api::kube::api::Api;
use portico_testkit::{PodNetwork, eventually};

/// Runs `portico connectivity test` and returns its exit code and stdout.
fn connectivity_test(kubeconfig: &str, namespace: &str, timeout: &str) -> (i32, String) {
    let out = Command::new(portico())
        .args([
            "connectivity",
            "test",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--timeout",
            timeout,
        ])
        .output()
        .expect("portico runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

/// The summary line of `check` (`  [PASS] <check>: ...`).
fn summary_line<'a>(out: &'a str, mark: &str, check: &str) -> Option<&'a str> {
    let prefix = format!("[{mark}] {check}: ");
    out.lines().find(|l| l.trim_start().starts_with(&prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn connectivity_test_against_dev_cluster() {
    if let Some(why) = PodNetwork::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let cluster = DevCluster::start().await;
    let kc = cluster.kc();

    let (code, out) = connectivity_test(kc, "portico-test", "120s");
    assert_eq!(code, 0, "{out}\n{}", cluster.process.output());
    for check in [
        "pod -> ClusterIP (same node)",
        "node -> NodePort",
        "outside -> Gateway HTTP",
        "outside -> Gateway HTTPS",
        "outside -> Gateway split",
        "outside -> Gateway header filter",
    ] {
        assert!(
            summary_line(&out, "PASS", check).is_some(),
            "{check} did not pass:\n{out}"
        );
    }
    let skipped = summary_line(&out, "SKIP", "pod -> ClusterIP (other node)")
        .unwrap_or_else(|| panic!("the two-node check is not skipped:\n{out}"));
    assert!(skipped.contains("needs two nodes"), "{skipped}");
    assert!(
        out.contains("All 6 checks passed (1 skipped): connectivity test successful"),
        "{out}"
    );

    // The test's namespace goes away (the API server's namespace finalizer empties it).
    let namespaces: Api<Namespace> = Api::all(cluster.client().await);
    eventually(Duration::from_secs(60), || {
        let namespaces = namespaces.clone();
        async move {
            match namespaces.get_opt("portico-test").await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("namespace portico-test still exists".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap();

    // Without the proxy, the Gateway checks fail and the run says so.
    cluster.kill("portico-proxy");
    let (code, out) = connectivity_test(kc, "portico-test-broken", "20s");
    assert_ne!(code, 0, "{out}");
    assert!(
        summary_line(&out, "FAIL", "outside -> Gateway HTTP").is_some(),
        "the Gateway HTTP check did not fail:\n{out}"
    );
    assert!(
        summary_line(&out, "PASS", "pod -> ClusterIP (same node)").is_some(),
        "pod traffic does not need the proxy:\n{out}"
    );
    let last = out
        .lines()
        .rfind(|l| l.contains("checks failed"))
        .unwrap_or("");
    assert!(last.contains("outside -> Gateway HTTP"), "{out}");

    cluster.stop().await;
}
