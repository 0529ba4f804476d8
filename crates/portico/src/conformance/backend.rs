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
//!
//! A pod may play one of echo-basic's L4 modes instead ([`EchoRole`]): the TCP line
//! protocol (plain, and over TLS with the pod's certificate) or the UDP echo. Each
//! container port it plays then has an address of its own (`port_for`).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_echo::{
    EchoConfig, EchoServer, Identity, LineConfig, LineServer, LineTls, SeenRequest, UdpServer,
};
use portico_testkit::PodNetwork;
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

/// Where a stand-in pod's process runs: on the host's loopback (the standalone
/// target), or inside a pod network namespace on an address of its own that a real
/// API server accepts in EndpointSlices (the local-cluster target).
#[derive(Debug, Clone, Default)]
pub(crate) enum Placement {
    #[default]
    Loopback,
    Pod(Arc<PodNetwork>),
}

impl Placement {
    /// The address the pod listens on, held until the returned lease drops.
    fn address(&self) -> Result<(IpAddr, Option<PodIp>), String> {
        match self {
            Placement::Loopback => Ok((IpAddr::from(Ipv4Addr::LOCALHOST), None)),
            Placement::Pod(network) => {
                let ip = network.allocate().map_err(|e| e.to_string())?;
                Ok((
                    IpAddr::from(ip),
                    Some(PodIp {
                        network: network.clone(),
                        ip,
                    }),
                ))
            }
        }
    }

    fn command(&self, bin: &Path) -> Command {
        match self {
            Placement::Loopback => Command::new(bin),
            Placement::Pod(network) => network.command(bin),
        }
    }
}

/// A pod address, given back to the pod network when the pod is gone.
#[derive(Debug)]
struct PodIp {
    network: Arc<PodNetwork>,
    ip: Ipv4Addr,
}

impl Drop for PodIp {
    fn drop(&mut self) {
        self.network.release(self.ip);
    }
}

#[derive(Debug)]
enum Running {
    Process {
        child: Child,
        stderr: Arc<Mutex<VecDeque<String>>>,
    },
    InProcess(EchoServer),
    /// echo-basic's L4 modes inside the runner (dropping the handles stops them).
    InProcessL4 {
        _line: Vec<LineServer>,
        _udp: Option<UdpServer>,
    },
}

/// What a stand-in pod serves, from its container's environment (echo-basic's
/// `TCP_ECHO_SERVER`, `UDP_ECHO_SERVER` and their ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EchoRole {
    /// HTTP (and h2c, gRPC) on one socket, whatever container port asks.
    Http,
    /// The TCP line protocol on `port`, and over TLS on `tls.0` with that certificate.
    Tcp {
        port: i64,
        tls: Option<(i64, LineTls)>,
    },
    /// The UDP echo on `port`.
    Udp { port: i64 },
    /// HTTP on every other container port, as [`EchoRole::Http`], and over TLS on
    /// `port` with that certificate (echo-basic given `TLS_SERVER_CERT` and
    /// `TLS_SERVER_PRIVKEY`: the BackendTLSPolicy backends).
    Https { port: i64, tls: LineTls },
}

/// A running stand-in pod.
#[derive(Debug)]
pub(crate) struct Backend {
    addr: SocketAddr,
    /// L4 roles: container port -> where the process serves it (HTTP: empty, every
    /// port is `addr`).
    ports: BTreeMap<i64, SocketAddr>,
    /// HTTPS role: container ports not in `ports` are served by the HTTP `addr`.
    http_elsewhere: bool,
    log: Log,
    running: Running,
    /// The pod's address in a pod network (released when the pod is dropped).
    _pod_ip: Option<PodIp>,
}

impl Backend {
    /// Starts a pod in `role` (see [`EchoRole`]) where `place` says.
    pub(crate) async fn start_role_at(
        mode: &EchoMode,
        identity: Identity,
        role: &EchoRole,
        place: &Placement,
    ) -> Result<Self, String> {
        if let (Placement::Pod(_), EchoMode::InProcess) = (place, mode) {
            return Err(format!(
                "pod {}: pods in a pod network run as portico-echo processes only",
                identity.pod
            ));
        }
        match (role, mode) {
            (EchoRole::Http, EchoMode::Process(bin)) => {
                Self::start_process(bin, identity, place).await
            }
            (EchoRole::Http, EchoMode::InProcess) => Self::start_in_process(identity).await,
            (EchoRole::Https { port, tls }, EchoMode::Process(bin)) => {
                Self::start_https_process(bin, identity, *port, tls, place).await
            }
            (EchoRole::Https { .. }, EchoMode::InProcess) => Err(format!(
                "pod {}: HTTPS backends run as portico-echo processes only",
                identity.pod
            )),
            (_, EchoMode::InProcess) => Self::start_l4_in_process(identity, role).await,
            (_, EchoMode::Process(bin)) => Self::start_l4_process(bin, identity, role, place).await,
        }
    }

    async fn start_l4_in_process(identity: Identity, role: &EchoRole) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut ports = BTreeMap::new();
        let mut line = Vec::new();
        let mut udp = None;
        match role {
            EchoRole::Http | EchoRole::Https { .. } => {
                return Err(format!("pod {pod}: not an L4 role"));
            }
            EchoRole::Tcp { port, tls } => {
                let reported = |p: i64| u16::try_from(p).unwrap_or_default();
                let config = |tls: Option<LineTls>| LineConfig {
                    listen: local,
                    identity: identity.clone(),
                    tls,
                    tcp_port: reported(*port),
                    tls_port: tls_port(role).map(reported),
                };
                let plain = portico_echo::serve_line(config(None))
                    .await
                    .map_err(|e| format!("pod {pod}: {e}"))?;
                ports.insert(*port, plain.local_addr());
                line.push(plain);
                if let Some((tls_port, cert)) = tls {
                    let server = portico_echo::serve_line(config(Some(cert.clone())))
                        .await
                        .map_err(|e| format!("pod {pod}: {e}"))?;
                    ports.insert(*tls_port, server.local_addr());
                    line.push(server);
                }
            }
            EchoRole::Udp { port } => {
                let server = portico_echo::serve_udp(local, identity)
                    .await
                    .map_err(|e| format!("pod {pod}: {e}"))?;
                ports.insert(*port, server.local_addr());
                udp = Some(server);
            }
        }
        let addr = ports
            .values()
            .next()
            .copied()
            .ok_or_else(|| format!("pod {pod}: nothing to serve"))?;
        Ok(Self {
            addr,
            ports,
            http_elsewhere: false,
            log: Arc::default(),
            running: Running::InProcessL4 {
                _line: line,
                _udp: udp,
            },
            _pod_ip: None,
        })
    }

    /// `portico-echo --tcp-echo` or `--udp-echo`: the first stdout line is the plain
    /// (or UDP) address, the second the TLS one when there is TLS.
    async fn start_l4_process(
        bin: &Path,
        identity: Identity,
        role: &EchoRole,
        place: &Placement,
    ) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let (ip, pod_ip) = place.address().map_err(|e| format!("pod {pod}: {e}"))?;
        let listen = format!("{ip}:0");
        let mut command = place.command(bin);
        command
            .arg("--pod")
            .arg(&identity.pod)
            .arg("--namespace")
            .arg(&identity.namespace)
            .arg("--service")
            .arg(&identity.service);
        // The certificate files are deleted once the process has printed its
        // addresses: it reads them before it listens.
        let mut files = Vec::new();
        let mut expected = Vec::new();
        match role {
            EchoRole::Http | EchoRole::Https { .. } => {
                return Err(format!("pod {pod}: not an L4 role"));
            }
            EchoRole::Tcp { port, tls } => {
                command
                    .args(["--tcp-echo", "--tcp-listen", &listen, "--tcp-port"])
                    .arg(port.to_string());
                expected.push(("listening on ", *port));
                if let Some((tls_port, cert)) = tls {
                    // A folder of its own per pod (names are unique among running
                    // pods; the process id keeps two runners apart).
                    let dir = std::env::temp_dir()
                        .join(format!("portico-echo-{}-{pod}", std::process::id()));
                    let (crt, key) = (dir.join("crt"), dir.join("key"));
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&crt, &cert.cert_chain_pem))
                        .and_then(|()| std::fs::write(&key, &cert.private_key_pem))
                        .map_err(|e| format!("pod {pod}: writing its certificate: {e}"))?;
                    command
                        .args(["--tls-listen", &listen, "--tls-port"])
                        .arg(tls_port.to_string())
                        .arg("--tls-cert")
                        .arg(&crt)
                        .arg("--tls-key")
                        .arg(&key);
                    files.push(dir);
                    expected.push(("tls listening on ", *tls_port));
                }
            }
            EchoRole::Udp { port } => {
                command
                    .args(["--udp-echo", "--udp-listen", &listen, "--udp-port"])
                    .arg(port.to_string());
                expected.push(("listening on ", *port));
            }
        }
        let mut child = command
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
        let stderr = keep_stderr(&mut child);
        let mut lines = BufReader::new(stdout).lines();
        let mut ports = BTreeMap::new();
        for (prefix, port) in expected {
            let line = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
            let addr = match line {
                Ok(Ok(Some(line))) => line
                    .strip_prefix(prefix)
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    .ok_or_else(|| format!("pod {pod}: unexpected line {line:?}")),
                Ok(Ok(None)) => Err(format!("pod {pod}: exited before listening")),
                Ok(Err(e)) => Err(format!("pod {pod}: reading stdout: {e}")),
                Err(_) => Err(format!("pod {pod}: not listening after {START_TIMEOUT:?}")),
            };
            match addr {
                Ok(addr) => {
                    ports.insert(port, addr);
                }
                Err(e) => {
                    let _ = child.kill().await;
                    return Err(format!("{e}; stderr:\n  {}", said(&stderr)));
                }
            }
        }
        for dir in files {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::debug!(%error, dir = %dir.display(), "removing a pod's certificate folder");
            }
        }
        let addr = ports
            .values()
            .next()
            .copied()
            .ok_or_else(|| format!("pod {pod}: nothing to serve"))?;
        Ok(Self {
            addr,
            ports,
            http_elsewhere: false,
            log: Arc::default(),
            running: Running::Process { child, stderr },
            _pod_ip: pod_ip,
        })
    }

    /// Where the pod serves container port `port`: its own address in an L4 role,
    /// the one HTTP address otherwise.
    pub(crate) fn port_for(&self, port: i64) -> Option<SocketAddr> {
        if self.ports.is_empty() {
            Some(self.addr)
        } else if self.http_elsewhere {
            Some(self.ports.get(&port).copied().unwrap_or(self.addr))
        } else {
            self.ports.get(&port).copied()
        }
    }

    /// `portico-echo --https-cert`: HTTP on the first stdout line's address (every
    /// container port but `https_port`), HTTPS on the second's.
    async fn start_https_process(
        bin: &Path,
        identity: Identity,
        https_port: i64,
        tls: &LineTls,
        place: &Placement,
    ) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let (ip, pod_ip) = place.address().map_err(|e| format!("pod {pod}: {e}"))?;
        let listen = format!("{ip}:0");
        // A folder of its own per pod, removed once the process listens (it reads the
        // files before that), as for the TLS line protocol.
        let dir = std::env::temp_dir().join(format!("portico-echo-{}-{pod}", std::process::id()));
        let (crt, key) = (dir.join("crt"), dir.join("key"));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&crt, &tls.cert_chain_pem))
            .and_then(|()| std::fs::write(&key, &tls.private_key_pem))
            .map_err(|e| format!("pod {pod}: writing its certificate: {e}"))?;
        let mut child = place
            .command(bin)
            .args(["--listen", &listen, "--https-listen", &listen, "--pod"])
            .arg(&identity.pod)
            .arg("--namespace")
            .arg(&identity.namespace)
            .arg("--service")
            .arg(&identity.service)
            .arg("--https-cert")
            .arg(&crt)
            .arg("--https-key")
            .arg(&key)
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
        let stderr = keep_stderr(&mut child);
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = Vec::new();
        for prefix in ["listening on ", "https listening on "] {
            let line = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
            let addr = match line {
                Ok(Ok(Some(line))) => line
                    .strip_prefix(prefix)
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    .ok_or_else(|| format!("pod {pod}: unexpected line {line:?}")),
                Ok(Ok(None)) => Err(format!("pod {pod}: exited before listening")),
                Ok(Err(e)) => Err(format!("pod {pod}: reading stdout: {e}")),
                Err(_) => Err(format!("pod {pod}: not listening after {START_TIMEOUT:?}")),
            };
            match addr {
                Ok(addr) => addrs.push(addr),
                Err(e) => {
                    let _ = child.kill().await;
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(format!("{e}; stderr:\n  {}", said(&stderr)));
                }
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::debug!(%error, dir = %dir.display(), "removing a pod's certificate folder");
        }
        let (Some(&addr), Some(&https)) = (addrs.first(), addrs.get(1)) else {
            return Err(format!("pod {pod}: no addresses"));
        };
        Ok(Self {
            addr,
            ports: BTreeMap::from([(https_port, https)]),
            http_elsewhere: true,
            log: Arc::default(),
            running: Running::Process { child, stderr },
            _pod_ip: pod_ip,
        })
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
            ports: BTreeMap::new(),
            http_elsewhere: false,
            log,
            running: Running::InProcess(server),
            _pod_ip: None,
        })
    }

    async fn start_process(
        bin: &Path,
        identity: Identity,
        place: &Placement,
    ) -> Result<Self, String> {
        let pod = identity.pod.clone();
        let (ip, pod_ip) = place.address().map_err(|e| format!("pod {pod}: {e}"))?;
        let listen = format!("{ip}:0");
        let mut child = place
            .command(bin)
            .args(["--listen", &listen, "--log-requests", "--pod"])
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

        let stderr = keep_stderr(&mut child);
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
                return Err(format!("{e}; stderr:\n  {}", said(&stderr)));
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
            ports: BTreeMap::new(),
            http_elsewhere: false,
            log,
            running: Running::Process { child, stderr },
            _pod_ip: pod_ip,
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
            Running::InProcess(_) | Running::InProcessL4 { .. } => true,
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
            Running::InProcess(_) | Running::InProcessL4 { .. } => String::new(),
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
            Running::InProcessL4 { .. } => {}
        }
    }
}

type Stderr = Arc<Mutex<VecDeque<String>>>;

/// Keeps the last lines a child writes on stderr (for messages about a pod that died).
fn keep_stderr(child: &mut Child) -> Stderr {
    let stderr: Stderr = Arc::default();
    let Some(pipe) = child.stderr.take() else {
        return stderr;
    };
    let kept = stderr.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
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
    stderr
}

fn said(stderr: &Stderr) -> String {
    stderr
        .lock()
        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n  "))
        .unwrap_or_default()
}

/// The TLS port of a TCP role.
fn tls_port(role: &EchoRole) -> Option<i64> {
    match role {
        EchoRole::Tcp {
            tls: Some((port, _)),
            ..
        } => Some(*port),
        _ => None,
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
