//! A lab for the privileged tests: a client network namespace whose processes run in
//! their own cgroup v2 directory (where the datapath attaches), a backend namespace with
//! servers on 10.123.0.x, joined by a veth pair, and a pin directory on bpffs. Every name
//! carries the test process id and a counter, so tests run in parallel; everything is
//! removed on drop, also when the test fails.
//!
//! ```text
//!   [cgroup pa<pid>x<n>]                       
//!   netns pa<pid>c<n>: 10.123.0.1/24  ──veth──  netns pa<pid>b<n>: 10.123.0.2-.4/24
//!     portico-agent probe ...                     TcpBackend / UdpBackend threads
//! ```
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use portico_agent::{BackendEntry, Datapath, Frontend, Protocol, ServiceEntry};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
pub const BPFFS: &str = "/sys/fs/bpf";
/// The agent binary (set for tests; the bench example, which does not probe, has none).
pub const AGENT: &str = match option_env!("CARGO_BIN_EXE_portico-agent") {
    Some(path) => path,
    None => "portico-agent",
};
/// How long a backend server lives at most, whatever the test does.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the privileged tests, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.procs").exists() {
        return Some(format!("no cgroup v2 hierarchy at {CGROUP_ROOT}"));
    }
    if let Err(e) = portico_agent::bpffs::ensure_mounted(Path::new(BPFFS)) {
        return Some(format!("no bpffs at {BPFFS}: {e}"));
    }
    if let Err(e) = sh(&["ip", "netns", "list"]) {
        return Some(format!("no `ip netns`: {e}"));
    }
    None
}

pub struct Lab {
    pub client_ns: String,
    pub backend_ns: String,
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    /// The node namespace of [`Lab::add_node`], if made.
    pub node_ns: Option<String>,
    id: String,
    stop: Arc<AtomicBool>,
    servers: Vec<thread::JoinHandle<()>>,
}

impl Lab {
    /// A new lab, or `None` (after saying so loudly) where root or BPF is missing.
    pub fn new(test: &str) -> Option<Lab> {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {test}: needs root and BPF ({why})");
            return None;
        }
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            client_ns: format!("pa{id}c"),
            backend_ns: format!("pa{id}b"),
            cgroup: Path::new(CGROUP_ROOT).join(format!("portico-test-{id}")),
            pin_dir: Path::new(BPFFS).join(format!("portico-test-{id}")),
            node_ns: None,
            id: id.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        // From here on, Drop cleans up whatever part was made.
        fs::create_dir(&lab.cgroup).unwrap();
        let (c, b) = (lab.client_ns.as_str(), lab.backend_ns.as_str());
        let (vc, vb) = (format!("v{id}c"), format!("v{id}b"));
        for args in [
            vec!["ip", "netns", "add", c],
            vec!["ip", "netns", "add", b],
            vec![
                "ip", "link", "add", &vc, "netns", c, "type", "veth", "peer", "name", &vb, "netns",
                b,
            ],
            vec!["ip", "-n", c, "addr", "add", "10.123.0.1/24", "dev", &vc],
            vec!["ip", "-n", b, "addr", "add", "10.123.0.2/24", "dev", &vb],
            vec!["ip", "-n", b, "addr", "add", "10.123.0.3/24", "dev", &vb],
            vec!["ip", "-n", b, "addr", "add", "10.123.0.4/24", "dev", &vb],
            vec!["ip", "-n", c, "link", "set", &vc, "up"],
            vec!["ip", "-n", b, "link", "set", &vb, "up"],
            vec!["ip", "-n", c, "link", "set", "lo", "up"],
            vec!["ip", "-n", b, "link", "set", "lo", "up"],
        ] {
            sh(&args).unwrap();
        }
        Some(lab)
    }

    /// Adds a node namespace between the client and the backends, for traffic from
    /// outside the node (the backends play the node's pods: their default route is the
    /// node). Returns the name of the node's client-facing interface.
    ///
    /// ```text
    ///   client 10.124.1.1 ──veth── 10.124.1.2 [nc<id>] node [nb<id>] 10.124.2.1 ──veth── 10.124.2.2-.3 backend
    ///   client: 10.124.0.0/16 via the node          backend: default via the node
    /// ```
    pub fn add_node(&mut self) -> String {
        let id = self.id.clone();
        let node = format!("pa{id}n");
        self.node_ns = Some(node.clone());
        let (c, b, n) = (
            self.client_ns.as_str(),
            self.backend_ns.as_str(),
            node.as_str(),
        );
        let (cn, nc, nb, bn) = (
            format!("c{id}"),
            format!("nc{id}"),
            format!("nb{id}"),
            format!("b{id}"),
        );
        for args in [
            vec!["ip", "netns", "add", n],
            vec![
                "ip", "link", "add", &cn, "netns", c, "type", "veth", "peer", "name", &nc, "netns",
                n,
            ],
            vec![
                "ip", "link", "add", &nb, "netns", n, "type", "veth", "peer", "name", &bn, "netns",
                b,
            ],
            vec!["ip", "-n", c, "addr", "add", "10.124.1.1/24", "dev", &cn],
            vec!["ip", "-n", n, "addr", "add", "10.124.1.2/24", "dev", &nc],
            vec!["ip", "-n", n, "addr", "add", "10.124.2.1/24", "dev", &nb],
            vec!["ip", "-n", b, "addr", "add", "10.124.2.2/24", "dev", &bn],
            vec!["ip", "-n", b, "addr", "add", "10.124.2.3/24", "dev", &bn],
            vec!["ip", "-n", c, "link", "set", &cn, "up"],
            vec!["ip", "-n", n, "link", "set", &nc, "up"],
            vec!["ip", "-n", n, "link", "set", &nb, "up"],
            vec!["ip", "-n", b, "link", "set", &bn, "up"],
            vec!["ip", "-n", n, "link", "set", "lo", "up"],
            vec![
                "ip",
                "-n",
                c,
                "route",
                "add",
                "10.124.0.0/16",
                "via",
                "10.124.1.2",
            ],
            vec![
                "ip",
                "-n",
                b,
                "route",
                "add",
                "default",
                "via",
                "10.124.2.1",
            ],
            // /proc/sys/net is the reader's namespace's: this is the node's forwarding.
            vec![
                "ip",
                "netns",
                "exec",
                n,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ],
        ] {
            sh(&args).unwrap();
        }
        nc
    }

    /// Runs `f` on a thread inside the node namespace and returns what it returns (for
    /// attaching programs to the node's interfaces).
    pub fn in_node_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let node = self.node_ns.as_ref().expect("add_node first");
        let ns = File::open(Path::new("/run/netns").join(node)).unwrap();
        thread::scope(|s| {
            s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Runs a probe from the client namespace as a host outside the node would: not in
    /// the lab's cgroup, so the socket load balancer leaves it alone.
    pub fn probe_from_outside(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client_ns, AGENT, "probe"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "probe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn datapath(&self) -> Datapath {
        Datapath::load(&self.pin_dir, &self.cgroup).unwrap()
    }

    /// Runs `f` on a thread inside the backend namespace.
    pub fn in_backend_ns<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(Arc<AtomicBool>, mpsc::Sender<T>) + Send + 'static,
    ) -> T {
        let ns = File::open(Path::new("/run/netns").join(&self.backend_ns)).unwrap();
        let stop = self.stop.clone();
        let (tx, rx) = mpsc::channel();
        self.servers.push(thread::spawn(move || {
            // A network namespace is per thread: only this thread moves.
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            f(stop, tx);
        }));
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    /// A TCP server on `ip` (a free port) that greets each connection with `name` and then
    /// echoes lines.
    pub fn tcp_backend(&mut self, ip: &str, name: &str) -> SocketAddrV4 {
        let ip = ip.to_string();
        let name = name.to_string();
        self.in_backend_ns(move |stop, tx| {
            let listener = TcpListener::bind((ip.as_str(), 0)).unwrap();
            tx.send(v4(&listener)).unwrap();
            accept_loop(&listener, &stop, SERVER_LIFETIME, |conn| {
                let name = name.clone();
                thread::spawn(move || serve_tcp(conn, &name));
            });
        })
    }

    /// A "proxy" in the backend namespace (which plays the node): a TCP listener on `ip`
    /// (a free port) that greets each connection with `local=<getsockname>`, the address
    /// the connection was accepted on. Returns its address and a handle on the same
    /// listening socket, to register for steering.
    pub fn proxy_listener(&mut self, ip: &str) -> (SocketAddrV4, TcpListener) {
        let ip = ip.to_string();
        self.in_backend_ns(move |stop, tx| {
            let listener = TcpListener::bind((ip.as_str(), 0)).unwrap();
            tx.send((v4(&listener), listener.try_clone().unwrap()))
                .unwrap();
            accept_loop(&listener, &stop, SERVER_LIFETIME, |conn| {
                let local = conn.local_addr().unwrap();
                thread::spawn(move || serve_tcp(conn, &format!("local={local}")));
            });
        })
    }

    /// Runs `ip -n <ns> <args>` in the client or backend namespace.
    pub fn ip(&self, backend: bool, args: &[&str]) {
        let ns = if backend {
            &self.backend_ns
        } else {
            &self.client_ns
        };
        let mut all = vec!["ip", "-n", ns.as_str()];
        all.extend_from_slice(args);
        sh(&all).unwrap();
    }

    pub fn backend_netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.backend_ns)
    }

    /// A UDP server on `ip` answering every datagram with `name`.
    pub fn udp_backend(&mut self, ip: &str, name: &str) -> SocketAddrV4 {
        let ip = ip.to_string();
        let name = name.to_string();
        self.in_backend_ns(move |stop, tx| {
            let socket = UdpSocket::bind((ip.as_str(), 0)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let addr = match socket.local_addr().unwrap() {
                std::net::SocketAddr::V4(a) => a,
                other => panic!("not IPv4: {other}"),
            };
            tx.send(addr).unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) && started.elapsed() < SERVER_LIFETIME {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(format!("{name}\n").as_bytes(), from);
                }
            }
        })
    }

    /// A command that runs `portico-agent probe <args>` in the lab's cgroup (joined
    /// first: `ip netns exec` remounts /sys) and then in the client namespace.
    fn probe_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"echo $$ > "$1/cgroup.procs" && shift && exec ip netns exec "$@""#,
            "sh",
        ])
        .arg(&self.cgroup)
        .arg(&self.client_ns)
        .arg(AGENT)
        .arg("probe")
        .args(args);
        cmd
    }

    /// Runs a probe to the end and returns its report lines.
    pub fn probe(&self, args: &[&str]) -> Vec<String> {
        let out = self
            .probe_command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "probe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Opens a TCP connection through a probe that keeps it; returns the probe and the
    /// line reporting the connection.
    pub fn hold(&self, addr: &str) -> (Held, String) {
        hold(self.probe_command(&["tcp", addr, "--hold", "--timeout-ms", "5000"]))
    }

    /// [`Lab::hold`] from outside the node: not in the lab's cgroup.
    pub fn hold_from_outside(&self, addr: &str) -> (Held, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client_ns, AGENT, "probe"])
            .args(["tcp", addr, "--hold", "--timeout-ms", "5000"]);
        hold(cmd)
    }
}

fn hold(mut cmd: Command) -> (Held, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    (
        Held {
            child,
            stdin,
            stdout,
        },
        first.trim_end().to_owned(),
    )
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for server in self.servers.drain(..) {
            let _ = server.join();
        }
        let _ = portico_agent::remove_pinned(&self.pin_dir);
        for ns in [&self.client_ns, &self.backend_ns]
            .into_iter()
            .chain(self.node_ns.as_ref())
        {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        // The probes have exited; the cgroup is empty once the kernel has reaped them.
        let started = Instant::now();
        while fs::remove_dir(&self.cgroup).is_err() && self.cgroup.exists() {
            if started.elapsed() > Duration::from_secs(5) {
                eprintln!("could not remove {}", self.cgroup.display());
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A probe holding one connection open.
pub struct Held {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Held {
    /// Sends `line` over the held connection and returns the probe's report of the reply.
    pub fn echo(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        reply.trim_end().to_owned()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The IPv4 address a listener is bound to.
pub fn v4(listener: &TcpListener) -> SocketAddrV4 {
    match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    }
}

/// Accepts connections on `listener` and hands each to `serve` until `stop` is set or
/// `lifetime` has passed. The thread blocks in poll(2) until a connection is pending, so
/// a connection is accepted the moment it is established (what the benchmark measures);
/// the poll wakes every 100 ms only to look at `stop`.
pub fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    lifetime: Duration,
    mut serve: impl FnMut(std::net::TcpStream),
) {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < lifetime {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, 100u16) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll on the listener: {e}"),
        }
        // Readable: a connection is pending, so accept does not block (unless the client
        // gave up in between, which these tests' clients do not).
        if let Ok((conn, _)) = listener.accept() {
            serve(conn);
        }
    }
}

fn serve_tcp(conn: std::net::TcpStream, name: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(SERVER_LIFETIME));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    if writeln!(writer, "{name}").is_err() {
        return;
    }
    for line in BufReader::new(conn).lines().take(1000) {
        let Ok(line) = line else { return };
        if writeln!(writer, "{line}").is_err() {
            return;
        }
    }
}

pub fn tcp_service(vip: &str, backends: &[(SocketAddrV4, u32)]) -> ServiceEntry {
    service(vip, Protocol::Tcp, backends)
}

pub fn service(vip: &str, protocol: Protocol, backends: &[(SocketAddrV4, u32)]) -> ServiceEntry {
    ServiceEntry {
        frontend: Frontend::new(vip.parse().unwrap(), protocol),
        flags: 0,
        backends: backends
            .iter()
            .map(|&(addr, weight)| BackendEntry { addr, weight })
            .collect(),
    }
}

/// The reply names of `ok` report lines, asserting that every attempt succeeded and saw
/// `peer`.
pub fn replies(lines: &[String], peer: &str) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let rest = l
                .strip_prefix(&format!("ok peer={peer} reply="))
                .unwrap_or_else(|| panic!("unexpected probe report {l:?}, wanted peer={peer}"));
            rest.to_owned()
        })
        .collect()
}
