//! `make soak` (issue 10, zero-loss config churn): `portico standalone` serving a folder
//! while the test rewrites one route `SOAK_CHANGES` times (default 1,000), waiting for
//! each change to be served, and a load generator runs against another route the changes
//! never touch. Passes when every request to that route got a 2xx answer and the
//! process's resident memory at the end is within 10% of what it was after the warm-up.
//! Prints a summary (the README's "Soak" section).
//!
//! Bounded: the whole run stops at `SOAK_DEADLINE` (default 300 s) and fails if the
//! changes are not all done by then. Ignored by `make test`; `make soak` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use portico_testkit::{EchoBackend, HttpClient, Process, eventually, free_port, write_file};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
/// Changes made before memory is first measured (caches, pools and allocator arenas
/// reach their working size).
const WARM_UP_CHANGES: u64 = 50;
/// Load workers: half reuse one keep-alive client, half connect for every request.
const WORKERS: usize = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Gateway, both Services with their endpoints, and the stable route to `stable`.
fn folder_yaml(port: u16, stable: &EchoBackend, churn: &EchoBackend) -> String {
    let mut yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: portico}}\n\
         spec: {{controllerName: portico.dev/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: gw, namespace: soak}}\nspec:\n  gatewayClassName: portico\n  \
         addresses: [{{type: IPAddress, value: 127.0.0.1}}]\n  \
         listeners: [{{name: http, protocol: HTTP, port: {port}}}]\n---\n{}",
        route("stable", "stable.example.com", stable.service(), None)
    );
    for backend in [stable, churn] {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: soak}}\n\
             spec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata:\n  name: {svc}-1\n  namespace: soak\n  \
             labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\n\
             ports: [{{name: http, port: {port}}}]\n\
             endpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\n  \
             targetRef: {{kind: Pod, name: {pod}}}\n",
            svc = backend.service(),
            port = backend.addr().port(),
            pod = backend.pod(),
        ));
    }
    yaml
}

/// An HTTPRoute `name` for `host` to `service`; with `tag`, every request gets the
/// header `X-Soak-Change: <tag>` (what tells which version of the route answered).
fn route(name: &str, host: &str, service: &str, tag: Option<u64>) -> String {
    let filters = tag.map_or_else(String::new, |tag| {
        format!(
            "    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        \
             set: [{{name: X-Soak-Change, value: \"{tag}\"}}]\n"
        )
    });
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: soak}}\nspec:\n  parentRefs: [{{name: gw}}]\n  \
         hostnames: [{host}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n\
         {filters}    backendRefs: [{{name: {service}, port: 80}}]\n"
    )
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// What the load saw.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    non_2xx: AtomicU64,
    errors: AtomicU64,
}

/// Requests to the stable route until `stop`, counting every answer and error.
fn load(gateway: SocketAddr, counts: Arc<Counts>, stop: CancellationToken, deadline: Instant) {
    for worker in 0..WORKERS {
        let counts = counts.clone();
        let stop = stop.clone();
        let keep_alive = HttpClient::http1(gateway).with_timeout(Duration::from_secs(5));
        tokio::spawn(async move {
            while !stop.is_cancelled() && Instant::now() < deadline {
                let client = if worker % 2 == 0 {
                    keep_alive.clone()
                } else {
                    HttpClient::http1(gateway).with_timeout(Duration::from_secs(5))
                };
                match client.get(Some("stable.example.com"), "/soak").await {
                    Ok((status, _, _)) if status.is_success() => &counts.ok,
                    Ok((status, _, body)) => {
                        eprintln!("stable route: {status}: {}", String::from_utf8_lossy(&body));
                        &counts.non_2xx
                    }
                    Err(e) => {
                        eprintln!("stable route: {e}");
                        &counts.errors
                    }
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Whether the churned route answers with change `tag`.
async fn serves(client: &HttpClient, tag: u64) -> Result<(), String> {
    let (status, _, body) = client
        .get(Some("churn.example.com"), "/")
        .await
        .map_err(|e| e.to_string())?;
    let report: portico_echo::EchoReport =
        serde_json::from_slice(&body).map_err(|e| format!("{status}: {e}"))?;
    let seen = report
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-soak-change"))
        .and_then(|(_, values)| values.first().cloned());
    (status == StatusCode::OK && seen.as_deref() == Some(tag.to_string().as_str()))
        .then_some(())
        .ok_or_else(|| format!("{status}, X-Soak-Change {seen:?}, want {tag}"))
}

fn write_churn(dir: &Path, service: &str, tag: u64) {
    write_file(
        dir,
        "churn.yaml",
        route("churn", "churn.example.com", service, Some(tag)),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: make soak"]
async fn a_thousand_route_changes_under_load_lose_nothing() {
    let changes: u64 = env_or("SOAK_CHANGES", 1000);
    let deadline = Instant::now() + Duration::from_secs(env_or("SOAK_DEADLINE", 300));
    let started = Instant::now();
    let stable = EchoBackend::start("stable-0", "soak", "stable")
        .await
        .unwrap();
    let churn = EchoBackend::start("churn-0", "soak", "churn")
        .await
        .unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "base.yaml", folder_yaml(port, &stable, &churn)).unwrap();
    write_churn(dir.path(), churn.service(), 0);

    let portico = Process::spawn(
        env!("CARGO_BIN_EXE_portico"),
        [
            "standalone".as_ref(),
            dir.path().as_os_str(),
            "--debounce".as_ref(),
            "20ms".as_ref(),
        ],
    )
    .unwrap();
    let pid = portico.pid().unwrap();
    let gateway = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = HttpClient::http1(gateway).with_timeout(Duration::from_secs(5));
    eventually(WAIT, || serves(&probe, 0)).await.unwrap();

    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    load(gateway, counts.clone(), stop.clone(), deadline);

    let mut rss_warm = 0;
    for tag in 1..=changes {
        assert!(
            Instant::now() < deadline,
            "deadline passed after {} of {changes} changes",
            tag - 1
        );
        write_churn(dir.path(), churn.service(), tag);
        eventually(WAIT, || serves(&probe, tag))
            .await
            .unwrap_or_else(|e| panic!("change {tag}: {e}\n{}", portico.output()));
        if tag == WARM_UP_CHANGES.min(changes) {
            rss_warm = rss_kib(pid);
        }
    }
    let rss_end = rss_kib(pid);
    stop.cancel();
    // The workers finish their last request (bounded by the client timeout).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, non_2xx, errors) = (
        counts.ok.load(Ordering::Relaxed),
        counts.non_2xx.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
    );
    let growth = (rss_end as f64 / rss_warm as f64 - 1.0) * 100.0;
    println!(
        "soak: {changes} route changes in {:.0?}; stable route: {ok} 2xx, {non_2xx} non-2xx, \
         {errors} errors; portico RSS after warm-up {rss_warm} KiB, at the end {rss_end} KiB \
         ({growth:+.1}%)",
        started.elapsed()
    );
    assert!(ok > 0, "the load sent nothing");
    assert_eq!((non_2xx, errors), (0, 0), "stable route requests failed");
    assert!(
        growth <= 10.0,
        "memory grew {growth:.1}% ({rss_warm} -> {rss_end} KiB)"
    );
    let status = portico.stop(WAIT).await.unwrap();
    assert!(status.success(), "portico exited with {status}");
}
