//! Start-up without the Gateway API CRDs (reference scenario S1): the operator names the
//! missing ones, keeps checking, and gets going once they are installed.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube_common::*;
use portico_api::names::condition;
use portico_operator::kube::{CrdError, check_crds, required_crds};
use portico_operator::run;
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crds_are_named_and_waited_for() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();

    let err = check_crds(&client).await.unwrap_err();
    let CrdError::Missing { missing } = &err else {
        panic!("expected missing CRDs, got {err}");
    };
    assert_eq!(missing, &required_crds());
    let shown = err.to_string();
    for name in [
        "gatewayclasses.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "referencegrants.gateway.networking.k8s.io",
    ] {
        assert!(shown.contains(name), "{name} not named in: {shown}");
    }

    // The operator keeps waiting rather than exiting.
    let shutdown = CancellationToken::new();
    let operator = tokio::spawn(run(client.clone(), config("waiting"), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!operator.is_finished(), "the operator gave up without CRDs");

    // Installing them is enough: the operator starts and writes statuses.
    server.apply_crds_from(crds_dir()).unwrap();
    assert!(check_crds(&client).await.is_ok());
    apply(&server, SCENARIO);
    eventually(Duration::from_secs(30), || async {
        let c = class_conditions(&client, "portico").await?;
        let (status, _, _) = condition(&c, condition::ACCEPTED)?;
        (status == "True").then_some(())
    })
    .await
    .unwrap();

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn only_some_crds_missing_names_only_those() {
    let server = TestApiServer::start().await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    for file in [
        "gateway.networking.k8s.io_gatewayclasses.yaml",
        "gateway.networking.k8s.io_gateways.yaml",
    ] {
        std::fs::copy(crds_dir().join(file), dir.path().join(file)).unwrap();
    }
    server.apply_crds_from(dir.path()).unwrap();
    let err = check_crds(&server.client().unwrap()).await.unwrap_err();
    let CrdError::Missing { missing } = err else {
        panic!("expected missing CRDs");
    };
    let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "httproutes.gateway.networking.k8s.io",
            "referencegrants.gateway.networking.k8s.io"
        ]
    );
}
