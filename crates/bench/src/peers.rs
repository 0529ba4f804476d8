//! The processes: backends, and the proxies under test pinned to CPU 0 with one worker.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::config::{self, Ports, Target, Tls};
use crate::load;

/// The CPU the proxies run on; the driver, its client tools and the backends use the
/// other one.
pub(crate) const PROXY_CPU: &str = "0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Direct,
    Portico,
    Nginx,
    Haproxy,
}

impl Kind {
    pub(crate) const PROXIES: [Kind; 3] = [Kind::Portico, Kind::Nginx, Kind::Haproxy];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Portico => "portico",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    pub(crate) fn ports(self) -> Ports {
        match self {
            Kind::Direct => Ports {
                http: config::backend_port(),
                h2c: config::backend_port(),
                https: None,
            },
            Kind::Portico => Ports {
                http: config::port(18080),
                h2c: config::port(18080),
                https: Some(config::port(18443)),
            },
            Kind::Nginx => Ports {
                http: config::port(18180),
                h2c: config::port(18181),
                https: Some(config::port(18543)),
            },
            Kind::Haproxy => Ports {
                http: config::port(18280),
                h2c: config::port(18281),
                https: Some(config::port(18643)),
            },
        }
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    name: String,
    /// How long it may take to stop after SIGTERM before it is killed.
    grace: Duration,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            grace: Duration::from_secs(5),
        })
    }

    /// Gives it `grace` to stop after SIGTERM (a process that stops children of its own).
    pub(crate) fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so that nginx and HAProxy remove their sockets cleanly.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails when another process listens on a port the bench uses (another run, or a proxy
/// left behind): with SO_REUSEPORT two proxies could share a port and split the load.
pub(crate) fn ensure_ports_free() -> anyhow::Result<()> {
    let mut ports: Vec<u16> = vec![config::backend_port(), crate::control::port()];
    ports.extend(config::split_ports());
    for kind in Kind::PROXIES {
        let p = kind.ports();
        ports.extend([p.http, p.h2c]);
        ports.extend(p.https);
    }
    ports.sort_unstable();
    ports.dedup();
    let busy: Vec<u16> = ports
        .into_iter()
        .filter(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_err())
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        bail!(
            "ports {busy:?} on 127.0.0.1 are in use by other processes (`ss -ltnp`); the bench needs them (--port-offset moves them)"
        )
    }
}

/// The backends: one for the routes, three for the split.
pub(crate) fn start_backends() -> anyhow::Result<Vec<Proc>> {
    let me = std::env::current_exe().context("current_exe")?;
    let mut procs = Vec::new();
    for port in std::iter::once(config::backend_port()).chain(config::split_ports()) {
        let mut command = Command::new(&me);
        command.args(["backend", "--port", &port.to_string()]);
        procs.push(Proc::spawn(&format!("backend :{port}"), command)?);
    }
    Ok(procs)
}

/// A running peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) kind: Kind,
    pub(crate) proc: Option<Proc>,
    /// Where it listens for plain HTTP/1.1 (the control-plane lab's Portico uses its own
    /// port, not `kind.ports()`).
    pub(crate) addr: SocketAddr,
    /// Portico's stdout (its status reports), line by line with when each arrived.
    pub(crate) lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Peer {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Writes the peer's configuration under `dir` and starts it; waits until `target`
/// answers 200 through it.
pub(crate) async fn start(
    kind: Kind,
    dir: &Path,
    bin_dir: &Path,
    routes: usize,
    tls: &Tls,
    target: &Target,
) -> anyhow::Result<Peer> {
    let dir = dir.join(kind.name());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ports = kind.ports();
    let command = match kind {
        Kind::Direct => None,
        Kind::Portico => {
            write_portico_config(&dir, routes, tls)?;
            Some(portico_command(bin_dir, &dir))
        }
        Kind::Nginx => {
            for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                fs::create_dir_all(dir.join(sub))?;
            }
            write(&dir.join("cert.pem"), &tls.cert_pem)?;
            write(&dir.join("key.pem"), &tls.key_pem)?;
            write(&dir.join("nginx.conf"), &config::nginx(ports, routes, &dir))?;
            let mut c = pinned("nginx");
            c.arg("-e")
                .arg(dir.join("error.log"))
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"));
            Some(c)
        }
        Kind::Haproxy => {
            write(
                &dir.join("combined.pem"),
                &format!("{}{}", tls.cert_pem, tls.key_pem),
            )?;
            write(
                &dir.join(config::HAPROXY_MAP),
                &config::haproxy_routes_map(routes),
            )?;
            write(&dir.join("haproxy.cfg"), &config::haproxy(ports, &dir))?;
            let mut c = pinned("haproxy");
            c.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
            Some(c)
        }
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let proc = match command {
        None => None,
        Some(mut command) => {
            command.stdout(Stdio::piped()).stdin(Stdio::null());
            let mut proc = Proc::spawn(kind.name(), command)?;
            drain(&mut proc, lines.clone());
            Some(proc)
        }
    };
    let mut peer = Peer {
        kind,
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], ports.http)),
        lines,
    };
    wait_for(&mut peer, target, 200, Duration::from_secs(120)).await?;
    Ok(peer)
}

/// The folder `portico standalone` serves in the data-plane scenarios.
pub(crate) fn write_portico_config(dir: &Path, routes: usize, tls: &Tls) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write(
        &dir.join("00-base.yaml"),
        &config::portico_base(Kind::Portico.ports(), Some(tls)),
    )?;
    write(&dir.join("10-routes.yaml"), &config::portico_routes(routes))
}

/// `portico standalone DIR` on CPU 0 with one tokio worker, access log off (and rustls's
/// warning about wrk's IP address as SNI, once per handshake, off).
pub(crate) fn portico_command(bin_dir: &Path, dir: &Path) -> Command {
    let mut c = pinned(&bin_dir.join("portico").display().to_string());
    c.env("TOKIO_WORKER_THREADS", "1")
        .args([
            "--log",
            "warn,rustls=error,portico::access=off",
            "standalone",
            "--debounce",
            crate::DEBOUNCE,
        ])
        .arg(dir);
    c
}

pub(crate) fn pinned(program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", PROXY_CPU, program]);
    c
}

/// Collects a child's stdout lines in the background.
pub(crate) fn drain(proc: &mut Proc, lines: Arc<Mutex<Vec<(Instant, String)>>>) {
    if let Some(stdout) = proc.stdout() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut lines) = lines.lock() {
                    lines.push((Instant::now(), line));
                }
            }
        });
    }
}

/// Polls `target` through the peer until it answers `status`.
pub(crate) async fn wait_for(
    peer: &mut Peer,
    target: &Target,
    status: u16,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut report = start + Duration::from_secs(10);
    loop {
        let got = load::probe(peer.addr(), &target.host, &target.path, &target.headers).await;
        if got == Some(status) {
            return Ok(start.elapsed());
        }
        if let Some(proc) = peer.proc.as_mut()
            && !proc.alive()
        {
            bail!("{} exited before answering", peer.kind.name());
        }
        if start.elapsed() > timeout {
            bail!(
                "{} at {} did not answer {status} for {} within {timeout:?} (last: {got:?})",
                peer.kind.name(),
                peer.addr(),
                target.host
            );
        }
        // Progress on long waits: which peer, which route, what it answers so far.
        if Instant::now() >= report {
            eprintln!(
                "   still waiting for {status} from {} at {} for {} after {:.0?} (last: {got:?})",
                peer.kind.name(),
                peer.addr(),
                target.host,
                start.elapsed()
            );
            report += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Writes through a temporary file and a rename, so that a watcher never reads half.
pub(crate) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp~");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Processor time (user + system) a process used so far, in microseconds.
pub(crate) fn cpu_us(pid: u32, ticks_per_sec: u64) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks_per_sec.max(1))
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
