//! The HTTP helpers against an in-process echo backend.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Request, StatusCode, Version};
use http_body_util::Full;
use portico_echo::EchoReport;
use portico_testkit::{EchoBackend, HttpClient, HttpError, eventually, get, get_json};
use serde_json::Value;

#[tokio::test]
async fn echo_backend_answers_with_its_identity() {
    let backend = EchoBackend::start("echo-1-echo-server-abc-def", "echo", "echo-1-echo-server")
        .await
        .unwrap();
    assert!(backend.addr().ip().is_loopback());
    assert_ne!(backend.addr().port(), 0);

    let (status, report) = get_json::<EchoReport>(backend.addr(), None, "/x?y=1")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report.pod, backend.pod());
    assert_eq!(report.namespace, backend.namespace());
    assert_eq!(report.service, backend.service());
    assert_eq!(report.path, "/x?y=1");
    // Without a Host argument the target's authority is the Host.
    assert_eq!(report.host, backend.addr().to_string());
    backend.stop().await;
}

#[tokio::test]
async fn targets_may_be_urls_and_hosts_are_sent() {
    let backend = EchoBackend::start("p", "n", "s").await.unwrap();
    for target in [
        format!("http://{}", backend.addr()),
        format!("http://{}/", backend.addr()),
        format!("localhost:{}", backend.addr().port()),
    ] {
        let (status, headers, body) = get(&target, Some("foo.bar.com"), "/login").await.unwrap();
        assert_eq!(status, StatusCode::OK, "{target}");
        assert_eq!(headers["content-type"], "application/json");
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["host"], "foo.bar.com", "{target}");
        assert_eq!(json["path"], "/login");
    }
}

#[tokio::test]
async fn bad_targets_are_rejected_before_connecting() {
    for target in [
        "https://127.0.0.1:1",
        "http://127.0.0.1:1/path",
        "not a host",
    ] {
        let err = get(target, None, "/").await.unwrap_err();
        assert!(
            matches!(err, HttpError::InvalidTarget { .. }),
            "{target}: {err}"
        );
    }
}

#[tokio::test]
async fn h2c_client_sends_the_host_as_authority() {
    let backend = EchoBackend::start("p", "n", "s").await.unwrap();
    let client = HttpClient::h2c(backend.addr());
    let response = client
        .send(
            Request::get("/h2")
                .header("host", "grpc.example.com")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let report: EchoReport = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(report.proto, "HTTP/2.0");
    assert_eq!(report.host, "grpc.example.com");

    // Absolute URIs pick the authority themselves; the connection still goes to addr.
    let (status, report) = client
        .get_json::<EchoReport>(None, "http://abs.example.com/abs")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report.host, "abs.example.com");
    assert_eq!(report.path, "/abs");
}

#[tokio::test]
async fn non_json_bodies_are_reported_with_the_body() {
    let backend = EchoBackend::start("p", "n", "s").await.unwrap();
    // The echo's answer is JSON, but not a list.
    let err = get_json::<Vec<u8>>(backend.addr(), None, "/")
        .await
        .unwrap_err();
    match err {
        HttpError::Json { body, status, .. } => {
            assert_eq!(status, StatusCode::OK);
            assert!(body.contains("\"pod\""), "{body}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn a_stopped_backend_refuses_and_eventually_reports_the_last_error() {
    let backend = EchoBackend::start("p", "n", "s").await.unwrap();
    let addr = backend.addr();
    backend.stop().await;
    let err = eventually(Duration::from_millis(300), || get(addr, None, "/"))
        .await
        .unwrap_err();
    assert!(err.attempts >= 1);
    assert!(err.last_error.contains(&addr.to_string()), "{err}");
}
