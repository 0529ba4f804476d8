//! Whole-binary test of `portico conformance run --target local-cluster`: the real
//! `portico` process starts the in-memory API server, `portico-operator` and
//! `portico-proxy` as processes, echo pods in a pod network namespace, and runs three
//! cases of e2e/cases through them: one HTTP, one gRPC, one TLS (passthrough).
//!
//! Privileged: the pod network needs root (CI runs as root); elsewhere the test says
//! SKIPPED loudly and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_testkit::{PodNetwork, Process};

/// Bound on the whole run: start-up, set-up and three cases.
const RUN_BOUND: Duration = Duration::from_secs(300);

const CASES: &[&str] = &[
    "HTTPRouteSimpleSameNamespace",
    "GRPCExactMethodMatching",
    "TLSRouteSimpleSameNamespace",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    repo().join("../shared/gateway-api")
}

/// The sibling binaries the target runs, built with this test's profile.
fn siblings_present() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_BIN_EXE_portico"))
        .parent()
        .unwrap()
        .to_owned();
    for bin in ["portico-echo", "portico-operator", "portico-proxy"] {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "{} missing: `cargo build --bin portico-echo --bin portico-operator --bin portico-proxy` first",
                dir.join(bin).display()
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn http_grpc_and_tls_cases_pass_against_operator_and_proxy_processes() {
    if let Some(why) = PodNetwork::unavailable() {
        eprintln!("SKIPPED: local-cluster conformance needs root for its pod network ({why})");
        return;
    }
    if !data().join("conformance").is_dir() {
        eprintln!(
            "SKIPPED: no Gateway API data at {} (the shared checkout)",
            data().display()
        );
        return;
    }
    siblings_present().unwrap();
    let cases = tempfile::tempdir().unwrap();
    for case in CASES {
        let name = format!("{case}.yaml");
        std::fs::copy(
            repo().join("e2e/cases").join(&name),
            cases.path().join(&name),
        )
        .unwrap();
    }
    let report = cases.path().join("report.yaml");
    let mut run = Process::spawn(
        env!("CARGO_BIN_EXE_portico"),
        [
            "conformance".as_ref(),
            "run".as_ref(),
            "--target".as_ref(),
            "local-cluster".as_ref(),
            "--cases".as_ref(),
            cases.path().as_os_str(),
            "--data".as_ref(),
            data().as_os_str(),
            "--preview-features".as_ref(),
            "TLSRoute".as_ref(),
            "--report".as_ref(),
            report.as_os_str(),
        ],
    )
    .unwrap();
    let status = run.wait_exit(RUN_BOUND).await.unwrap();
    let output = run.output();
    let stdout = run.stdout_lines();
    for case in CASES {
        assert!(
            stdout
                .iter()
                .any(|l| l.starts_with(&format!("PASS {case} "))),
            "{case} did not pass:\n{output}"
        );
    }
    assert!(
        stdout.iter().any(|l| l == "3 passed, 0 failed, 0 skipped"),
        "{output}"
    );
    assert!(status.success(), "{output}");
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.contains("ConformanceReport"), "{report}");
}
