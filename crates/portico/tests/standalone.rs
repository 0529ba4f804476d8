//! Whole-binary tests of `portico standalone`: the real `portico` process serving a
//! temporary folder, real echo backends, real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod echoes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use echoes::backend_yaml;
use portico_testkit::{EchoBackend, HttpClient, Process, eventually, free_port, write_file};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// A folder with a Gateway on `port`, two Services (`alpha`, `beta`) each backed by one
/// echo process, and `portico standalone` serving it.
struct Setup {
    dir: tempfile::TempDir,
    portico: Process,
    gateway: SocketAddr,
    _alpha: EchoBackend,
    _beta: EchoBackend,
}

impl Setup {
    async fn start(route_to: &str) -> Setup {
        Self::start_with(route_to, &[]).await
    }

    /// With more flags for `portico standalone`.
    async fn start_with(route_to: &str, flags: &[&str]) -> Setup {
        let (alpha, beta) = echoes::alpha_beta().await;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "gateway.yaml", gateway_yaml(port)).unwrap();
        write_file(
            dir.path(),
            "backends.yaml",
            format!("{}---\n{}", backend_yaml(&alpha), backend_yaml(&beta)),
        )
        .unwrap();
        write_file(dir.path(), "route.yaml", route_yaml("web", None, route_to)).unwrap();

        let portico = Process::spawn(
            env!("CARGO_BIN_EXE_portico"),
            [
                "standalone".as_ref(),
                dir.path().as_os_str(),
                "--debounce".as_ref(),
                "50ms".as_ref(),
            ]
            .into_iter()
            .chain(flags.iter().map(std::ffi::OsStr::new)),
        )
        .unwrap();
        let gateway = SocketAddr::from(([127, 0, 0, 1], port));
        portico
            .wait_for_line(&format!("127.0.0.1:{port}"), WAIT)
            .await
            .unwrap_or_else(|e| panic!("no listener line: {e}\n{}", portico.output()));
        Setup {
            dir,
            portico,
            gateway,
            _alpha: alpha,
            _beta: beta,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stops portico with Ctrl-C and checks that it exits cleanly and in time.
    async fn stop(self) {
        self.portico.interrupt().unwrap();
        let output = self.portico.output();
        let status = self.portico.stop(WAIT).await.unwrap();
        assert!(status.success(), "portico exited with {status}\n{output}");
    }
}

fn gateway_yaml(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: apps
spec:
  gatewayClassName: portico
  addresses:
    - type: IPAddress
      value: 127.0.0.1
  listeners:
    - name: http
      protocol: HTTP
      port: {port}
"#
    )
}

fn route_yaml(name: &str, hostname: Option<&str>, service: &str) -> String {
    let hostnames = hostname.map_or_else(String::new, |h| format!("  hostnames: [{h}]\n"));
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: apps
spec:
  parentRefs:
    - name: gw
{hostnames}  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /
      backendRefs:
        - name: {service}
          port: 80
"#
    )
}

/// The pod that answered, from the echo JSON.
async fn answering_pod(client: &HttpClient, host: Option<&str>) -> Result<String, String> {
    let (status, body) = client
        .get_json::<Value>(host, "/")
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    body["pod"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no pod in {body}"))
}

/// The proxy's limit flags (one `LimitArgs` shared with portico-proxy) take effect in
/// standalone: a request target over `--max-uri-bytes` gets 414, one within it is served.
#[tokio::test]
async fn limit_flags_reach_the_proxy() {
    let setup = Setup::start_with("alpha", &["--max-uri-bytes", "64"]).await;
    let client = HttpClient::http1(setup.gateway);
    eventually(WAIT, || answering_pod(&client, None))
        .await
        .unwrap();
    let within = format!("/{}", "a".repeat(63));
    let (status, _, _) = client.get(None, &within).await.unwrap();
    assert_eq!(status, 200, "a 64-byte target");
    let over = format!("/{}", "a".repeat(64));
    let (status, _, _) = client.get(None, &over).await.unwrap();
    assert_eq!(status, 414, "a 65-byte target");
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_change_goes_live_within_a_second_and_no_request_fails() {
    let setup = Setup::start("alpha").await;
    let client = HttpClient::http1(setup.gateway);
    let first = eventually(WAIT, || answering_pod(&client, None))
        .await
        .unwrap();
    assert!(first.starts_with("alpha-"), "first answer from {first}");

    // A client sends requests back to back for the whole test and records every failure
    // and the moment the first answer from beta arrived.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let switched_at_ms = Arc::new(AtomicU64::new(u64::MAX));
    let load = tokio::spawn({
        let (stop, switched_at_ms) = (stop.clone(), switched_at_ms.clone());
        let client = HttpClient::http1(setup.gateway);
        async move {
            let (mut sent, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                sent += 1;
                match answering_pod(&client, None).await {
                    Ok(pod) if pod.starts_with("beta-") => {
                        let now = started.elapsed().as_millis() as u64;
                        switched_at_ms.fetch_min(now, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(error) => failures.push(error),
                }
            }
            (sent, failures)
        }
    });

    tokio::time::sleep(Duration::from_millis(300)).await; // some traffic on the old route
    let changed_at = started.elapsed();
    write_file(setup.path(), "route.yaml", route_yaml("web", None, "beta")).unwrap();
    eventually(WAIT, || async {
        (switched_at_ms.load(Ordering::Relaxed) != u64::MAX).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // and some on the new one
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = load.await.unwrap();

    let live_after = Duration::from_millis(switched_at_ms.load(Ordering::Relaxed)) - changed_at;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        live_after < Duration::from_secs(1),
        "the new route went live {live_after:?} after the change"
    );
    assert_eq!(
        answering_pod(&client, None).await.unwrap(),
        "beta-5c8b6-fghij"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_and_a_missing_backend_leave_everything_else_serving() {
    let setup = Setup::start("alpha").await;
    let client = HttpClient::http1(setup.gateway);
    eventually(WAIT, || answering_pod(&client, None))
        .await
        .unwrap();

    write_file(
        setup.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [oops\n",
    )
    .unwrap();
    write_file(
        setup.path(),
        "missing.yaml",
        route_yaml("missing", Some("missing.example.com"), "no-such-service"),
    )
    .unwrap();

    let error = setup
        .portico
        .wait_for_line("broken.yaml", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", setup.portico.output()));
    assert!(
        error.contains("broken.yaml:"),
        "the error names no line: {error}"
    );
    let status = setup
        .portico
        .wait_for_line("HTTPRoute apps/missing", WAIT)
        .await
        .unwrap();
    assert!(status.contains("BackendNotFound"), "route status: {status}");

    let (code, _, _) = eventually(WAIT, || async {
        let answer = client.get(Some("missing.example.com"), "/").await;
        answer.ok().filter(|(code, _, _)| code.as_u16() == 500)
    })
    .await
    .unwrap();
    assert_eq!(code.as_u16(), 500);
    // Every other route keeps answering, from the backend it had.
    for _ in 0..20 {
        assert_eq!(
            answering_pod(&client, None).await.unwrap(),
            "alpha-7d4f9-abcde"
        );
        let other = answering_pod(&client, Some("other.example.com"))
            .await
            .unwrap();
        assert_eq!(other, "alpha-7d4f9-abcde");
    }
    assert!(setup.portico.pid().is_some(), "portico is still running");
    setup.stop().await;
}

/// Two Gateways without `spec.addresses`, on the same port: with an address pool each
/// gets an address of its own and both serve, as two LoadBalancer Services would.
#[tokio::test]
async fn the_address_pool_gives_each_gateway_its_own_address() {
    let backend = EchoBackend::start("alpha-7d4f9-abcde", "apps", "alpha")
        .await
        .unwrap();
    let port = free_port();
    let gateway = |name: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {{name: {name}, namespace: apps}}\n\
             spec:\n  gatewayClassName: portico\n  listeners: [{{name: http, protocol: HTTP, port: {port}}}]\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    // The class, and the two Gateways: gateway_yaml's Gateway has a fixed address, so
    // only its class is reused.
    let class = gateway_yaml(port).split("---").next().unwrap().to_owned();
    write_file(dir.path(), "class.yaml", class).unwrap();
    write_file(
        dir.path(),
        "gateways.yaml",
        format!("{}---\n{}", gateway("one"), gateway("two")),
    )
    .unwrap();
    write_file(dir.path(), "backend.yaml", backend_yaml(&backend)).unwrap();
    for name in ["one", "two"] {
        let route = route_yaml(name, None, "alpha").replace("name: gw", &format!("name: {name}"));
        write_file(dir.path(), &format!("route-{name}.yaml"), route).unwrap();
    }

    let portico = Process::spawn(
        env!("CARGO_BIN_EXE_portico"),
        [
            "standalone".as_ref(),
            dir.path().as_os_str(),
            "--debounce".as_ref(),
            "50ms".as_ref(),
            "--address-pool".as_ref(),
            "127.0.23.0/24".as_ref(),
        ],
    )
    .unwrap();
    for addr in ["127.0.23.1", "127.0.23.2"] {
        let gateway = SocketAddr::new(addr.parse().unwrap(), port);
        let client = HttpClient::http1(gateway);
        let pod = eventually(WAIT, || answering_pod(&client, None))
            .await
            .unwrap_or_else(|e| panic!("{gateway}: {e}\n{}", portico.output()));
        assert_eq!(pod, "alpha-7d4f9-abcde");
    }
    portico.interrupt().unwrap();
    assert!(portico.stop(WAIT).await.unwrap().success());
}
