//! Killing the operator mid-run (issue 5, acceptance): the proxy keeps serving its last
//! good config the whole time, a route changed while the operator was down reaches the
//! proxy and the route's status when it returns, and the Gateway's Service is the same
//! object (not recreated).
//!
//! Whole binaries: `portico-operator` on the host, `portico-proxy` and an echo pod on a
//! node (network namespace), the test API server as the cluster.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::time::Duration;

use binaries::{Cluster, Load, Node, WAIT, proxy, scenario};
use kube_common::{condition, gateway_conditions, route_accepted, tagged_route, wait_programmed};
use portico_api::names::condition;
use portico_testkit::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_while_the_operator_is_killed_and_status_converges_after() {
    let Some(node) = Node::new("fault_restart") else {
        return;
    };
    let cluster = Cluster::start().await;
    let _pod = node.echo("echo-0", "apps", "echo");
    cluster.apply(&scenario(&node));

    let operator = cluster
        .operator("operator-a", (node.host_ip, 0).into())
        .await;
    let config_addr = operator.config_addr;
    let _proxy = proxy(&node, "node-1", config_addr);
    let port = cluster.proxy_port("web", 80).await;
    let target = (node.node_ip, port).into();
    wait_programmed(&cluster.client, "apps", "web", WAIT).await;
    let uid = cluster.service_uid("web").await;

    // Traffic every 10 ms, each request on a new connection, from before the kill to
    // after the operator is back.
    let mut load = Load::start(target, Duration::from_millis(10));
    eventually(WAIT, || async { (load.report().ok > 0).then_some(()) })
        .await
        .unwrap();
    assert!(
        load.report().failures.is_empty(),
        "failures before the kill: {:?}",
        load.report().failures
    );
    let mut operator = operator;
    operator.process.kill().await;

    // While it is down: the proxy keeps answering, and the route changes.
    load.succeeded(50).await;
    cluster.apply(&tagged_route("X-Portico-Restart", "after"));
    load.succeeded(50).await;
    assert!(load.report().last_headers.is_empty());

    // A new replica (as a Deployment would start it) on the same Service address.
    let _operator = cluster.operator("operator-b", config_addr).await;
    load.shows("x-portico-restart: after").await;
    eventually(WAIT, || async {
        (route_accepted(&cluster.client).await? == ("True".to_owned(), Some(2))).then_some(())
    })
    .await
    .unwrap();
    eventually(WAIT, || async {
        let c = gateway_conditions(&cluster.client, "apps", "web").await?;
        let (status, _, generation) = condition(&c, condition::PROGRAMMED)?;
        (status == "True" && generation == Some(1)).then_some(())
    })
    .await
    .unwrap();
    load.succeeded(20).await;

    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        report.failures
    );
    assert_eq!(
        cluster.service_uid("web").await,
        uid,
        "the Service was recreated"
    );
}
