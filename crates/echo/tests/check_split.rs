//! `hack/check-split.sh` against a real echo server. Needs curl and jq; skips loudly
//! without them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use portico_testkit::{EchoBackend, Process};
use tokio::process::Command;

const BOUND: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../hack/check-split.sh")
}

fn tools_present() -> bool {
    let present = ["curl", "jq", "getent"].iter().all(|tool| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !present {
        eprintln!("SKIPPED: check-split.sh needs curl, jq and getent on PATH");
    }
    present
}

/// Runs the script and returns its stdout lines and whether it succeeded.
async fn run(args: &[&str], resolve_to: Option<&str>) -> (Vec<String>, bool) {
    let mut command = Command::new("bash");
    command.arg(script()).args(args);
    // Only the child's environment is touched; its RESOLVE_TO is ours to decide.
    command.env_remove("RESOLVE_TO");
    if let Some(to) = resolve_to {
        command.env("RESOLVE_TO", to);
    }
    let mut process = Process::spawn_command(command).unwrap();
    let status = process.wait_exit(BOUND).await.unwrap();
    (process.stdout_lines(), status.success())
}

#[tokio::test]
async fn counts_answers_per_pod_prefix() {
    if !tools_present() {
        return;
    }
    let echo1 = EchoBackend::start("echo-1-echo-server-fd88497d-w6sgn", "echo", "echo-1")
        .await
        .unwrap();
    let url = format!("http://{}/", echo1.addr());
    let (lines, ok) = run(&[&url, "7"], None).await;
    assert!(ok, "{lines:?}");
    assert_eq!(
        lines,
        [
            "Number of requests for echo-1: 7",
            "Number of requests for echo-2: 0",
        ]
    );

    let other = EchoBackend::start("infra-backend-v1-5f8c9-x2kq", "ns", "infra-backend-v1")
        .await
        .unwrap();
    let (lines, ok) = run(&[&format!("http://{}", other.addr()), "3"], None).await;
    assert!(ok, "{lines:?}");
    assert_eq!(lines[2], "Number of requests for infra-backend-v1: 3");
}

#[tokio::test]
async fn unresolvable_hosts_go_to_loopback() {
    if !tools_present() {
        return;
    }
    let echo2 = EchoBackend::start("echo-2-echo-server-7c9b5d6f4-k2x8q", "echo", "echo-2")
        .await
        .unwrap();
    let port = echo2.addr().port();
    // `.invalid` never resolves (RFC 2606), so the script must use --resolve.
    let url = format!("http://split-echo.example.invalid:{port}/");
    let (lines, ok) = run(&[&url, "4"], None).await;
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1], "Number of requests for echo-2: 4");

    let (lines, ok) = run(&[&url, "2"], Some("127.0.0.1")).await;
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1], "Number of requests for echo-2: 2");
}

#[tokio::test]
async fn failures_are_counted_and_fail_the_script() {
    if !tools_present() {
        return;
    }
    // A port nobody listens on: bound, read, released.
    let port = portico_testkit::free_port();
    let (lines, ok) = run(&[&format!("http://127.0.0.1:{port}/"), "2"], None).await;
    assert!(!ok, "{lines:?}");
    assert!(
        lines.contains(&"Number of failed requests: 2".to_owned()),
        "{lines:?}"
    );
}
