//! The bench's own HTTP/1.1 client, for what wrk cannot do: an open-loop fixed rate
//! (latency measured from when each request was due, so a stalled proxy is not hidden by
//! a client that waits for it) and a fixed request count (the weighted split).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// What to send and how much.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    /// Requests per second, or `None` to send each request as soon as the previous one
    /// on its connection finished (closed loop).
    pub(crate) rate: Option<f64>,
    pub(crate) count: u64,
    pub(crate) connections: usize,
    /// Hard bound on the whole run.
    pub(crate) deadline: Duration,
    /// Set to end the run early (between requests).
    pub(crate) stop: Option<Arc<AtomicBool>>,
}

/// What happened.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    pub(crate) ok: u64,
    pub(crate) non_2xx: u64,
    pub(crate) socket_errors: u64,
    /// Latencies of the 2xx answers in microseconds, sorted.
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) elapsed: Duration,
}

pub(crate) async fn run(plan: Plan) -> Outcome {
    let plan = Arc::new(plan);
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..plan.connections.max(1) {
        tasks.push(tokio::spawn(connection(plan.clone(), next.clone(), start)));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        if let Ok(part) = task.await {
            outcome.ok += part.ok;
            outcome.non_2xx += part.non_2xx;
            outcome.socket_errors += part.socket_errors;
            outcome.latencies_us.extend(part.latencies_us);
        }
    }
    outcome.elapsed = start.elapsed();
    outcome.latencies_us.sort_unstable();
    outcome
}

/// One client connection: takes the next request number, waits until it is due, sends
/// it; reconnects after an error.
async fn connection(plan: Arc<Plan>, next: Arc<AtomicU64>, start: Instant) -> Outcome {
    let mut outcome = Outcome::default();
    let end = start + plan.deadline;
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count
            || plan
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break;
        }
        let due = match plan.rate {
            Some(rate) if rate > 0.0 => start + Duration::from_secs_f64(i as f64 / rate),
            _ => Instant::now(),
        };
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let result = tokio::time::timeout_at(end, send(&plan, &mut sender)).await;
        match result {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                outcome.ok += 1;
                outcome
                    .latencies_us
                    .push(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok(Ok(_)) => outcome.non_2xx += 1,
            Ok(Err(())) => {
                outcome.socket_errors += 1;
                sender = None;
            }
            // The run's time is up with this request in flight.
            Err(_) => break,
        }
    }
    outcome
}

async fn send(plan: &Plan, sender: &mut Option<SendRequest<Empty<Bytes>>>) -> Result<u16, ()> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(plan.addr).await?);
    }
    let Some(s) = sender.as_mut() else {
        return Err(());
    };
    s.ready().await.map_err(|_| ())?;
    let mut request = http::Request::get(plan.path.as_str()).header(http::header::HOST, &plan.host);
    for (name, value) in &plan.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Empty::new()).map_err(|_| ())?;
    let response = s.send_request(request).await.map_err(|_| ())?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|_| ())?;
    Ok(status)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, ()> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Fixed-rate load on `target` through `addr` until the returned flag is set (16
/// connections): the background of the propagation and churn measurements.
pub(crate) fn background(
    addr: SocketAddr,
    target: crate::config::Target,
    rate: f64,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Outcome>) {
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        addr,
        host: target.host,
        path: target.path,
        headers: target.headers,
        rate: Some(rate),
        count: u64::MAX,
        connections: 16,
        deadline: Duration::from_secs(900),
        stop: Some(stop.clone()),
    };
    (stop, tokio::spawn(run(plan)))
}

/// One GET on a new connection: the status, or `None` on any socket error. For
/// readiness polls and propagation probes.
pub(crate) async fn probe(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Option<u16> {
    let plan = Plan {
        addr,
        host: host.to_owned(),
        path: path.to_owned(),
        headers: headers.to_vec(),
        rate: None,
        count: 1,
        connections: 1,
        deadline: Duration::from_secs(2),
        stop: None,
    };
    let mut sender = None;
    tokio::time::timeout(plan.deadline, send(&plan, &mut sender))
        .await
        .ok()?
        .ok()
}

/// The body of one GET (the backends' `/__count`).
pub(crate) async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let fetch = async {
        let mut sender = connect(addr).await.ok()?;
        let request = http::Request::get(path)
            .header(http::header::HOST, "backend")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        String::from_utf8(body.to_vec()).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}
