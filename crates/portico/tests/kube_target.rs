//! `portico conformance run --target kube` against `portico dev-cluster` (an API
//! server, Portico's operator, cert-sync and proxy, a kubelet running echo pods in a
//! pod network): a few of e2e/cases pass, and in the same run a case with a wrong
//! expectation fails with the difference. Needs root (the pod network); skipped with a message otherwise.
//!
//! The data folder is the shared one but for its suite set-up, which waits for no
//! namespace: dev-cluster's kubelet mounts no Secret volumes, so the base manifests'
//! TLS backends (echo-basic given a certificate file) never become ready there, and
//! the set-up would spend its whole bound waiting for them. The cases here do not use
//! those backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_testkit::{PodNetwork, Process};

/// The cases run (HTTP route, header match, weighted split, TLS termination).
const CASES: &[&str] = &[
    "HTTPRouteSimpleSameNamespace",
    "HTTPRouteHeaderMatching",
    "HTTPRouteWeight",
    "HTTPRouteHTTPSListener",
];

fn portico() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api")
}

fn e2e_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/cases")
}

/// The shared data folder with a set-up that waits for no namespace (module doc).
fn data_folder(root: &Path) -> PathBuf {
    let data = root.join("data");
    let conformance = data.join("conformance");
    std::fs::create_dir_all(&conformance).unwrap();
    std::os::unix::fs::symlink(shared().join("crds"), data.join("crds")).unwrap();
    for dir in ["base", "tests"] {
        std::os::unix::fs::symlink(
            shared().join("conformance").join(dir),
            conformance.join(dir),
        )
        .unwrap();
    }
    let setup = std::fs::read_to_string(shared().join("conformance/setup.yaml")).unwrap();
    let mut setup: serde_yaml_ng::Value = serde_yaml_ng::from_str(&setup).unwrap();
    setup["gateway"]["namespaces_ready"] = serde_yaml_ng::Value::Sequence(Vec::new());
    std::fs::write(
        conformance.join("setup.yaml"),
        serde_yaml_ng::to_string(&setup).unwrap(),
    )
    .unwrap();
    data
}

/// Runs the cases of `cases` against the cluster of `kubeconfig`: (exit code, stdout).
async fn conformance(kubeconfig: &Path, cases: &Path, data: &Path) -> (i32, String) {
    let mut run = Process::spawn(
        portico(),
        [
            "conformance",
            "run",
            "--target",
            "kube",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    let status = run.wait_exit(Duration::from_secs(300)).await.unwrap();
    (status.code().unwrap_or(-1), run.stdout_lines().join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_pass_against_dev_cluster_and_a_wrong_expectation_fails() {
    if let Some(why) = PodNetwork::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let data = data_folder(dir.path());
    let cluster = Process::spawn(
        portico(),
        [
            "dev-cluster",
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
            "--crds",
            shared().join("crds/experimental").to_str().unwrap(),
        ],
    )
    .unwrap();
    cluster
        .wait_for_line("dev cluster ready", Duration::from_secs(180))
        .await
        .unwrap();

    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    for case in CASES {
        let file = format!("{case}.yaml");
        std::fs::copy(e2e_cases().join(&file), cases.join(&file)).unwrap();
    }
    // HTTPRouteSimpleSameNamespace expecting the other backend, under another name (a
    // case's name is its file's), with a short bound: it must fail, saying what it saw.
    let text =
        std::fs::read_to_string(e2e_cases().join("HTTPRouteSimpleSameNamespace.yaml")).unwrap();
    let right = "service: infra-backend-v1";
    assert!(text.contains(right), "{text}");
    let wrong = text
        .replace(
            "name: HTTPRouteSimpleSameNamespace",
            "name: WrongBackendExpected",
        )
        .replace(right, "service: infra-backend-v2")
        + "timeout_seconds: 20\n";
    std::fs::write(cases.join("WrongBackendExpected.yaml"), wrong).unwrap();

    let (code, out) = conformance(&kubeconfig, &cases, &data).await;
    let context = format!("{out}\n--- dev-cluster:\n{}", cluster.output());
    assert_eq!(code, 1, "{context}");
    for case in CASES {
        assert!(out.contains(&format!("PASS {case} (")), "{case}: {context}");
    }
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL WrongBackendExpected ("))
        .unwrap_or_else(|| panic!("no FAIL line: {context}"));
    assert!(
        line.contains("expected backend infra-backend-v2 got infra-backend-v1"),
        "{line}"
    );
    assert!(
        out.contains(&format!("{} passed, 1 failed, 0 skipped", CASES.len())),
        "{context}"
    );

    cluster.stop(Duration::from_secs(30)).await.unwrap();
}
