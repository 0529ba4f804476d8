//! HTTP/1.1 upgrades (WebSocket) through the proxy: the 101 comes back, then bytes
//! flow both ways until a side closes.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const HANDSHAKE: &str = "GET /ws HTTP/1.1\r\nHost: ws.example\r\nConnection: keep-alive, Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends the handshake and reads the response head.
async fn handshake(addr: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HANDSHAKE.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Bounded: a response head is small.
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    (
        stream,
        String::from_utf8(head).unwrap().to_ascii_lowercase(),
    )
}

async fn echo_round(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut got = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, message);
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let backend = UpgradeEcho::start().await;
    let (proxy, addr) = start_on(
        80,
        vec![prefix_route("ws", "/", vec![to("ws", 1)])],
        vec![backend.cluster("ws")],
    )
    .await;

    let (mut stream, head) = handshake(addr).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    echo_round(&mut stream, b"Websocket Support!").await;
    echo_round(&mut stream, &[1, 2, 3, 4, 5, 6, 7]).await;

    // Several tunnels at once, each its own.
    let (mut second, _) = handshake(addr).await;
    echo_round(&mut second, b"second").await;
    echo_round(&mut stream, b"first again").await;

    // A plain request to the same backend is still a plain request.
    let reply = TestClient::http1().get(addr, "h", "/plain").await;
    assert_eq!(reply.body, "no upgrade");
    drop(stream);
    drop(second);
    proxy.shutdown().await;
}

#[tokio::test]
async fn no_upgrade_is_offered_to_an_h2c_cluster() {
    let a = Echo::start("a").await;
    let mut h2 = cluster("a", &[&a]);
    h2.protocol = portico_api::config::v1::ClusterProtocol::H2c as i32;
    let (proxy, addr) =
        start_on(80, vec![prefix_route("r", "/", vec![to("a", 1)])], vec![h2]).await;
    let (mut stream, head) = handshake(addr).await;
    // The backend answered the request as a plain one, over HTTP/2.
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("upgrade: websocket"), "{head}");
    let mut body = Vec::new();
    let mut chunk = [0u8; 1024];
    // The JSON body ends with '}'; bounded by size and time.
    while !body.ends_with(b"}") && body.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the body ended");
        body.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&body).contains("HTTP/2.0"));
    proxy.shutdown().await;
}
