//! The status writer on its own, fed a snapshot older than the API server's objects: the
//! resourceVersion precondition turns its first write into a conflict, and the retry
//! merges with what another controller wrote meanwhile instead of erasing it.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_common::*;
use portico_api::gateway::HttpRoute;
use portico_api::names;
use portico_operator::kube::{KubeProvider, ProviderConfig};
use portico_operator::status::{FIELD_MANAGER, StatusWriter};
use portico_testkit::eventually;
use portico_translate::Options;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_snapshot_conflicts_and_keeps_the_other_controllers_parent() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();

    // The provider alone: snapshots, and no writer of its own.
    let provider = KubeProvider::spawn(
        client.clone(),
        ProviderConfig {
            namespace: None,
            debounce: Duration::from_millis(10),
            listener_sets: true,
            options: Options::default(),
        },
        shutdown.clone(),
    );
    let snapshot = eventually(Duration::from_secs(20), || async {
        provider.snapshots.borrow().clone()
    })
    .await
    .unwrap();
    assert_eq!(snapshot.inputs.http_routes.len(), 1);

    // Another controller reports on the route after the snapshot was taken.
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), "apps");
    let foreign = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
        "controllerName": "example.com/other-controller",
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1
        }]
    });
    routes
        .patch_status(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"parents": [foreign]}})),
        )
        .await
        .unwrap();

    let mut writer = StatusWriter::new(
        client.clone(),
        FIELD_MANAGER.to_owned(),
        names::CONTROLLER_NAME.to_owned(),
    );
    let counters = writer.counters();
    let (_leader_tx, leader) = watch::channel(true);
    let failed = writer.write(&snapshot, &leader).await;
    assert_eq!(failed, 0);
    assert!(counters.conflicts() >= 1, "no conflict: {counters:?}");

    let parents = routes
        .get_status("echo")
        .await
        .unwrap()
        .status
        .unwrap()
        .parents;
    let controllers: Vec<&str> = parents.iter().map(|p| p.controller_name.as_str()).collect();
    assert_eq!(
        controllers,
        ["example.com/other-controller", names::CONTROLLER_NAME]
    );

    shutdown.cancel();
}
