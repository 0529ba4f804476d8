//! Two operator replicas against one API server: only the Lease holder writes statuses;
//! when it dies the other takes over within the Lease duration, and when it stops
//! cleanly it hands over at once.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::Api;
use kube_common::*;
use portico_api::k8s_openapi::api::coordination::v1::Lease;
use portico_api::names::condition;
use portico_operator::{Operator, start};
use portico_testkit::eventually;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// Which of the two leads, once exactly one does.
async fn sole_leader(a: &Operator, b: &Operator) -> Option<bool> {
    match (*a.leader.borrow(), *b.leader.borrow()) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

async fn lease_holder(client: &kube::Client) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    api.get("portico-test").await.ok()?.spec?.holder_identity
}

async fn gateway_generation_written(client: &kube::Client, generation: i64) -> Option<()> {
    let conditions = gateway_conditions(client, "apps", "web").await?;
    let (status, _, observed) = condition(&conditions, condition::ACCEPTED)?;
    (status == "True" && observed == Some(generation)).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_dead_leader_is_replaced() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();

    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = start(client.clone(), config("replica-a"), stop_a.clone())
        .await
        .unwrap()
        .unwrap();
    let b = start(client.clone(), config("replica-b"), stop_b.clone())
        .await
        .unwrap()
        .unwrap();

    let a_leads = eventually(WAIT, || sole_leader(&a, &b)).await.unwrap();
    let (mut leader, follower, leader_id, follower_stop) = if a_leads {
        (a, b, "replica-a", stop_b)
    } else {
        (b, a, "replica-b", stop_a)
    };
    assert_eq!(lease_holder(&client).await.as_deref(), Some(leader_id));

    eventually(WAIT, || gateway_generation_written(&client, 1))
        .await
        .unwrap();
    assert!(leader.status_counters.patched() > 0);
    assert_eq!(follower.status_counters.patched(), 0);
    // The follower translates all the same: it is ready to take over.
    eventually(WAIT, || async {
        follower.snapshots.borrow().as_ref().map(drop)
    })
    .await
    .unwrap();

    // The leader dies without releasing the Lease.
    leader.abort();
    let died = Instant::now();
    eventually(WAIT, || async { follower.leader.borrow().then_some(()) })
        .await
        .unwrap();
    let handover = died.elapsed();
    // Lease duration 2 s, plus one retry period (0.2 s) to notice, plus slack.
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
    assert_ne!(lease_holder(&client).await.as_deref(), Some(leader_id));

    // The new leader writes what changes from now on.
    apply(
        &server,
        &scenario_doc("Gateway").replace("      team: web\n", "      team: web-2\n"),
    );
    eventually(WAIT, || gateway_generation_written(&client, 2))
        .await
        .unwrap();
    // The write is seen on the API server a moment before its response is counted.
    eventually(WAIT, || async {
        (follower.status_counters.patched() > 0).then_some(())
    })
    .await
    .unwrap();

    follower_stop.cancel();
    follower.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopping_cleanly_hands_over_at_once() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();

    // A Lease so long that only a release explains a quick handover.
    let long = |id: &str| {
        let mut c = config(id);
        c.lease_duration = Duration::from_secs(60);
        c
    };
    let stop_first = CancellationToken::new();
    let first = start(client.clone(), long("first"), stop_first.clone())
        .await
        .unwrap()
        .unwrap();
    eventually(WAIT, || async { first.leader.borrow().then_some(()) })
        .await
        .unwrap();
    let stop_second = CancellationToken::new();
    let second = start(client.clone(), long("second"), stop_second.clone())
        .await
        .unwrap()
        .unwrap();

    stop_first.cancel();
    first.wait().await;
    let stopped = Instant::now();
    eventually(WAIT, || async { second.leader.borrow().then_some(()) })
        .await
        .unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert_eq!(lease_holder(&client).await.as_deref(), Some("second"));

    stop_second.cancel();
    second.wait().await;
}
