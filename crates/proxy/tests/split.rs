//! Weighted traffic splitting through the proxy: the 95/5 split of the reference
//! scenario over 10,000 requests.

#![allow(clippy::unwrap_used)]

mod support;

use futures::StreamExt;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_95_5_over_10000_requests() {
    let stable = Echo::start("stable").await;
    let canary = Echo::start("canary").await;
    let proxy = start(config(
        "v1",
        vec![listener(
            "http",
            vec![any_host(vec![prefix_route(
                "split",
                "/",
                vec![to("stable", 95), to("canary", 5)],
            )])],
        )],
        vec![cluster("stable", &[&stable]), cluster("canary", &[&canary])],
    ))
    .await;
    let addr = proxy.bound_addrs()["http"];
    let client = TestClient::http1();

    let servers: Vec<String> = futures::stream::iter(0..10_000)
        .map(|_| {
            let client = client.clone();
            async move { client.get(addr, "split.example.com", "/").await.server() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let canary_count = servers.iter().filter(|s| *s == "canary").count();
    let stable_count = servers.iter().filter(|s| *s == "stable").count();
    assert_eq!(stable_count + canary_count, 10_000);
    // Binomial(10000, 0.05) has a standard deviation of about 22: a 1% window is
    // more than four of them, so this fails only on a real skew.
    assert!(
        (9_400..=9_600).contains(&stable_count) && (400..=600).contains(&canary_count),
        "stable {stable_count}, canary {canary_count}"
    );
    proxy.shutdown().await;
}
