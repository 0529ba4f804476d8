//! Config updates, listener changes and shutdown, with requests in flight.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::ErrorKind,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use http::StatusCode;
use portico_api::config::v1 as pb;
use portico_proxy::ProxyError;
use support::*;

fn one_route(version: &str, cluster_name: &str, clusters: Vec<pb::Cluster>) -> pb::Config {
    config(
        version,
        vec![listener(
            "http",
            vec![any_host(vec![prefix_route(
                "r",
                "/",
                vec![to(cluster_name, 1)],
            )])],
        )],
        clusters,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_under_load_switches_within_a_second_without_failures() {
    // One backend per config version, so that a reply tells which config routed it.
    let names = ["a", "b", "c", "d"];
    let mut echoes = Vec::new();
    for name in names {
        echoes.push(Echo::start(name).await);
    }
    let clusters = || {
        names
            .iter()
            .zip(&echoes)
            .map(|(name, echo)| cluster(name, &[echo]))
            .collect::<Vec<_>>()
    };
    let proxy = start(one_route("v1", "a", clusters())).await;
    let addr = proxy.bound_addrs()["http"];

    // Four clients loop until told to stop, each recording (start, end, outcome).
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        let client = TestClient::http1();
        loops.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded in count and, by the stop flag, in time.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let outcome = match client.try_send(addr, "h", "/", &[]).await {
                    Ok(r) if r.status == StatusCode::OK => Ok(r.server()),
                    Ok(r) => Err(format!("status {}", r.status)),
                    Err(e) => Err(e.to_string()),
                };
                seen.push((started, outcome));
            }
            seen
        }));
    }

    let swaps = [("v2", "b"), ("v3", "c"), ("v4", "d")];
    let mut swapped_at = Vec::new();
    for (version, target) in swaps {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let summary = proxy
            .update(one_route(version, target, clusters()))
            .await
            .unwrap();
        assert!(summary.added.is_empty() && summary.removed.is_empty());
        swapped_at.push((Instant::now(), target));
        assert_eq!(proxy.version(), version);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for l in loops {
        for (started, outcome) in l.await.unwrap() {
            total += 1;
            let server = outcome.unwrap_or_else(|e| panic!("request failed: {e}"));
            // A request that started after an update returned is routed by that
            // config or a later one (it may have been accepted after the next swap):
            // the swap is visible at once, well within the required 1 s.
            if let Some((_, want)) = swapped_at.iter().rev().find(|(at, _)| started > *at) {
                assert!(
                    server.as_str() >= *want,
                    "a request started after the swap to {want} went to {server}"
                );
            }
        }
    }
    assert!(total > 100, "only {total} requests ran");
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_config_is_rejected_and_old_one_keeps_serving() {
    let a = Echo::start("a").await;
    let proxy = start(one_route("v1", "a", vec![cluster("a", &[&a])])).await;
    let addr = proxy.bound_addrs()["http"];

    let mut bad = one_route("v2", "a", vec![cluster("a", &[&a])]);
    bad.listeners[0].virtual_hosts[0].host_routes[0].routes[0].r#match = Some(pb::RouteMatch {
        path: Some(pb::PathMatch {
            kind: pb::path_match::Kind::Regex as i32,
            value: "/(unclosed".to_owned(),
        }),
        ..Default::default()
    });
    // A new listener in the same bad config must not be bound either.
    bad.listeners.push(listener("extra", vec![]));
    let err = proxy.update(bad).await.unwrap_err();
    let ProxyError::InvalidConfig { location, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(location, "r");
    assert!(err.to_string().contains("regex"), "{err}");

    assert_eq!(proxy.version(), "v1");
    assert_eq!(proxy.bound_addrs().keys().collect::<Vec<_>>(), ["http"]);
    let reply = TestClient::http1().get(addr, "h", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.server(), "a");

    // A bad initial config fails start.
    let mut bad_start = one_route("v1", "a", vec![cluster("a", &[&a])]);
    bad_start.clusters.clear();
    assert!(portico_proxy::start(options(), bad_start).await.is_err());
    proxy.shutdown().await;
}

#[tokio::test]
async fn removed_listener_stops_accepting_and_finishes_in_flight() {
    let a = Echo::start("a").await;
    let vhosts = || vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])];
    let both = config(
        "v1",
        vec![listener("keep", vhosts()), listener("drop", vhosts())],
        vec![cluster("a", &[&a])],
    );
    let proxy = start(both).await;
    let addrs = proxy.bound_addrs();
    let (keep, gone) = (addrs["keep"], addrs["drop"]);

    // A request in flight on the listener about to go.
    let client = TestClient::http1();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.get(gone, "h", "/?sleep_ms=500").await })
    };
    // Wait until the request reached the backend through the proxy.
    a.wait_received(1).await;

    let summary = proxy
        .update(config(
            "v2",
            vec![listener("keep", vhosts())],
            vec![cluster("a", &[&a])],
        ))
        .await
        .unwrap();
    assert_eq!(summary.removed, ["drop"]);
    assert!(summary.added.is_empty());
    assert_eq!(proxy.bound_addrs().keys().collect::<Vec<_>>(), ["keep"]);

    // The socket is closed when update returns.
    let err = tokio::net::TcpStream::connect(gone).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The in-flight request finished normally, and the kept listener serves.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(client.get(keep, "h", "/").await.status, StatusCode::OK);

    // Adding it back binds a new socket.
    let summary = proxy
        .update(config(
            "v3",
            vec![listener("keep", vhosts()), listener("drop", vhosts())],
            vec![cluster("a", &[&a])],
        ))
        .await
        .unwrap();
    assert_eq!(summary.added, ["drop"]);
    let back = proxy.bound_addrs()["drop"];
    assert_eq!(client.get(back, "h", "/").await.status, StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn port_in_use_is_reported_and_other_listener_serves() {
    let a = Echo::start("a").await;
    let occupier = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = occupier.local_addr().unwrap().port();
    let vhosts = || vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])];
    let cfg = config(
        "v1",
        vec![
            listener_on("busy", busy_port, vhosts()),
            listener("free", vhosts()),
        ],
        vec![cluster("a", &[&a])],
    );
    let proxy = start(cfg.clone()).await;

    let errors = proxy.listener_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].listener, "busy");
    assert_eq!(errors[0].addr.port(), busy_port);
    assert_eq!(errors[0].error.kind(), ErrorKind::AddrInUse);
    assert!(errors[0].to_string().contains("busy"), "{}", errors[0]);
    assert_eq!(proxy.bound_addrs().keys().collect::<Vec<_>>(), ["free"]);
    let free = proxy.bound_addrs()["free"];
    assert_eq!(
        TestClient::http1().get(free, "h", "/").await.status,
        StatusCode::OK
    );

    // Once the port is free, the next update binds it.
    drop(occupier);
    let summary = proxy.update(cfg).await.unwrap();
    assert_eq!(summary.added, ["busy"]);
    assert!(summary.listener_errors.is_empty() && proxy.listener_errors().is_empty());
    let busy = proxy.bound_addrs()["busy"];
    assert_eq!(busy.port(), busy_port);
    assert_eq!(
        TestClient::http1().get(busy, "h", "/").await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn ephemeral_ports_option_overrides_configured_ports() {
    let a = Echo::start("a").await;
    let occupier = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupier.local_addr().unwrap().port();
    let cfg = config(
        "v1",
        vec![listener_on(
            "http",
            taken,
            vec![any_host(vec![prefix_route("r", "/", vec![to("a", 1)])])],
        )],
        vec![cluster("a", &[&a])],
    );
    let options = portico_proxy::ProxyOptions {
        ephemeral_ports: true,
        ..options()
    };
    let proxy = portico_proxy::start(options, cfg).await.unwrap();
    assert!(proxy.listener_errors().is_empty());
    let addr = proxy.bound_addrs()["http"];
    assert_ne!(addr.port(), taken);
    assert_eq!(
        TestClient::http1().get(addr, "h", "/").await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_closes() {
    let a = Echo::start("a").await;
    let proxy = start(one_route("v1", "a", vec![cluster("a", &[&a])])).await;
    let addr = proxy.bound_addrs()["http"];
    let in_flight =
        tokio::spawn(async move { TestClient::http1().get(addr, "h", "/?sleep_ms=300").await });
    // Shut down while the request is held at the backend.
    a.wait_received(1).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), proxy.shutdown())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(in_flight.await.unwrap().status, StatusCode::OK);
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_handle_stops_accepting() {
    let a = Echo::start("a").await;
    let proxy = start(one_route("v1", "a", vec![cluster("a", &[&a])])).await;
    let addr = proxy.bound_addrs()["http"];
    drop(proxy);
    eventually(Duration::from_secs(5), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
}
