//! The echo server in-process on 127.0.0.1:0, spoken to over HTTP/1.1 and h2c.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_echo::{EchoConfig, EchoReport, EchoServer, Identity, serve};
use portico_testkit::{HttpClient, eventually};
use serde_json::Value;
use tokio::net::TcpStream;

const POD: &str = "echo-1-echo-server-fd88497d-w6sgn";
const BOUND: Duration = Duration::from_secs(10);

async fn start(drain_timeout: Duration) -> EchoServer {
    serve(EchoConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: Identity::new(POD, "echo", "echo-1-echo-server"),
        drain_timeout,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn http1_answer_describes_the_request() {
    let server = start(BOUND).await;
    let client = HttpClient::http1(server.local_addr());
    let request = Request::get("/req-header-add?x=1")
        .header("host", "echo.example.com")
        .header("foo", "bar")
        .header("x-forwarded-for", "81.220.234.254")
        .body(Full::default())
        .unwrap();
    let response = client.send(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");

    let report: EchoReport = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(report.path, "/req-header-add?x=1");
    assert_eq!(report.host, "echo.example.com");
    assert_eq!(report.method, "GET");
    assert_eq!(report.proto, "HTTP/1.1");
    assert_eq!(report.headers["Foo"], ["bar"]);
    assert_eq!(report.headers["X-Forwarded-For"], ["81.220.234.254"]);
    assert_eq!(report.pod, POD);
    assert_eq!(report.namespace, "echo");
    assert_eq!(report.service, "echo-1-echo-server");
    assert!(
        report.remote_addr.starts_with("127.0.0.1:"),
        "{}",
        report.remote_addr
    );

    // The reference scenario's reads: `jq -r .environment.HOSTNAME`, `jq .request.headers`.
    let json: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(json["environment"]["HOSTNAME"], POD);
    assert_eq!(json["request"]["headers"]["foo"], "bar");
    assert_eq!(json["request"]["headers"]["host"], "echo.example.com");
    assert_eq!(json["request"]["path"], "/req-header-add");
    assert_eq!(json["request"]["query"]["x"], "1");

    server.shutdown().await;
}

#[tokio::test]
async fn h2c_answer_reports_http2_and_the_authority() {
    let server = start(BOUND).await;
    let client = HttpClient::h2c(server.local_addr());
    let request = Request::get("/grpc-ish")
        .header("host", "foo.example.com")
        .header("version", "2")
        .body(Full::default())
        .unwrap();
    let response = client.send(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let report: EchoReport = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(report.proto, "HTTP/2.0");
    assert_eq!(report.host, "foo.example.com");
    assert_eq!(report.path, "/grpc-ish");
    assert_eq!(report.headers["Version"], ["2"]);
    assert_eq!(report.request.headers["host"], "foo.example.com");
    server.shutdown().await;
}

#[tokio::test]
async fn x_echo_set_header_sets_response_headers() {
    let server = start(BOUND).await;
    for client in [
        HttpClient::http1(server.local_addr()),
        HttpClient::h2c(server.local_addr()),
    ] {
        let request = Request::get("/")
            .header(
                "x-echo-set-header",
                "X-Foo: value1,Replace-Header:Tobe-Replaced",
            )
            .body(Full::default())
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.headers()["x-foo"], "value1");
        assert_eq!(response.headers()["replace-header"], "Tobe-Replaced");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn subscribers_see_every_request_in_order() {
    let server = start(BOUND).await;
    let mut requests = server.subscribe_requests();
    let client = HttpClient::http1(server.local_addr());
    for path in ["/first?id=1", "/second"] {
        let (status, _, _) = client.get(Some("mirror.example.com"), path).await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let first = requests.recv().await.unwrap();
    assert_eq!(first.path, "/first?id=1");
    assert_eq!(first.method, "GET");
    assert_eq!(first.host, "mirror.example.com");
    assert_eq!(requests.recv().await.unwrap().path, "/second");
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_are_counted_and_small_ones_echoed() {
    let server = start(BOUND).await;
    let client = HttpClient::http1(server.local_addr());

    let large = Request::post("/upload")
        .body(Full::new(Bytes::from(vec![b'a'; 1_000_000])))
        .unwrap();
    let report: EchoReport =
        serde_json::from_slice(client.send(large).await.unwrap().body()).unwrap();
    assert_eq!(report.method, "POST");
    assert_eq!(report.request.body_length, 1_000_000);
    assert_eq!(report.request.body, None);

    let small = Request::put("/")
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    let report: EchoReport =
        serde_json::from_slice(client.send(small).await.unwrap().body()).unwrap();
    assert_eq!(report.request.body_length, 5);
    assert_eq!(report.request.body.as_deref(), Some("hello"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_without_waiting_for_the_drain_bound() {
    // A drain bound far above the test's own: shutdown must finish because the idle
    // keep-alive connection is closed gracefully, not because the bound ran out.
    let server = start(Duration::from_secs(600)).await;
    let addr = server.local_addr();
    let client = HttpClient::http1(addr);
    let (status, _, _) = client.get(None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    tokio::time::timeout(BOUND, server.shutdown())
        .await
        .expect("shutdown waited for an idle connection");
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let server = start(BOUND).await;
    let addr = server.local_addr();
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);

    // Request A: headers sent, body still open.
    let (mut body_tx, body) = Channel::<Bytes>::new(4);
    let slow = Request::post("http://echo.example.com/slow")
        .body(body)
        .unwrap();
    let slow = tokio::spawn(sender.send_request(slow));
    body_tx
        .send_data(Bytes::from_static(b"first "))
        .await
        .unwrap();

    // Request B on the same connection: h2 stream ids only grow, so A's HEADERS went
    // out first; B's answer proves the server has opened A's stream.
    sender.ready().await.unwrap();
    let fast = Request::get("http://echo.example.com/fast")
        .body(Channel::<Bytes>::new(1).1)
        .unwrap();
    assert_eq!(
        sender.send_request(fast).await.unwrap().status(),
        StatusCode::OK
    );

    let shutdown = tokio::spawn(server.shutdown());
    // Once new connections are refused, the accept loop has ended and signalled the
    // open connections in the same step.
    eventually(BOUND, || async {
        match TcpStream::connect(addr).await {
            Ok(_) => Err("still accepting"),
            Err(_) => Ok(()),
        }
    })
    .await
    .unwrap();

    body_tx
        .send_data(Bytes::from_static(b"second"))
        .await
        .unwrap();
    drop(body_tx);
    let response = tokio::time::timeout(BOUND, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let report: EchoReport = serde_json::from_slice(&body).unwrap();
    assert_eq!(report.path, "/slow");
    assert_eq!(report.request.body.as_deref(), Some("first second"));

    tokio::time::timeout(BOUND, shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn binding_a_taken_address_is_an_error() {
    let server = start(BOUND).await;
    let err = serve(EchoConfig {
        listen: server.local_addr(),
        ..EchoConfig::default()
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&server.local_addr().to_string()),
        "{err}"
    );
    server.shutdown().await;
}
