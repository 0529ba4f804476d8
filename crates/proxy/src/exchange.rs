//! One request to one backend: attempts, each bounded by the route's backendRequest
//! timeout, retried as the route's retry policy says.
//!
//! ```text
//! attempt 0 ─> endpoint (round robin) ─> send ─┬─ response, status not retried ──> done
//!                                              ├─ response, status in retry.codes ─┐
//!                                              └─ failure: connect, timeout ───────┤
//! attempt n <─ backoff(n) <─ retries left and the body can be sent again <─────────┘
//! ```
//!
//! When no retry is left the last attempt's outcome stands: its response, or the local
//! reply for its failure.
//!
//! A failed connect is also tried again at once, with or without a retry policy, on
//! another endpoint (at most `CONNECT_RETRIES` times, never one already tried while
//! others are left) when nothing left the proxy that could not be sent again: an
//! idempotent method (RFC 9110 section 9.2.2) and a body that can be replayed. Every
//! connect outcome feeds the endpoint's passive health (table/health.rs).

use std::{net::SocketAddr, time::Duration};

use http::Method;
use hyper::body::Incoming;

use crate::{
    body::{Outgoing, RequestHead},
    error::RequestError,
    filters::{RetryPolicy, Timeouts},
    service::Shared,
    table::{ClusterState, UpstreamProtocol},
    upgrade::Upgrade,
    upstream::Upstream,
};

/// Sends `head` with the body of `outgoing` to `cluster`.
pub(crate) async fn exchange(
    shared: &Shared,
    cluster: &ClusterState,
    head: &RequestHead,
    outgoing: &mut Outgoing,
    timeouts: Timeouts,
    retry: Option<&RetryPolicy>,
    upgrade: Option<&Upgrade>,
) -> Result<http::Response<Incoming>, RequestError> {
    let mut retries = 0;
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut connect_retries = 0;
    loop {
        let outcome = attempt(
            &shared.upstream,
            cluster,
            head,
            outgoing,
            timeouts.backend_request,
            upgrade,
            &tried,
        )
        .await;
        // Every failed connect counts, retried or not (an error path: a lookup is fine).
        if let Err(RequestError::Connect { endpoint, .. }) = &outcome {
            shared.metrics.connect_error(&cluster.name);
            tried.push(*endpoint);
            if connect_retries < CONNECT_RETRIES
                && idempotent(&head.method)
                && outgoing.replayable()
                && cluster.has_untried(&tried)
            {
                connect_retries += 1;
                tracing::debug!(
                    cluster = %cluster.name,
                    %endpoint,
                    "connect failed, trying another endpoint"
                );
                continue;
            }
        }
        let again = retry.is_some_and(|policy| {
            outgoing.replayable()
                && policy.retries(retries, outcome.as_ref().map(http::Response::status))
        });
        let Some(policy) = retry.filter(|_| again) else {
            return outcome;
        };
        retries += 1;
        let wait = policy.backoff(retries);
        tracing::debug!(
            cluster = %cluster.name,
            retry = retries,
            outcome = %describe(&outcome),
            wait_ms = wait.as_millis() as u64,
            "retrying"
        );
        // The failed attempt's response (and its connection) go before the wait.
        drop(outcome);
        tokio::time::sleep(wait).await;
    }
}

/// Extra attempts after failed connects, on other endpoints (module docs).
const CONNECT_RETRIES: usize = 2;

/// RFC 9110 section 9.2.2.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

async fn attempt(
    upstream: &Upstream,
    cluster: &ClusterState,
    head: &RequestHead,
    outgoing: &mut Outgoing,
    timeout: Option<Duration>,
    upgrade: Option<&Upgrade>,
    tried: &[SocketAddr],
) -> Result<http::Response<Incoming>, RequestError> {
    let Some(endpoint) = cluster.pick_excluding(tried) else {
        return Err(RequestError::NoReadyEndpoint {
            cluster: cluster.name.clone(),
        });
    };
    let Some(body) = outgoing.next() else {
        // Only reachable if a non-replayable body were retried, which `exchange` never
        // does; a clear error beats a panic.
        return Err(RequestError::BadRequest(
            "the request body was already sent".to_owned(),
        ));
    };
    let mut req = head.request(body);
    if let Some(upgrade) = upgrade
        && cluster.protocol == UpstreamProtocol::Http1
    {
        upgrade.request_headers(req.headers_mut());
    }
    tracing::trace!(cluster = %cluster.name, %endpoint, "forwarding");
    let send = upstream.send(cluster, endpoint, req);
    let outcome = match timeout {
        None => send.await,
        Some(after) => tokio::time::timeout(after, send).await.unwrap_or_else(|_| {
            Err(RequestError::BackendTimeout {
                cluster: cluster.name.clone(),
                endpoint,
                after,
            })
        }),
    };
    // Passive health: a connect that failed, or one that worked (any answer or an
    // exchange that failed after connecting).
    match &outcome {
        Err(RequestError::Connect { .. }) => cluster.record_connect(endpoint, false),
        Ok(_) | Err(RequestError::Upstream { .. }) => cluster.record_connect(endpoint, true),
        Err(_) => {}
    }
    // A body cut at the size limit (limits.rs) surfaces as a failed exchange: it is the
    // client's error, 413.
    if let Err(RequestError::Upstream { error, .. }) = &outcome
        && let Some(limit) = crate::limits::body_too_large(&**error)
    {
        return Err(RequestError::BodyTooLarge { limit });
    }
    outcome
}

fn describe(outcome: &Result<http::Response<Incoming>, RequestError>) -> String {
    match outcome {
        Ok(response) => format!("status {}", response.status().as_u16()),
        Err(error) => error.to_string(),
    }
}
