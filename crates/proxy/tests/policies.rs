//! Route timeouts and retries over real sockets, against the cases of the upstream
//! conformance tests (httproute-timeout-request, -timeout-backend-request, -retry).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use portico_api::config::v1 as pb;
use support::*;

fn with_timeouts(name: &str, prefix: &str, request_ms: u64, backend_request_ms: u64) -> pb::Route {
    pb::Route {
        timeouts: Some(pb::Timeouts {
            request_ms,
            backend_request_ms,
        }),
        ..prefix_route(name, prefix, vec![to("a", 1)])
    }
}

fn with_retry(prefix: &str, cluster: &str, attempts: u32, codes: &[u32]) -> pb::Route {
    pb::Route {
        retry: Some(pb::RetryPolicy {
            attempts,
            codes: codes.to_vec(),
            backoff_ms: 10,
        }),
        ..prefix_route(prefix, prefix, vec![to(cluster, 1)])
    }
}

#[tokio::test]
async fn request_timeout_answers_504() {
    let a = Echo::start("a").await;
    let (proxy, addr) = start_on(
        80,
        vec![
            with_timeouts("timeout", "/request-timeout", 300, 0),
            // "0s" reaches the proxy as no timeout at all.
            prefix_route("no-timeout", "/disable-request-timeout", vec![to("a", 1)]),
        ],
        vec![cluster("a", &[&a])],
    )
    .await;
    let client = TestClient::http1();
    assert_eq!(
        client.get(addr, "h", "/request-timeout").await.status,
        StatusCode::OK
    );
    let started = Instant::now();
    let slow = client
        .get(addr, "h", "/request-timeout?sleep_ms=2000")
        .await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        client
            .get(addr, "h", "/disable-request-timeout?sleep_ms=500")
            .await
            .status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn backend_request_timeout_answers_504() {
    let a = Echo::start("a").await;
    let (proxy, addr) = start_on(
        80,
        vec![with_timeouts("timeout", "/backend-timeout", 0, 300)],
        vec![cluster("a", &[&a])],
    )
    .await;
    let client = TestClient::http1();
    assert_eq!(
        client.get(addr, "h", "/backend-timeout").await.status,
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(addr, "h", "/backend-timeout?sleep_ms=2000")
            .await
            .status,
        StatusCode::GATEWAY_TIMEOUT
    );
    proxy.shutdown().await;
}

/// httproute-retry: "succeeds after N retries" and "fails when required retries exceed
/// max attempts", with the backend's own status coming back.
#[tokio::test]
async fn retries_on_configured_codes_up_to_the_attempts() {
    /// (script of statuses, attempts, codes, status the client gets, requests the backend saw)
    type Case = (&'static [u16], u32, &'static [u32], u16, usize);
    let cases: [Case; 6] = [
        (&[500, 500], 3, &[500], 200, 3),
        (&[500, 500, 500, 500], 3, &[500], 500, 4),
        (&[503, 503], 3, &[500], 503, 1),
        (&[502], 2, &[500, 502, 503, 504], 200, 2),
        (&[504, 504, 504], 2, &[500, 502, 503, 504], 504, 3),
        (&[500], 1, &[], 500, 1),
    ];
    for (script, attempts, codes, want, requests) in cases {
        let backend = Scripted::start(script).await;
        let (proxy, addr) = start_on(
            80,
            vec![with_retry("/retry", "b", attempts, codes)],
            vec![backend.cluster("b")],
        )
        .await;
        let reply = TestClient::http1().get(addr, "h", "/retry").await;
        assert_eq!(
            reply.status.as_u16(),
            want,
            "{script:?} {attempts} {codes:?}"
        );
        assert_eq!(
            backend.received(),
            requests,
            "{script:?} {attempts} {codes:?}"
        );
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_retried_request_sends_its_body_again() {
    let backend = Scripted::start(&[500]).await;
    let (proxy, addr) = start_on(
        80,
        vec![with_retry("/retry", "b", 1, &[500])],
        vec![backend.cluster("b")],
    )
    .await;
    let reply = TestClient::http1()
        .request("PUT", addr, "h", "/retry", &[], "the body")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The scripted backend answers with the body it read.
    assert_eq!(reply.body, "the body");
    assert_eq!(backend.received(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn attempts_that_time_out_are_retried_within_the_request_timeout() {
    let stuck = BlackHole::start().await;
    let (proxy, addr) = start_on(
        80,
        vec![pb::Route {
            timeouts: Some(pb::Timeouts {
                request_ms: 2_000,
                backend_request_ms: 200,
            }),
            ..with_retry("/retry", "stuck", 2, &[])
        }],
        vec![stuck.cluster("stuck")],
    )
    .await;
    let started = Instant::now();
    let reply = TestClient::http1().get(addr, "h", "/retry").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    // Three attempts of 200ms and two short backoffs, not the 2s request timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stuck.accepted(), 3);
    proxy.shutdown().await;
}
