//! Restarting a proxy gracefully under load (issue 10, Faults): a second
//! `portico-proxy` starts next to the first on the same node, binds the same ports
//! (SO_REUSEPORT) from the same operator, then the first gets SIGTERM. A slow request in
//! flight on the first completes with 200, the first exits within its drain timeout, and
//! clients (keep-alive ones and one connection per request) that retry only what never
//! reached a server (connection refused, or reset or closed before any byte of an
//! answer) see no failed request.
//!
//! Whole binaries, as in fault_restart.rs: the test API server, `portico-operator` on
//! the host, both proxies and the echo pod on a node (network namespace), which has
//! `net.ipv4.tcp_migrate_req=1` as ARCHITECTURE.md ("Graceful restart") asks of nodes
//! that restart proxies this way.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use binaries::{Cluster, Node, WAIT, proxy_with, scenario};
use kube_common::wait_programmed;
use portico_testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The first proxy's drain timeout: longer than the slow request.
const DRAIN: Duration = Duration::from_secs(8);
/// How long the slow request waits in the echo pod.
const SLOW: &str = "3s";
/// Attempts per request: the first and the retries of what never reached a server.
const ATTEMPTS: usize = 5;
/// Bounds on a load worker, whatever the test does.
const WORKER_MAX_REQUESTS: u64 = 50_000;
const WORKER_MAX_TIME: Duration = Duration::from_secs(90);
/// Bound on one exchange (the slow one included).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// Nothing of an answer arrived: refused, reset or closed first. Safe to retry,
    /// since no server can have acted on a request it closed without answering
    /// (HTTP/1.1 clients retry these on a reused connection, RFC 9112 section 9.3.1).
    NothingReceived(String),
    /// An answer started and broke, or was not HTTP, or came too late.
    Broken(String),
}

/// One HTTP/1.1 GET on `stream`: (status, body, whether the server closes after it).
async fn exchange(stream: &mut TcpStream, path: &str) -> Result<(u16, Vec<u8>, bool), Failure> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: web.example.com\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Err(Failure::NothingReceived(format!("write: {e}")));
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(Failure::Broken("head over 64 KiB".into()));
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return Err(Failure::NothingReceived("closed".into())),
            Err(e) if buf.is_empty() => return Err(Failure::NothingReceived(format!("read: {e}"))),
            Ok(0) => return Err(Failure::Broken("closed in the head".into())),
            Err(e) => return Err(Failure::Broken(format!("read in the head: {e}"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::Broken(format!("not HTTP: {head:?}")))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
            .map(str::to_owned)
    };
    let close = header("connection").is_some_and(|v| v == "close");
    let mut body = buf[head_end..].to_vec();
    let complete = |body: &[u8]| match header("content-length") {
        Some(length) => length.parse().is_ok_and(|n: usize| body.len() >= n),
        None if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) => {
            body.ends_with(b"0\r\n\r\n")
        }
        None => false,
    };
    while !complete(&body) {
        match stream.read(&mut chunk).await {
            Ok(0) if header("content-length").is_none() && close => break,
            Ok(0) => return Err(Failure::Broken("closed in the body".into())),
            Err(e) => return Err(Failure::Broken(format!("read in the body: {e}"))),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok((status, body, close))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A GET of `path` as a careful client makes it: on `conn` when it has one open
/// (keep-alive), else on a new connection; retried on a new connection, up to
/// [`ATTEMPTS`] in all, only when nothing of an answer came. `retries` counts those.
async fn get(
    target: SocketAddr,
    conn: &mut Option<TcpStream>,
    path: &str,
    retries: &AtomicU64,
) -> Result<(u16, Vec<u8>), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            retries.fetch_add(1, Ordering::Relaxed);
        }
        let mut stream = match conn.take() {
            Some(stream) => stream,
            None => match TcpStream::connect(target).await {
                Ok(stream) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = format!("connect: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(format!("connect: {e}")),
            },
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut stream, path)).await {
            Ok(Ok((status, body, close))) => {
                if !close {
                    *conn = Some(stream);
                }
                return Ok((status, body));
            }
            Ok(Err(Failure::NothingReceived(why))) => last = why,
            Ok(Err(Failure::Broken(why))) => return Err(why),
            Err(_) => return Err(format!("no answer within {EXCHANGE_TIMEOUT:?}")),
        }
    }
    Err(format!("{ATTEMPTS} attempts, last: {last}"))
}

/// What the load workers saw.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    retries: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// `workers` keep-alive clients and `fresh` clients opening a connection per request,
/// looping on `/load` until `stop` (bounded by [`WORKER_MAX_REQUESTS`] and
/// [`WORKER_MAX_TIME`]).
fn start_load(
    target: SocketAddr,
    keep_alive: usize,
    fresh: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<JoinHandle<()>> {
    (0..keep_alive + fresh)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            let reuse = i < keep_alive;
            tokio::spawn(async move {
                let started = Instant::now();
                let mut conn = None;
                for _ in 0..WORKER_MAX_REQUESTS {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > WORKER_MAX_TIME {
                        break;
                    }
                    match get(target, &mut conn, "/load", &tally.retries).await {
                        Ok((200, _)) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => tally
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("{status}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => tally.failures.lock().unwrap().push(e),
                    }
                    if !reuse {
                        conn = None;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect()
}

/// Waits until `more` answers more than now have come (a span of traffic).
async fn answered(tally: &Tally, more: u64) {
    let target = tally.ok.load(Ordering::Relaxed) + more;
    eventually(WAIT, || async {
        (tally.ok.load(Ordering::Relaxed) >= target).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("load stalled: {e}; failures {:?}", tally.failures));
}

/// Requests to `/load` in a proxy's access log (stdout).
fn served(proxy: &portico_testkit::Process) -> usize {
    proxy
        .stdout_lines()
        .iter()
        .filter(|l| l.contains("/load"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_proxy_takes_over_the_ports_and_the_first_drains_without_failures() {
    let Some(node) = Node::new("fault_graceful_restart") else {
        return;
    };
    node.sysctl("net.ipv4.tcp_migrate_req", "1");
    let cluster = Cluster::start().await;
    let _pod = node.echo("echo-0", "apps", "echo");
    cluster.apply(&scenario(&node));
    let operator = cluster
        .operator("operator-a", (node.host_ip, 0).into())
        .await;
    let mut first = proxy_with(&node, "node-1", operator.config_addr, "127.0.0.1:0", DRAIN);
    let port = cluster.proxy_port("web", 80).await;
    let target = SocketAddr::from((node.node_ip, port));
    wait_programmed(&cluster.client, "apps", "web", WAIT).await;
    first.wait_for_line("config applied", WAIT).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers = start_load(target, 2, 1, &stop, &tally);
    answered(&tally, 50).await;

    // A slow request, on the first proxy (the only one yet): its answer comes after
    // the SIGTERM.
    let slow = tokio::spawn(async move {
        let no_retries = AtomicU64::new(0);
        let path = format!("/slow?delay={SLOW}");
        let answer = get(target, &mut None, &path, &no_retries).await;
        (answer, no_retries.load(Ordering::Relaxed))
    });
    answered(&tally, 20).await;
    assert!(!slow.is_finished(), "the slow request ended early");

    // The second proxy binds the same port and serves its share.
    let second = proxy_with(&node, "node-2", operator.config_addr, "127.0.0.1:0", DRAIN);
    second.wait_for_line("config applied", WAIT).await.unwrap();
    eventually(WAIT, || async { (served(&second) > 0).then_some(()) })
        .await
        .unwrap_or_else(|e| panic!("second proxy served nothing: {e}\n{}", second.output()));

    // SIGTERM to the first: it stops accepting, finishes the slow request, exits.
    first.terminate().unwrap();
    let (answer, slow_retries) = slow.await.unwrap();
    let (status, body) = answer.unwrap_or_else(|e| panic!("slow request failed: {e}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(slow_retries, 0, "the slow request was retried");
    let exit = first
        .wait_exit(DRAIN + Duration::from_secs(5))
        .await
        .unwrap();
    assert!(exit.success(), "first proxy: {exit}\n{}", first.output());
    assert!(
        !first
            .lines()
            .iter()
            .any(|l| l.text.contains("drain timeout passed")),
        "the first proxy cut connections at its drain deadline:\n{}",
        first.output()
    );
    assert!(
        first.stdout_lines().iter().any(|l| l.contains("/slow")),
        "the slow request is not in the first proxy's access log"
    );

    // Everything now goes to the second proxy.
    let second_before = served(&second);
    answered(&tally, 100).await;
    eventually(WAIT, || async {
        (served(&second) >= second_before + 100).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "graceful restart: {} answers, {} retries of requests nothing answered, {} failures",
        tally.ok.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    second.stop(WAIT).await.unwrap();
}
