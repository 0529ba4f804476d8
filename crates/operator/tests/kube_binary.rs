//! `portico-operator` as a process, as a cluster runs it: flags, a kubeconfig file, the
//! log naming missing CRDs (reference scenario S1), statuses once they are installed,
//! and a clean exit on SIGTERM that releases the Lease.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::Api;
use kube_common::*;
use portico_api::k8s_openapi::api::coordination::v1::Lease;
use portico_api::names::condition;
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{Process, eventually};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_waits_for_crds_writes_statuses_and_releases_the_lease() {
    let server = TestApiServer::start().await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let kubeconfig = server.kubeconfig(dir.path().join("kubeconfig")).unwrap();

    let mut operator = Process::spawn(
        env!("CARGO_BIN_EXE_portico-operator"),
        [
            "--kubeconfig".as_ref(),
            kubeconfig.as_os_str(),
            "--identity".as_ref(),
            "binary".as_ref(),
            "--lease-namespace".as_ref(),
            "default".as_ref(),
            "--log".as_ref(),
            "info".as_ref(),
        ],
    )
    .unwrap();

    let line = operator
        .wait_for_line("waiting for Gateway API CRDs", WAIT)
        .await
        .unwrap();
    assert!(
        line.contains("httproutes.gateway.networking.k8s.io"),
        "{line}"
    );

    server.apply_crds_from(crds_dir()).unwrap();
    apply(&server, SCENARIO);
    let client = server.client().unwrap();
    eventually(WAIT, || async {
        let c = gateway_conditions(&client, "apps", "web").await?;
        let (status, _, _) = condition(&c, condition::ACCEPTED)?;
        (status == "True").then_some(())
    })
    .await
    .unwrap();

    operator.terminate().unwrap();
    let status = operator.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}: {}", operator.output());
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let holder = leases
        .get("portico-operator")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder, None);
}

#[tokio::test]
async fn help_names_every_flag_and_its_environment_variable() {
    let mut help = Process::spawn(env!("CARGO_BIN_EXE_portico-operator"), ["--help"]).unwrap();
    let status = help.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());
    // All of stdout: `output()` quotes only the last lines, and --help is longer.
    let text = help.stdout_lines().join("\n");
    for env in [
        "PORTICO_KUBECONFIG",
        "PORTICO_NAMESPACE",
        "PORTICO_CONTROLLER_NAME",
        "PORTICO_LEASE_NAME",
        "PORTICO_LEASE_NAMESPACE",
        "PORTICO_IDENTITY",
    ] {
        assert!(text.contains(env), "{env} missing from --help:\n{text}");
    }
}
