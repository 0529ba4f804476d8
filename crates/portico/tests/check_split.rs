//! `portico check-split URL -n N` against `portico standalone` serving a 3:1 weighted
//! route to two real echo backends: the table's counts add up to N and follow the
//! weights; a URL that is not routed, or where nothing listens, exits 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod echoes;

use std::collections::BTreeMap;
use std::time::Duration;

use portico_testkit::{EchoBackend, Process, eventually, free_port, write_file};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(20);

/// Requests of the measured run.
const N: u32 = 400;

/// The route's weights.
const WEIGHTS: [(&str, u32); 2] = [("alpha", 3), ("beta", 1)];

const HOST: &str = "split.example.com";

/// Runs `portico check-split ARGS` (without blocking the runtime the echo backends
/// serve on); its exit code and output.
async fn check_split(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("check-split")
        .args(args)
        .output()
        .await
        .expect("portico runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The table's rows: backend -> requests (the header and summary lines left out).
fn rows(table: &str) -> BTreeMap<String, u32> {
    table
        .lines()
        .filter(|l| !l.starts_with("BACKEND") && !l.starts_with(' '))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (backend, count, share) = (words.next()?, words.next()?, words.next()?);
            share.ends_with('%').then_some(())?;
            Some((backend.to_owned(), count.parse().ok()?))
        })
        .collect()
}

fn folder(port: u16, alpha: &EchoBackend, beta: &EchoBackend) -> String {
    let mut yaml = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portico}}
spec: {{controllerName: portico.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: apps}}
spec:
  gatewayClassName: portico
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split, namespace: apps}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{HOST}]
  rules:
    - backendRefs:
        - {{name: alpha, port: 80, weight: {wa}}}
        - {{name: beta, port: 80, weight: {wb}}}
"#,
        wa = WEIGHTS[0].1,
        wb = WEIGHTS[1].1,
    );
    for backend in [alpha, beta] {
        yaml.push_str("---\n");
        yaml.push_str(&echoes::backend_yaml(backend));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_split_counts_follow_the_weights() {
    let (alpha, beta) = echoes::alpha_beta().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "all.yaml", folder(port, &alpha, &beta)).unwrap();
    let portico = Process::spawn(
        env!("CARGO_BIN_EXE_portico"),
        ["standalone".as_ref(), dir.path().as_os_str()],
    )
    .unwrap();
    portico
        .wait_for_line(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap_or_else(|e| panic!("no listener line: {e}\n{}", portico.output()));

    let url = format!("http://{HOST}:{port}/");
    let resolve = format!("{HOST}:{port}:127.0.0.1");
    let (u, r) = (url.as_str(), resolve.as_str());
    eventually(WAIT, || async move {
        match check_split(&[u, "-n", "1", "--resolve", r]).await {
            (0, _) => Ok(()),
            (code, out) => Err(format!("exit {code}: {out}")),
        }
    })
    .await
    .unwrap();

    let n = N.to_string();
    let (code, out) = check_split(&[&url, "-n", &n, "--resolve", &resolve]).await;
    assert_eq!(code, 0, "{out}");
    let counts = rows(&out);
    assert_eq!(
        counts.values().sum::<u32>(),
        N,
        "the rows do not add up to {N}:\n{out}"
    );
    assert!(
        out.contains(&format!("{N} requests to {url}: {N} answered, 0 failed")),
        "{out}"
    );
    // Each backend within 4.5 standard deviations of its binomial expectation.
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    for (backend, weight) in WEIGHTS {
        let p = f64::from(weight) / f64::from(total);
        let expected = f64::from(N) * p;
        let slack = 4.5 * (f64::from(N) * p * (1.0 - p)).sqrt();
        let got = f64::from(counts.get(backend).copied().unwrap_or(0));
        assert!(
            (got - expected).abs() <= slack,
            "{backend}: {got}, expected {expected} ± {slack:.0}:\n{out}"
        );
    }

    // A host no route serves: every answer is a 404, counted as failed.
    let unrouted = format!("http://other.example.com:{port}/");
    let other = format!("other.example.com:{port}:127.0.0.1");
    let (code, out) = check_split(&[&unrouted, "-n", "5", "--resolve", &other]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(": 0 answered, 5 failed"), "{out}");
    assert!(out.contains("404"), "{out}");

    // Nothing listening.
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let (code, out) = check_split(&[&closed, "-n", "3", "--timeout", "2s"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(": 0 answered, 3 failed"), "{out}");

    portico.interrupt().unwrap();
    let status = portico.stop(WAIT).await.unwrap();
    assert!(status.success(), "portico exited with {status}");
    alpha.stop().await;
    beta.stop().await;
}
