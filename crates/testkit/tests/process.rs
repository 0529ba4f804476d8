//! `Process` against small `sh` scripts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use portico_testkit::{Process, ProcessError, Stream, eventually};

const BOUND: Duration = Duration::from_secs(10);

fn sh(script: &str) -> Process {
    Process::spawn("sh", ["-c", script]).unwrap()
}

#[tokio::test]
async fn lines_from_both_streams_are_captured() {
    let mut process = sh("echo one; echo two >&2; echo listening on 127.0.0.1:4321; echo three");
    let line = process.wait_for_line("two", BOUND).await.unwrap();
    assert_eq!(line, "two");
    let addr = process.wait_for_listen_addr(BOUND).await.unwrap();
    assert_eq!(addr, "127.0.0.1:4321".parse().unwrap());
    assert!(process.wait_exit(BOUND).await.unwrap().success());

    assert_eq!(
        process.stdout_lines(),
        ["one", "listening on 127.0.0.1:4321", "three"]
    );
    assert_eq!(process.stderr_lines(), ["two"]);
    let lines = process.lines();
    assert_eq!(lines.len(), 4);
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.text == "two")
    );
}

#[tokio::test]
async fn a_line_printed_later_is_awaited() {
    // The script waits for its stdin-free trigger: a file the test creates.
    let dir = std::env::temp_dir().join(format!("portico-testkit-later-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trigger = dir.join("go");
    let _ = std::fs::remove_file(&trigger);
    let script = format!(
        "i=0; while [ ! -e '{}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo ready",
        trigger.display()
    );
    let process = sh(&script);
    let early = process
        .wait_for_line("ready", Duration::from_millis(100))
        .await;
    assert!(
        matches!(early, Err(ProcessError::LineTimeout { .. })),
        "{early:?}"
    );
    std::fs::write(&trigger, "").unwrap();
    assert_eq!(
        process.wait_for_line("ready", BOUND).await.unwrap(),
        "ready"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn waiting_fails_early_when_the_process_exits_without_the_line() {
    let process = sh("echo something else; exit 3");
    let started = std::time::Instant::now();
    let err = process
        .wait_for_line("never printed", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::OutputClosed { .. }), "{err}");
    assert!(err.to_string().contains("something else"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn sigint_reaches_the_process_and_its_exit_is_observed() {
    let mut process = sh("trap 'echo got-int; exit 7' INT; echo ready; \
         i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done");
    process.wait_for_line("ready", BOUND).await.unwrap();
    process.interrupt().unwrap();
    let status = process.wait_exit(BOUND).await.unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(process.stdout_lines().contains(&"got-int".to_owned()));
}

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigint() {
    let process = sh("trap '' INT; echo ready; exec sleep 30");
    process.wait_for_line("ready", BOUND).await.unwrap();
    let err = process.stop(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, ProcessError::ExitTimeout { .. }), "{err}");
}

#[tokio::test]
async fn dropping_the_handle_kills_the_process() {
    let process = sh("echo ready; exec sleep 30");
    process.wait_for_line("ready", BOUND).await.unwrap();
    let pid = process.pid().unwrap();
    drop(process);
    // Gone, or a zombie waiting to be reaped: either way no longer running.
    eventually(BOUND, || async {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Ok(()),
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                Ok(())
            }
            Ok(stat) => Err(format!("still running: {stat}")),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let err = Process::spawn("/nonexistent/portico-nothing", ["x"]).unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("portico-nothing"), "{err}");
}
