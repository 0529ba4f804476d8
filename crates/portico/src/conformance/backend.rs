//! One stand-in pod: a `portico-echo` answering as that pod, either a child process
//! (the default, as close to a pod as one machine gets) or a server inside the runner
//! (`--echo in-process`: no binary needed, for tests of the runner itself).
//!
//! ```text
//!   process:     portico-echo --listen 127.0.0.1:0 --pod P --namespace N --service S --log-requests
//!                  stdout: "listening on ADDR", then one JSON line per request ──┐
//!                  stderr: kept (last lines) for error messages                  │
//!   in-process:  portico_echo::serve + subscribe_requests ──────────────────────┤
//!                                                                                ▼
//!                                                 request log (bounded) ── saw(path)?
//! ```
//!
//! The request log is how the runner learns that a mirrored request arrived: the
//! mirror's answer goes to nobody.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_echo::{EchoConfig, EchoServer, Identity, SeenRequest};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a backend may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Requests remembered per backend; older ones are forgotten. A case sends far fewer.
const LOG_CAPACITY: usize = 20_000;

/// stderr lines kept for messages.
const STDERR_LINES: usize = 20;

/// How stand-in pods run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoMode {
    /// `portico-echo` processes, from this binary.
    Process(PathBuf),
    /// Servers inside the runner.
    InProcess,
}

impl EchoMode {
    /// Processes of the `portico-echo` next to the running executable.
    pub fn process_next_to_current_exe() -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot locate the running executable: {e}"))?;
        let bin = exe
            .parent()
            .map(|dir| dir.join("portico-echo"))
            .ok_or_else(|| format!("{} has no parent folder", exe.display()))?;
        if !bin.is_file() {
            return Err(format!(
                "{} not found: the standalone target runs backends as portico-echo processes \
                 next to portico; build it with `cargo build --bin portico-echo`, or pass \
                 `--echo in-process`",
                bin.display()
            ));
        }
        Ok(Self::Process(bin))
    }
}

type Log = Arc<Mutex<VecDeque<SeenRequest>>>;

#[derive(Debug)]
enum Running {
    Process {
        child: Child,
        stderr: Arc<Mutex<VecDeque<String>>>,
    },
    InProcess(EchoServer),
}

/// A running stand-in pod.
#[derive(Debug)]
pub(crate) struct Backend {
    addr: SocketAddr,
    log: Log,
    running: Running,
}

impl Backend {
    pub(crate) async fn start(mode: &EchoMode, identity: Identity) -> Result<Self, String> {
        match mode {
            EchoMode::Process(bin) => Self::start_process(bin, identity).await,
            EchoMode::InProcess => Self::start_in_process(identity).await,
        }
    }

    async fn start_in_process(identity: Identity) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let server = portico_echo::serve(EchoConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            identity,
            drain_timeout: Duration::from_secs(1),
        })
        .await
        .map_err(|e| format!("pod {pod}: {e}"))?;
        let log: Log = Arc::default();
        let mut requests = server.subscribe_requests();
        let sink = log.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match requests.recv().await {
                    Ok(seen) => remember(&sink, seen),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "request log of an in-process backend lagged");
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Ok(Self {
            addr: server.local_addr(),
            log,
            running: Running::InProcess(server),
        })
    }

    async fn start_process(bin: &Path, identity: Identity) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--log-requests", "--pod"])
            .arg(&identity.pod)
            .arg("--namespace")
            .arg(&identity.namespace)
            .arg("--service")
            .arg(&identity.service)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("pod {pod}: cannot start {}: {e}", bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("pod {pod}: no stdout"))?;
        let stderr_pipe = child
            .stderr
            .take()
            .ok_or_else(|| format!("pod {pod}: no stderr"))?;

        let stderr: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let kept = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "portico::conformance::echo", "{line}");
                if let Ok(mut kept) = kept.lock() {
                    if kept.len() == STDERR_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        });

        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let addr = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("listening on ")
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                .ok_or_else(|| format!("pod {pod}: unexpected first line {line:?}")),
            Ok(Ok(None)) => Err(format!("pod {pod}: exited before listening")),
            Ok(Err(e)) => Err(format!("pod {pod}: reading stdout: {e}")),
            Err(_) => Err(format!("pod {pod}: not listening after {START_TIMEOUT:?}")),
        };
        let addr = match addr {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill().await;
                let said = stderr
                    .lock()
                    .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n  "))
                    .unwrap_or_default();
                return Err(format!("{e}; stderr:\n  {said}"));
            }
        };

        let log: Log = Arc::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<SeenRequest>(&line) {
                    Ok(seen) => remember(&sink, seen),
                    Err(_) => tracing::debug!(%line, "echo stdout line that is not a request"),
                }
            }
        });
        Ok(Self {
            addr,
            log,
            running: Running::Process { child, stderr },
        })
    }

    /// Where the pod listens (every container port of the pod maps here).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the pod is still running (a process can die).
    pub(crate) fn alive(&mut self) -> bool {
        match &mut self.running {
            Running::Process { child, .. } => matches!(child.try_wait(), Ok(None)),
            Running::InProcess(_) => true,
        }
    }

    /// Whether a request with this URI (path and query) reached the pod.
    pub(crate) fn saw(&self, path: &str) -> bool {
        self.log
            .lock()
            .map(|log| log.iter().any(|r| r.path == path))
            .unwrap_or(false)
    }

    /// The last lines the pod wrote on stderr, for messages about a pod that died.
    pub(crate) fn last_words(&self) -> String {
        match &self.running {
            Running::Process { stderr, .. } => stderr
                .lock()
                .map(|l| l.iter().cloned().collect::<Vec<_>>().join(" / "))
                .unwrap_or_default(),
            Running::InProcess(_) => String::new(),
        }
    }

    /// Stops the pod: SIGTERM-like for the in-process server, kill for a process (the
    /// echo keeps no state worth a graceful stop).
    pub(crate) async fn stop(self) {
        match self.running {
            Running::Process { mut child, .. } => {
                if let Err(error) = child.kill().await {
                    tracing::debug!(%error, "stopping an echo process");
                }
            }
            Running::InProcess(server) => server.shutdown().await,
        }
    }
}

fn remember(log: &Log, seen: SeenRequest) {
    if let Ok(mut log) = log.lock() {
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(seen);
    }
}
