//! The built `portico-echo` binary as a process: flags, environment fallbacks, the
//! `listening on` line, clean stop on SIGINT and SIGTERM.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use portico_echo::EchoReport;
use portico_testkit::{HttpClient, Process};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portico-echo");
const BOUND: Duration = Duration::from_secs(20);

/// A command with an empty environment, so the test process's own variables (HOSTNAME,
/// POD_NAME in a CI pod...) cannot leak into what the binary reports.
fn clean_command() -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    command
}

async fn report_of(process: &Process) -> EchoReport {
    let addr = process.wait_for_listen_addr(BOUND).await.unwrap();
    let (status, report) = HttpClient::http1(addr)
        .get_json::<EchoReport>(Some("echo.example.com"), "/probe")
        .await
        .unwrap();
    assert_eq!(status, 200);
    report
}

#[tokio::test]
async fn flags_name_the_pod_and_sigint_stops_it() {
    let mut command = clean_command();
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--pod",
        "echo-2-echo-server-7c9b5d6f4-k2x8q",
        "--namespace",
        "echo",
        "--service",
        "echo-2-echo-server",
    ]);
    let mut process = Process::spawn_command(command).unwrap();
    let report = report_of(&process).await;
    assert_eq!(report.pod, "echo-2-echo-server-7c9b5d6f4-k2x8q");
    assert_eq!(report.environment.hostname, report.pod);
    assert_eq!(report.namespace, "echo");
    assert_eq!(report.service, "echo-2-echo-server");
    assert_eq!(report.host, "echo.example.com");
    assert_eq!(report.path, "/probe");

    // The bound address is the first thing on stdout.
    let first = process.stdout_lines().into_iter().next().unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first}");

    process.interrupt().unwrap();
    let status = process.wait_exit(BOUND).await.unwrap();
    assert!(status.success(), "{status}; output:\n{}", process.output());
}

#[tokio::test]
async fn environment_fallbacks_and_sigterm() {
    let mut command = clean_command();
    command
        .env("ECHO_LISTEN", "127.0.0.1:0")
        .env("POD_NAME", "infra-backend-v1-abc-def")
        .env("HOSTNAME", "not-this-one")
        .env("NAMESPACE", "gateway-conformance-infra")
        .env("SERVICE_NAME", "infra-backend-v1")
        .env("INGRESS_NAME", "ing");
    let mut process = Process::spawn_command(command).unwrap();
    let report = report_of(&process).await;
    assert_eq!(report.pod, "infra-backend-v1-abc-def");
    assert_eq!(report.namespace, "gateway-conformance-infra");
    assert_eq!(report.service, "infra-backend-v1");
    assert_eq!(report.ingress, "ing");

    process.terminate().unwrap();
    let status = process.wait_exit(BOUND).await.unwrap();
    assert!(status.success(), "{status}; output:\n{}", process.output());
}

#[tokio::test]
async fn hostname_is_the_pod_name_when_pod_name_is_unset() {
    let mut command = clean_command();
    command
        .env("ECHO_LISTEN", "127.0.0.1:0")
        .env("HOSTNAME", "echo-1-echo-server-fd88497d-w6sgn");
    let process = Process::spawn_command(command).unwrap();
    let report = report_of(&process).await;
    assert_eq!(report.pod, "echo-1-echo-server-fd88497d-w6sgn");
    assert_eq!(report.environment.hostname, report.pod);
    let status = process.stop(BOUND).await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn version_flag_prints_the_version() {
    let mut process = Process::spawn(BIN, ["--version"]).unwrap();
    let line = process.wait_for_line("portico-echo", BOUND).await.unwrap();
    assert_eq!(line, format!("portico-echo {}", env!("CARGO_PKG_VERSION")));
    assert!(process.wait_exit(BOUND).await.unwrap().success());
}

#[tokio::test]
async fn an_address_in_use_fails_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut process = Process::spawn(BIN, ["--listen", addr.as_str()]).unwrap();
    let line = process
        .wait_for_line("cannot listen on", BOUND)
        .await
        .unwrap();
    assert!(line.contains(&addr), "{line}");
    assert!(!process.wait_exit(BOUND).await.unwrap().success());
}

#[tokio::test]
async fn log_requests_prints_one_json_line_per_request() {
    let mut command = clean_command();
    command.args(["--listen", "127.0.0.1:0", "--pod", "p", "--log-requests"]);
    let process = Process::spawn_command(command).unwrap();
    let report = report_of(&process).await;
    assert_eq!(report.path, "/probe");
    let line = process.wait_for_line("\"/probe\"", BOUND).await.unwrap();
    let seen: portico_echo::SeenRequest = serde_json::from_str(&line).unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.host, "echo.example.com");
    let stdout = process.stdout_lines();
    assert!(stdout[0].starts_with("listening on "), "{stdout:?}");
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    let status = process.stop(BOUND).await.unwrap();
    assert!(status.success(), "{status}");
}
