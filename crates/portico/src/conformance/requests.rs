//! Requests and their expectations (CASES.md, "Requests").
//!
//! ```text
//!   RequestCase ──> gateway address (status.addresses) + port (listener_port or the
//!                   first listener's)
//!     │  HTTP: until 3 answers in a row meet `expect` (upstream's
//!     │        MakeRequestAndExpectEventuallyConsistentResponse), within the case's bound
//!     │        each attempt: fresh request id, send, evaluate:
//!     │          status ─ backend (namespace; Service via the kubelet's pod -> Service
//!     │          map) ─ path/method/host/headers at the backend ─ response headers ─
//!     │          redirect Location
//!     ├─ then `weighted`: batches, shares per Service within the tolerance
//!     └─ then `mirrored_to`: the mirror Service's pods logged the request
//!   gRPC: grpc.rs (same rules: 3 in a row within the bound)
//!   TLS, TCP, UDP: stream.rs (the echo's line protocol; UDP JSON echo)
//! ```
//!
//! A failure names the request and the expectation that broke with what was seen:
//! `request GET http://127.0.10.3:80/ Host=foo: expected backend infra-backend-v1 got
//! infra-backend-v2 (pod infra-backend-v2-...) (3 attempts)`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use http::Uri;
use portico_api::names::kind;
use serde::Deserialize;
use tokio::time::Instant;

use super::case::{
    Exchange, HttpExpect, HttpRequest, RedirectLocation, RequestCase, Scheme, Weighted,
};
use super::cluster::Key;
use super::http::{Incoming, Outgoing, send};
use super::target::Target;
use super::tls::TlsClient;

/// Answers in a row that must meet the expectation.
const CONSECUTIVE: u32 = 3;

/// Bound on one exchange; the case's bound applies too.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an attempt that did not meet the expectation.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Redirects followed when the request does not ask otherwise (Go's client follows 10).
const MAX_REDIRECTS: usize = 10;

/// The echo's answer, the fields the checks read.
#[derive(Debug, Deserialize)]
struct EchoAnswer {
    #[serde(default)]
    path: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    pod: String,
}

/// Runs one request item until its expectation holds or the deadline passes.
pub(crate) async fn run(
    target: &mut Target,
    item: &RequestCase,
    deadline: Instant,
) -> Result<(), String> {
    match &item.exchange {
        Exchange::Http(request, expect) => run_http(target, item, request, expect, deadline).await,
        Exchange::Grpc(request, expect) => {
            super::grpc::run(target, item, request, expect, deadline).await
        }
        Exchange::TlsTcp(request, expect) => {
            super::stream::run_stream(target, item, Some(request), expect, deadline).await
        }
        Exchange::Tcp(_, expect) => {
            super::stream::run_stream(target, item, None, expect, deadline).await
        }
        Exchange::Udp(request, expect) => {
            super::stream::run_udp(target, item, request, expect, deadline).await
        }
    }
}

pub(crate) fn not_implemented(what: &str) -> String {
    format!("not implemented in the runner: {what}")
}

/// Where a Gateway is reached: its status address and the port.
pub(crate) async fn gateway_addr(
    target: &mut Target,
    item: &RequestCase,
    deadline: Instant,
) -> Result<SocketAddr, String> {
    let gw = &item.gateway;
    let key = Key::new(kind::GATEWAY, &gw.namespace, &gw.name);
    let port = match item.listener_port {
        Some(port) => port,
        None => target
            .cluster
            .get(&key)
            .and_then(|g| g.pointer("/spec/listeners/0/port"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("{key}: no listener port (the Gateway has no listeners)"))?,
    };
    let ip = target
        .poll(deadline, |view, _, _| {
            view.gateway_address(&gw.namespace, &gw.name)
                .ok_or_else(|| format!("{key} has no address in its status"))
        })
        .await?;
    if let Ok(ip) = ip.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // A Hostname address (a cloud load balancer's DNS name, as on EKS): its first
    // address, looked up like a client would.
    let found = tokio::time::timeout_at(deadline, tokio::net::lookup_host((ip.as_str(), port)))
        .await
        .map_err(|_| format!("{key}: looking up status address {ip:?} timed out"))?
        .map_err(|e| format!("{key}: status address {ip:?} does not resolve: {e}"))?
        .next();
    found.ok_or_else(|| format!("{key}: status address {ip:?} resolves to nothing"))
}

async fn run_http(
    target: &mut Target,
    item: &RequestCase,
    request: &HttpRequest,
    expect: &HttpExpect,
    deadline: Instant,
) -> Result<(), String> {
    let addr = gateway_addr(target, item, deadline).await?;
    let tls = match (&request.scheme, &request.tls) {
        (Scheme::Http, _) => None,
        (Scheme::Https, Some(tls)) => Some(super::tls::client(&target.cluster, tls)?),
        (Scheme::Https, None) => {
            return Err("scheme https needs tls: {server_name, trust}".to_owned());
        }
    };
    let mut attempts = 0u32;
    let mut in_a_row = 0u32;
    let mut last_error = String::new();
    let sent = loop {
        attempts += 1;
        let built = build(request, expect, addr, tls.as_ref());
        let outcome = exchange(&built.outgoing, request.unfollow_redirect, deadline)
            .await
            .and_then(|response| evaluate(target, request, expect, &built, &response));
        match outcome {
            Ok(_) => {
                in_a_row += 1;
                if in_a_row == CONSECUTIVE {
                    break built;
                }
            }
            Err(e) => {
                in_a_row = 0;
                last_error = e;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "request {}: {last_error} ({attempts} attempts)",
                built.outgoing.describe()
            ));
        }
        if in_a_row == 0 {
            tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    };
    let described = sent.outgoing.describe();
    if let Some(weighted) = &expect.weighted {
        weighted_batches(
            target,
            request,
            expect,
            weighted,
            addr,
            tls.as_ref(),
            deadline,
        )
        .await
        .map_err(|e| format!("request {described}: {e}"))?;
    }
    if let Some(mirrors) = &expect.mirrored_to {
        if target.kubelet.is_remote() {
            return Err(not_implemented(
                "mirrored_to against a cluster (the mirrors' pods are not the runner's to ask)",
            ));
        }
        for mirror in mirrors {
            let path = match (&mirror.path, &sent.request_id) {
                // The request id is on the mirror's path too.
                (Some(p), Some(id)) => append_query(p, id),
                (Some(p), None) => p.clone(),
                (None, _) => sent.outgoing.path.clone(),
            };
            target
                .poll(deadline, |_, cluster, kubelet| {
                    let pods = kubelet.pods_of_service(cluster, &mirror.namespace, &mirror.service);
                    if pods.iter().any(|(_, b)| b.saw(&path)) {
                        Ok(())
                    } else {
                        Err(format!(
                            "request {described}: expected a mirrored request {path} at {}/{} ({} pods), none arrived",
                            mirror.namespace,
                            mirror.service,
                            pods.len()
                        ))
                    }
                })
                .await?;
        }
    }
    Ok(())
}

/// One attempt's request.
#[derive(Debug, Clone)]
struct Built {
    outgoing: Outgoing,
    /// The path (and query) the backend must see, request id included.
    expected_path: Option<String>,
    /// `name=<uuid>` when the case asked for a request id.
    request_id: Option<String>,
}

/// The request to send, with a fresh request id if asked.
fn build(
    request: &HttpRequest,
    expect: &HttpExpect,
    addr: SocketAddr,
    tls: Option<&TlsClient>,
) -> Built {
    let mut path = request.path.clone();
    let mut expected_path = expect.path_at_backend.clone();
    let request_id = request
        .add_request_id_query_param
        .as_ref()
        .map(|name| format!("{name}={}", uuid::Uuid::new_v4()));
    if let Some(param) = &request_id {
        path = append_query(&path, param);
        expected_path = expected_path.map(|p| append_query(&p, param));
    }
    // Upstream's CalculateHost: the Gateway address, with the port unless it is the
    // scheme's default.
    let host = if request.host.is_empty() {
        let default = match request.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if addr.port() == default {
            addr.ip().to_string()
        } else {
            addr.to_string()
        }
    } else {
        request.host.clone()
    };
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !request.backend_sets_response_headers.is_empty() {
        let pairs: Vec<String> = request
            .backend_sets_response_headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        headers.push((portico_echo::SET_HEADER.to_owned(), pairs.join(",")));
    }
    Built {
        outgoing: Outgoing {
            addr,
            method: request.method.clone(),
            host,
            path,
            headers,
            tls: tls.cloned(),
        },
        expected_path,
        request_id,
    }
}

fn append_query(path: &str, param: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{param}")
}

/// Sends a request, following redirects unless asked not to. Every host resolves to
/// the Gateway (as if DNS pointed all names at it, which is what conformance assumes).
async fn exchange(first: &Outgoing, unfollow: bool, deadline: Instant) -> Result<Incoming, String> {
    let mut outgoing = first.clone();
    for _ in 0..=MAX_REDIRECTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = send(
            &outgoing,
            REQUEST_TIMEOUT.min(left.max(Duration::from_millis(200))),
        )
        .await?;
        if unfollow || !response.status.is_redirection() {
            return Ok(response);
        }
        let Some(location) = response.header("location") else {
            return Ok(response);
        };
        let uri: Uri = location
            .parse()
            .map_err(|e| format!("redirect to {location:?}: not a URL: {e}"))?;
        if uri.scheme_str() == Some("https") {
            return Err(not_implemented("following a redirect to https"));
        }
        if let Some(authority) = uri.authority() {
            outgoing.host = authority.to_string();
            outgoing.addr.set_port(authority.port_u16().unwrap_or(80));
        }
        outgoing.path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        // "303 See Other [...] a user agent [performs] a GET or HEAD request"; Go's
        // client does the same for 301 and 302 answers to a POST.
        if response.status.as_u16() == 303
            || (matches!(response.status.as_u16(), 301 | 302) && outgoing.method == "POST")
        {
            outgoing.method = "GET".to_owned();
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Checks one answer. `Ok` carries the Service that answered, when a backend did.
fn evaluate(
    target: &Target,
    request: &HttpRequest,
    expect: &HttpExpect,
    built: &Built,
    response: &Incoming,
) -> Result<Option<String>, String> {
    let expected_path = &built.expected_path;
    let sent = &built.outgoing;
    if response.status.as_u16() != expect.status {
        let body = response.body_excerpt();
        return Err(if body.is_empty() {
            format!(
                "expected status {} got {}",
                expect.status,
                response.status.as_u16()
            )
        } else {
            format!(
                "expected status {} got {} (body: {body})",
                expect.status,
                response.status.as_u16()
            )
        });
    }
    let mut answered = None;
    if let Some(backend) = &expect.backend {
        let echo: EchoAnswer = serde_json::from_slice(&response.body).map_err(|_| {
            format!(
                "expected an answer from a pod of {}, got a body that is not the echo's: {}",
                backend.namespace,
                response.body_excerpt()
            )
        })?;
        if echo.namespace != backend.namespace {
            return Err(format!(
                "expected backend namespace {} got {} (pod {})",
                backend.namespace, echo.namespace, echo.pod
            ));
        }
        let (workload, services) = target
            .kubelet
            .pod_services(&target.cluster, &echo.namespace, &echo.pod)
            .ok_or_else(|| {
                format!(
                    "answered by pod {:?} in {}, which is not a running stand-in pod",
                    echo.pod, echo.namespace
                )
            })?;
        if let Some(service) = &backend.service
            && !services.contains(service)
        {
            let got = if services.is_empty() {
                workload.clone()
            } else {
                services.join("/")
            };
            return Err(format!(
                "expected backend {service} got {got} (pod {})",
                echo.pod
            ));
        }
        answered = Some(service_of(&workload, &services, None));
        if let Some(path) = expected_path
            && echo.path != *path
        {
            return Err(format!("expected path at backend {path} got {}", echo.path));
        }
        if let Some(method) = &expect.method_at_backend
            && echo.method != *method
        {
            return Err(format!(
                "expected method at backend {method} got {}",
                echo.method
            ));
        }
        if let Some(host) = &expect.host_at_backend
            && echo.host != *host
        {
            return Err(format!("expected host at backend {host} got {}", echo.host));
        }
        for (name, value) in &expect.request_headers_at_backend {
            match header_at_backend(&echo, name) {
                None => {
                    return Err(format!(
                        "expected request header {name}: {value} at the backend, it was absent (headers: {})",
                        describe_headers(&echo)
                    ));
                }
                Some(got) if got != *value => {
                    return Err(format!(
                        "expected request header {name}: {value} at the backend, got {name}: {got}"
                    ));
                }
                Some(_) => {}
            }
        }
        for name in &expect.absent_request_headers_at_backend {
            if let Some(got) = header_at_backend(&echo, name) {
                return Err(format!(
                    "expected no request header {name} at the backend, got {name}: {got}"
                ));
            }
        }
    }
    for (name, value) in &expect.response_headers {
        match response.header(name) {
            None => {
                return Err(format!(
                    "expected response header {name}: {value}, it was absent"
                ));
            }
            Some(got) if got != *value => {
                return Err(format!(
                    "expected response header {name}: {value}, got {name}: {got}"
                ));
            }
            Some(_) => {}
        }
    }
    for name in &expect.absent_response_headers {
        if let Some(got) = response.header(name) {
            return Err(format!(
                "expected no response header {name}, got {name}: {got}"
            ));
        }
    }
    if let Some(location) = &expect.redirect_location {
        redirect(location, request, sent, response)?;
    }
    Ok(answered)
}

/// The Service a pod's answer counts for: the one among `preferred` that selects it,
/// else the one named like its workload, else the first.
fn service_of(
    workload: &str,
    services: &[String],
    preferred: Option<&BTreeMap<String, f64>>,
) -> String {
    if let Some(preferred) = preferred
        && let Some(s) = services.iter().find(|s| preferred.contains_key(*s))
    {
        return s.clone();
    }
    if services.iter().any(|s| s == workload) {
        return workload.to_owned();
    }
    services
        .first()
        .cloned()
        .unwrap_or_else(|| format!("{workload} (no Service)"))
}

fn header_at_backend(echo: &EchoAnswer, name: &str) -> Option<String> {
    // Host is not in the echo's header map (Go moves it out); it is `host`.
    if name.eq_ignore_ascii_case("host") {
        return Some(echo.host.clone());
    }
    echo.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.join(","))
}

fn describe_headers(echo: &EchoAnswer) -> String {
    echo.headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.join(",")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `redirect_location`: the Location header's scheme, host, port and path.
fn redirect(
    expected: &RedirectLocation,
    request: &HttpRequest,
    sent: &Outgoing,
    response: &Incoming,
) -> Result<(), String> {
    let location = response
        .header("location")
        .ok_or("expected a Location header, there was none")?;
    let uri: Uri = location
        .parse()
        .map_err(|e| format!("Location {location:?} is not a URL: {e}"))?;
    let scheme = uri
        .scheme_str()
        .unwrap_or(request.scheme.as_str())
        .to_ascii_lowercase();
    let (host, port) = match uri.authority() {
        Some(a) => (a.host().to_owned(), a.port_u16()),
        // A relative Location stays on the host and port of the request.
        None => {
            let host = sent
                .host
                .rsplit_once(':')
                .map_or(sent.host.as_str(), |(h, _)| h);
            (host.to_owned(), Some(sent.addr.port()))
        }
    };
    let mismatch = |what: &str, want: &str, got: &str| {
        Err(format!(
            "expected redirect {what} {want} got {got} (Location: {location})"
        ))
    };
    if scheme != expected.scheme {
        return mismatch("scheme", &expected.scheme, &scheme);
    }
    if let Some(want) = &expected.host
        && !host.eq_ignore_ascii_case(want)
    {
        return mismatch("host", want, &host);
    }
    let default = match scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    let shown = port.map_or_else(|| "none".to_owned(), |p| p.to_string());
    match &expected.port {
        // "`port: null`: no port or the scheme's default".
        None => {
            if port.is_some_and(|p| p != default) {
                return mismatch("port", &format!("none (or {default})"), &shown);
            }
        }
        // "a quoted port must be present".
        Some(want) => {
            if port.map(|p| p.to_string()).as_deref() != Some(want.as_str()) {
                return mismatch("port", want, &shown);
            }
        }
    }
    let got_path = if expected.path.contains('?') {
        uri.path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned()
    } else {
        uri.path().to_owned()
    };
    if got_path != expected.path {
        return mismatch("path", &expected.path, &got_path);
    }
    Ok(())
}

/// `weighted`: batches of requests whose answers are counted per Service; every
/// answer must meet the rest of the expectation.
async fn weighted_batches(
    target: &Target,
    request: &HttpRequest,
    expect: &HttpExpect,
    weighted: &Weighted,
    addr: SocketAddr,
    tls: Option<&TlsClient>,
    deadline: Instant,
) -> Result<(), String> {
    let mut last = String::new();
    for batch in 1..=weighted.max_attempts.max(1) {
        match weighted_batch(target, request, expect, weighted, addr, tls, deadline).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!("weighted: {last} ({batch} batches, out of time)"));
        }
    }
    Err(format!(
        "weighted: {last} ({} batches)",
        weighted.max_attempts.max(1)
    ))
}

async fn weighted_batch(
    target: &Target,
    request: &HttpRequest,
    expect: &HttpExpect,
    weighted: &Weighted,
    addr: SocketAddr,
    tls: Option<&TlsClient>,
    deadline: Instant,
) -> Result<(), String> {
    let total = weighted.requests.max(1);
    let answers: Vec<Result<String, String>> = futures::stream::iter(0..total)
        .map(|i| async move {
            let mut built = build(request, expect, addr, tls);
            if let Some(header) = &weighted.entropy_header
                && i % 2 == 0
            {
                built
                    .outgoing
                    .headers
                    .push((header.clone(), fastrand::u32(0..10_000).to_string()));
            }
            let response = exchange(&built.outgoing, request.unfollow_redirect, deadline).await?;
            evaluate(target, request, expect, &built, &response)?;
            // Counted by the Service in `expected_fractions` that selects the pod.
            let echo: EchoAnswer = serde_json::from_slice(&response.body)
                .map_err(|_| "answer is not the echo's".to_owned())?;
            let (workload, services) = target
                .kubelet
                .pod_services(&target.cluster, &echo.namespace, &echo.pod)
                .ok_or_else(|| format!("pod {} is not a stand-in pod", echo.pod))?;
            Ok(service_of(
                &workload,
                &services,
                Some(&weighted.expected_fractions),
            ))
        })
        .buffer_unordered(usize::try_from(weighted.concurrency.max(1)).unwrap_or(1))
        .collect()
        .await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for answer in answers {
        *counts
            .entry(answer.map_err(|e| format!("a request of the batch: {e}"))?)
            .or_default() += 1;
    }
    let shares = |counts: &BTreeMap<String, u32>| {
        counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}/{total}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (service, n) in &counts {
        let want = weighted
            .expected_fractions
            .get(service)
            .copied()
            .unwrap_or(0.0);
        if want == 0.0 && *n > 0 {
            return Err(format!(
                "expected no answers from {service}, got {n} (shares {})",
                shares(&counts)
            ));
        }
    }
    for (service, want) in &weighted.expected_fractions {
        let got = f64::from(counts.get(service).copied().unwrap_or(0)) / f64::from(total);
        if (got - want).abs() > weighted.tolerance {
            return Err(format!(
                "expected {service} to answer {want:.3} ± {} of requests, got {got:.3} (shares {})",
                weighted.tolerance,
                shares(&counts)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(yaml: &str) -> HttpRequest {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn expect(yaml: &str) -> HttpExpect {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 10, 3], port))
    }

    #[test]
    fn the_host_defaults_to_the_gateway_address() {
        let e = expect("{status: 404, backend: null}");
        let o = build(
            &request("{method: GET, host: '', path: /}"),
            &e,
            addr(80),
            None,
        )
        .outgoing;
        assert_eq!(o.host, "127.0.10.3");
        let o = build(
            &request("{method: GET, host: '', path: /}"),
            &e,
            addr(8080),
            None,
        )
        .outgoing;
        assert_eq!(o.host, "127.0.10.3:8080");
        let o = build(
            &request("{method: GET, host: foo.com, path: /}"),
            &e,
            addr(8080),
            None,
        )
        .outgoing;
        assert_eq!(o.host, "foo.com");
    }

    #[test]
    fn request_ids_go_on_the_request_and_the_expected_path() {
        let r = request(
            "{method: GET, host: '', path: '/mirror?a=b', add_request_id_query_param: rid}",
        );
        let e = expect(
            "{status: 200, backend: {namespace: n, service: s}, path_at_backend: '/mirror?a=b', method_at_backend: GET}",
        );
        let built = build(&r, &e, addr(80), None);
        let o = &built.outgoing;
        assert!(o.path.starts_with("/mirror?a=b&rid="), "{}", o.path);
        assert_eq!(built.expected_path.as_deref(), Some(o.path.as_str()));
        assert!(o.path.ends_with(built.request_id.as_deref().unwrap()));
        let again = build(&r, &e, addr(80), None);
        assert_ne!(again.outgoing.path, o.path, "a fresh id per request");
    }

    #[test]
    fn backend_set_headers_ask_the_echo() {
        let r = request(
            "{method: GET, host: h, path: /, backend_sets_response_headers: {X-A: '1', X-B: two}}",
        );
        let o = build(&r, &expect("{status: 404, backend: null}"), addr(80), None).outgoing;
        assert!(
            o.headers
                .contains(&("x-echo-set-header".to_owned(), "X-A:1,X-B:two".to_owned())),
            "{:?}",
            o.headers
        );
    }

    fn response(status: u16, location: &str) -> Incoming {
        let mut headers = http::HeaderMap::new();
        headers.insert("location", location.parse().unwrap());
        Incoming {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn redirect_locations() {
        let r = request("{method: GET, host: example.org, path: /, unfollow_redirect: true}");
        let sent = build(&r, &expect("{status: 302, backend: null}"), addr(80), None).outgoing;
        let want = |yaml: &str| serde_yaml_ng::from_str::<RedirectLocation>(yaml).unwrap();
        let ok = want("{scheme: https, host: example.org, port: null, path: /}");
        assert!(redirect(&ok, &r, &sent, &response(302, "https://example.org/")).is_ok());
        assert!(redirect(&ok, &r, &sent, &response(302, "https://example.org:443/")).is_ok());
        let err =
            redirect(&ok, &r, &sent, &response(302, "https://example.org:8443/")).unwrap_err();
        assert!(
            err.contains("expected redirect port none (or 443) got 8443"),
            "{err}"
        );
        let port = want("{scheme: http, host: null, port: '8080', path: /x}");
        assert!(redirect(&port, &r, &sent, &response(302, "http://a.b:8080/x?y=1")).is_ok());
        let err = redirect(&port, &r, &sent, &response(302, "http://a.b/x")).unwrap_err();
        assert!(err.contains("port 8080 got none"), "{err}");
        let relative = want("{scheme: http, host: example.org, port: null, path: /other}");
        assert!(redirect(&relative, &r, &sent, &response(302, "/other")).is_ok());
        let err = redirect(&relative, &r, &sent, &response(302, "/else")).unwrap_err();
        assert!(
            err.contains("expected redirect path /other got /else"),
            "{err}"
        );
    }

    #[test]
    fn weighted_answers_count_for_the_expected_service() {
        let services = vec!["headless".to_owned(), "infra-backend-v1".to_owned()];
        assert_eq!(
            service_of("infra-backend-v1", &services, None),
            "infra-backend-v1"
        );
        let mut fractions = BTreeMap::new();
        fractions.insert("headless".to_owned(), 1.0);
        assert_eq!(
            service_of("infra-backend-v1", &services, Some(&fractions)),
            "headless"
        );
        assert_eq!(service_of("lonely", &[], None), "lonely (no Service)");
    }
}
