//! The API server gone for a while (issue 10, Faults): the proxy keeps serving its
//! config the whole time, the operator stays up and retries its watches with backoff
//! (a few warnings per watch, not a hot loop), and once the server is back a route
//! change converges: the proxy serves it and its status is written.
//!
//! Whole binaries, as in fault_restart.rs; the test API server stops serving (port
//! closed, watches cut) and comes back on the same port with the same objects.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::collections::BTreeMap;
use std::time::Duration;

use binaries::{Cluster, Load, Node, WAIT, field, proxy, scenario};
use kube_common::{route_accepted, tagged_route, wait_programmed};
use portico_testkit::eventually;

/// How long the API server stays away.
const OUTAGE: Duration = Duration::from_secs(20);
/// A watch retried at least this often during the outage would not be backing off:
/// kube's default backoff (0.8 s doubling to 30 s, with jitter) retries about 5 times
/// in 20 s.
const MAX_RETRIES_PER_WATCH: usize = 15;
/// Convergence after the outage includes the last backoff sleep (up to 30 s).
const CONVERGE: Duration = Duration::from_secs(60);

/// Watch-retry warnings in `lines`, per watch (its `watch=` or `kind=` field).
fn retries_per_watch(lines: &[String]) -> BTreeMap<String, usize> {
    let mut per_watch = BTreeMap::new();
    for line in lines
        .iter()
        .filter(|l| l.contains("watch failed, retrying"))
    {
        let watch = field(line, "watch")
            .or_else(|| field(line, "kind"))
            .unwrap_or("?");
        *per_watch.entry(watch.to_owned()).or_default() += 1;
    }
    per_watch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_serve_through_an_api_server_outage_and_changes_converge_after() {
    let Some(node) = Node::new("fault_apiserver") else {
        return;
    };
    let mut cluster = Cluster::start().await;
    let _pod = node.echo("echo-0", "apps", "echo");
    cluster.apply(&scenario(&node));
    let mut operator = cluster
        .operator("operator-a", (node.host_ip, 0).into())
        .await;
    let _proxy = proxy(&node, "node-1", operator.config_addr);
    let port = cluster.proxy_port("web", 80).await;
    wait_programmed(&cluster.client, "apps", "web", WAIT).await;
    eventually(WAIT, || async {
        (route_accepted(&cluster.client).await? == ("True".to_owned(), Some(1))).then_some(())
    })
    .await
    .unwrap();

    let mut load = Load::start((node.node_ip, port).into(), Duration::from_millis(10));
    load.succeeded(50).await;

    // The outage: the port refuses connections, open watches are cut.
    let before = operator.process.lines().len();
    cluster.server.stop_serving().await;
    tokio::time::sleep(OUTAGE).await;
    load.succeeded(20).await;
    let during: Vec<String> = operator.process.lines()[before..]
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert!(
        operator.process.wait_exit(Duration::ZERO).await.is_err(),
        "the operator exited during the outage:\n{}",
        operator.process.output()
    );
    let retries = retries_per_watch(&during);
    assert!(
        !retries.is_empty(),
        "no watch retry logged during the outage:\n{}",
        during.join("\n")
    );
    assert!(
        retries.values().all(|n| *n <= MAX_RETRIES_PER_WATCH),
        "watches retried without backing off: {retries:?}"
    );

    // Back, with a change made after: the proxy and the status follow.
    cluster.server.resume_serving().await.unwrap();
    cluster.apply(&tagged_route("X-Portico-Outage", "over"));
    load.shows_within("x-portico-outage: over", CONVERGE).await;
    eventually(CONVERGE, || async {
        (route_accepted(&cluster.client).await? == ("True".to_owned(), Some(2))).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "route status not written: {e}\n{}",
            operator.process.output()
        )
    });
    load.succeeded(20).await;

    let report = load.finish().await;
    eprintln!(
        "API server outage of {OUTAGE:?}: {} answers, {} failures; watch retries {retries:?}",
        report.ok,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        report.failures
    );
}
