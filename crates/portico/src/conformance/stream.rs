//! TCP, TLS and UDP requests (CASES.md, "TLS passthrough and TCP", "UDP").
//!
//! ```text
//!  tls-tcp | tcp: connect to the Gateway address and port
//!     tls-tcp: TLS handshake with SNI `sni`, trusting only `trust` (Go's name rules)
//!     <- welcome line                    == expect.welcome, when given
//!     -> PING    <- PONG                 the stream really reaches the echo
//!     -> IS_TLS  <- true|false           == expect.backend_is_tls (did the pod terminate TLS?)
//!     -> TEST    <- JSON {namespace, pod, tls.serverName}
//!                                        backend: namespace, and the Service via the
//!                                        kubelet's pod -> Services map;
//!                                        tls.serverName == tls_server_name_at_backend
//!  udp: one datagram `payload` to the Gateway address and port
//!     <- JSON {request, namespace, pod}  backend as above; request == expect.reply
//!        (a reply that is not the echo's JSON fails: no backend can be told)
//! ```
//!
//! Each attempt is a fresh connection or client socket; attempts repeat until one
//! meets the expectation (CASES.md: "TCP/TLS once") or the case's bound passes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::case::{
    BackendRef, ClientTls, RequestCase, StreamExpect, TlsTcpRequest, UdpExpect, UdpRequest,
};
use super::target::Target;
use super::tls::TlsClient;

/// Bound on one attempt (connect, handshake, the exchange); the case's bound applies too.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a UDP attempt waits for the reply.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause after an attempt that did not meet the expectation.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A line longer than this is not the echo's.
const MAX_LINE: u64 = 64 * 1024;

/// The echo's TEST answer, the fields the checks read.
#[derive(Debug, Deserialize)]
struct LineAnswer {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    pod: String,
    #[serde(default)]
    tls: Option<TlsAnswer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsAnswer {
    #[serde(default)]
    server_name: String,
}

/// The UDP echo's answer.
#[derive(Debug, Deserialize)]
struct UdpAnswer {
    request: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    pod: String,
}

/// A `tls-tcp` or `tcp` item, until it holds once or the deadline passes.
pub(crate) async fn run_stream(
    target: &mut Target,
    item: &RequestCase,
    tls: Option<&TlsTcpRequest>,
    expect: &StreamExpect,
    deadline: Instant,
) -> Result<(), String> {
    let addr = super::requests::gateway_addr(target, item, deadline).await?;
    let client = match tls {
        None => None,
        Some(tls) => Some(super::tls::client(
            &target.cluster,
            &ClientTls {
                server_name: tls.sni.clone(),
                trust: tls.trust.clone(),
            },
        )?),
    };
    let described = match tls {
        Some(tls) => format!("tls-tcp {addr} sni={}", tls.sni),
        None => format!("tcp {addr}"),
    };
    let mut attempts = 0u32;
    let mut last_error = String::from("no attempt made");
    loop {
        let within = ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        if within.is_zero() {
            return Err(format!(
                "request {described}: {last_error} ({attempts} attempts)"
            ));
        }
        attempts += 1;
        let outcome = match tokio::time::timeout(within, converse(addr, client.as_ref())).await {
            Ok(Ok(seen)) => check_stream(target, expect, &seen),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no complete exchange within {within:?}")),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e,
        }
        pause(deadline).await;
    }
}

/// What one connection showed.
#[derive(Debug)]
struct Seen {
    welcome: String,
    is_tls: String,
    test: LineAnswer,
}

async fn converse(addr: SocketAddr, tls: Option<&TlsClient>) -> Result<Seen, String> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match tls {
        None => exchange(socket).await,
        Some(tls) => {
            let stream = TlsConnector::from(Arc::clone(&tls.config))
                .connect(tls.server_name.clone(), socket)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            exchange(stream).await
        }
    }
}

/// The line exchange of CASES.md on an open connection.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<Seen, String> {
    let mut reader = BufReader::new(stream);
    let welcome = read_line(&mut reader).await?;
    let pong = ask(&mut reader, "PING").await?;
    if pong != "PONG" {
        return Err(format!("PING answered {pong:?}, expected PONG"));
    }
    let is_tls = ask(&mut reader, "IS_TLS").await?;
    let test = ask(&mut reader, "TEST").await?;
    let test: LineAnswer = serde_json::from_str(&test)
        .map_err(|e| format!("TEST answered {test:?}, not the echo's JSON: {e}"))?;
    Ok(Seen {
        welcome,
        is_tls,
        test,
    })
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut BufReader<S>,
    line: &str,
) -> Result<String, String> {
    reader
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| format!("sending {line}: {e}"))?;
    read_line(reader)
        .await
        .map_err(|e| format!("after {line}: {e}"))
}

async fn read_line<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut line = String::new();
    let n = (&mut *reader)
        .take(MAX_LINE)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    if n == 0 {
        return Err("the connection was closed".to_owned());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn check_stream(target: &Target, expect: &StreamExpect, seen: &Seen) -> Result<(), String> {
    if let Some(welcome) = &expect.welcome
        && seen.welcome != *welcome
    {
        return Err(format!(
            "expected welcome {welcome:?} got {:?}",
            seen.welcome
        ));
    }
    let want = if expect.backend_is_tls {
        "true"
    } else {
        "false"
    };
    if seen.is_tls != want {
        return Err(format!(
            "expected IS_TLS {want} at the backend got {:?} (pod {})",
            seen.is_tls, seen.test.pod
        ));
    }
    check_backend(
        target,
        &expect.backend,
        &seen.test.namespace,
        &seen.test.pod,
    )?;
    if let Some(name) = &expect.tls_server_name_at_backend {
        let got = seen.test.tls.as_ref().map(|t| t.server_name.as_str());
        if got != Some(name.as_str()) {
            return Err(format!(
                "expected TLS server name {name} at the backend got {got:?} (pod {})",
                seen.test.pod
            ));
        }
    }
    Ok(())
}

/// The pod that answered belongs to `backend`: its namespace, and (when named) a
/// Service that selects it.
fn check_backend(
    target: &Target,
    backend: &BackendRef,
    namespace: &str,
    pod: &str,
) -> Result<(), String> {
    if namespace != backend.namespace {
        return Err(format!(
            "expected backend namespace {} got {namespace} (pod {pod})",
            backend.namespace
        ));
    }
    let Some(service) = &backend.service else {
        return Ok(());
    };
    let (workload, services) = target
        .kubelet
        .pod_services(&target.cluster, namespace, pod)
        .ok_or_else(|| {
            format!("answered by pod {pod:?} in {namespace}, which is not a running stand-in pod")
        })?;
    if services.contains(service) {
        return Ok(());
    }
    let got = if services.is_empty() {
        workload
    } else {
        services.join("/")
    };
    Err(format!("expected backend {service} got {got} (pod {pod})"))
}

/// A `udp` item, until one reply meets the expectation or the deadline passes.
pub(crate) async fn run_udp(
    target: &mut Target,
    item: &RequestCase,
    request: &UdpRequest,
    expect: &UdpExpect,
    deadline: Instant,
) -> Result<(), String> {
    let addr = super::requests::gateway_addr(target, item, deadline).await?;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let outcome = match datagram(addr, &request.payload).await {
            Ok(reply) => check_udp(target, expect, &reply),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "request udp {addr} {:?}: {e} ({attempts} attempts)",
                    request.payload
                ));
            }
            Err(_) => pause(deadline).await,
        }
    }
}

/// Sends `payload` from a fresh socket and returns the first reply.
async fn datagram(addr: SocketAddr, payload: &str) -> Result<String, String> {
    let local = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .send(payload.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(UDP_REPLY_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| format!("no reply within {UDP_REPLY_TIMEOUT:?}"))?
        .map_err(|e| format!("receive: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn check_udp(target: &Target, expect: &UdpExpect, reply: &str) -> Result<(), String> {
    match serde_json::from_str::<UdpAnswer>(reply) {
        Ok(answer) => {
            check_backend(target, &expect.backend, &answer.namespace, &answer.pod)?;
            if answer.request != expect.reply {
                return Err(format!(
                    "expected the backend to echo {:?} got {:?} (pod {})",
                    expect.reply, answer.request, answer.pod
                ));
            }
            Ok(())
        }
        // Not the echo: the reply itself must be the expected one, and no backend can
        // be told.
        Err(_) => Err(format!(
            "expected an answer from a pod of {} echoing {:?}, got {reply:?}",
            expect.backend.namespace, expect.reply
        )),
    }
}

async fn pause(deadline: Instant) {
    tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
}
