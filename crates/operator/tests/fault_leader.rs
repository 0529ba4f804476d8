//! Two `portico-operator` replicas (issue 5, acceptance): only the Lease holder patches
//! statuses; when it is killed (SIGKILL: no release) the other takes over once the Lease
//! expires, not before and not much later, and writes what changed after the kill.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::time::Duration;

use binaries::{Cluster, LEASE_RETRY, OperatorProcess, WAIT};
use kube::Api;
use kube_common::{SCENARIO, condition, gateway_conditions, scenario_doc};
use portico_api::k8s_openapi::api::coordination::v1::Lease;
use portico_api::names::condition;
use portico_testkit::eventually;
use tokio::time::Instant;

/// The Lease holder and the Lease duration it wrote.
async fn lease(client: &kube::Client) -> Option<(String, Duration)> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let spec = api.get("portico-operator").await.ok()?.spec?;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    Some((spec.holder_identity?, Duration::from_secs(seconds)))
}

async fn gateway_written(client: &kube::Client, generation: i64) -> Option<()> {
    let conditions = gateway_conditions(client, "apps", "web").await?;
    let (status, _, observed) = condition(&conditions, condition::ACCEPTED)?;
    (status == "True" && observed == Some(generation)).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_killed_leader_is_replaced_within_the_lease() {
    let cluster = Cluster::start().await;
    cluster.apply(SCENARIO);
    let any = "127.0.0.1:0".parse().unwrap();
    let a = cluster.operator("replica-a", any).await;
    let b = cluster.operator("replica-b", any).await;

    let (holder, duration) = eventually(WAIT, || lease(&cluster.client)).await.unwrap();
    let (mut leader, follower): (OperatorProcess, OperatorProcess) =
        if holder == a.identity { (a, b) } else { (b, a) };
    assert_eq!(holder, leader.identity);
    eventually(WAIT, || gateway_written(&cluster.client, 1))
        .await
        .unwrap();
    // Its log says so (read through a pipe: the line may come after the status is seen).
    eventually(WAIT, || async {
        (leader.status_patches() > 0).then_some(())
    })
    .await
    .unwrap();
    // The follower watched and translated the same objects, and wrote nothing.
    assert_eq!(
        follower.status_patches(),
        0,
        "{}",
        follower.process.output()
    );
    assert_eq!(lease(&cluster.client).await.unwrap().0, leader.identity);

    leader.process.kill().await;
    let killed = Instant::now();
    eventually(WAIT, || async {
        let (holder, _) = lease(&cluster.client).await?;
        (holder == follower.identity).then_some(())
    })
    .await
    .unwrap();
    let handover = killed.elapsed();
    // The follower counts the Lease's duration from the last renewal it saw, which was
    // at most one retry period before the kill, and looks once per retry period: the
    // handover lands within [duration - retry, duration + retry], plus request time.
    assert!(
        handover + LEASE_RETRY >= duration,
        "took over after {handover:?}, before the {duration:?} Lease expired"
    );
    assert!(
        handover <= duration + LEASE_RETRY * 2 + Duration::from_secs(1),
        "took over after {handover:?}, the Lease lasts {duration:?}"
    );

    // A change made after the kill is written by the new leader.
    let before = follower.status_patches();
    cluster.apply(&scenario_doc("Gateway").replace("      team: web\n", "      team: web-2\n"));
    eventually(WAIT, || gateway_written(&cluster.client, 2))
        .await
        .unwrap();
    eventually(WAIT, || async {
        (follower.status_patches() > before).then_some(())
    })
    .await
    .unwrap();
}
