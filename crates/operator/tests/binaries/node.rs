//! A node of the test cluster: a network namespace joined to the host by a veth pair,
//! where the proxy and the backends run as they would on a Kubernetes node. Its address
//! is a real one (the test API server, like a real one, refuses loopback endpoints), and
//! each test has its own, so proxies of tests running in parallel never compete for the
//! same ports.
//!
//! ```text
//!   host (test, TestApiServer on 127.0.0.1, portico-operator on host_ip)
//!     veth h<id> host_ip/30 ──────── veth n<id> node_ip/30   netns po<id>
//!                                                             portico-proxy (0.0.0.0:2xxxx)
//!                                                             echo pods (node_ip:8080)
//! ```
//!
//! Needs root and `ip` (iproute2); [`Node::new`] says so loudly and returns `None`
//! elsewhere. Everything is removed on drop, also when the test fails.
//!
//! This is the agent tests' approach (crates/agent/tests/common) cut down to one
//! namespace; it moves to `portico_testkit` once that has network namespaces.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use portico_echo::{EchoConfig, Identity};
use portico_testkit::Process;
use tokio::sync::oneshot;

/// The port echo pods listen on inside the node.
pub const ECHO_PORT: u16 = 8080;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) -> Result<(), String> {
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

/// Why this machine cannot make network namespaces, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    sh(&["ip", "netns", "list"]).err()
}

#[derive(Debug)]
pub struct Node {
    pub netns: String,
    /// The host's end of the veth: what the node reaches the operator on.
    pub host_ip: Ipv4Addr,
    /// The node's address: its proxy and pods.
    pub node_ip: Ipv4Addr,
}

impl Node {
    /// A new node, or `None` (after saying so on stderr) where namespaces cannot be made.
    pub fn new(test: &str) -> Option<Node> {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {test}: needs root and network namespaces ({why})");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id());
        // One /30 of 10.200.0.0/16 per (process, node): 16384 of them.
        let slot = (std::process::id() % 4096) * 4 + n % 4;
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + slot * 4;
        let node = Node {
            netns: format!("po{id}"),
            host_ip: Ipv4Addr::from(base + 1),
            node_ip: Ipv4Addr::from(base + 2),
        };
        let (host_if, node_if) = (format!("h{id}"), format!("n{id}"));
        let host_cidr = format!("{}/30", node.host_ip);
        let node_cidr = format!("{}/30", node.node_ip);
        let ns = node.netns.as_str();
        // From here on, Drop removes the namespace (and the veth pair with it).
        for args in [
            vec!["ip", "netns", "add", ns],
            vec![
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &node_if, "netns",
                ns,
            ],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host_if],
            vec!["ip", "link", "set", &host_if, "up"],
            vec!["ip", "-n", ns, "addr", "add", &node_cidr, "dev", &node_if],
            vec!["ip", "-n", ns, "link", "set", &node_if, "up"],
            vec!["ip", "-n", ns, "link", "set", "lo", "up"],
        ] {
            if let Err(e) = sh(&args) {
                panic!("setting up node {ns}: {e}");
            }
        }
        Some(node)
    }

    /// Starts `program` inside the node.
    pub fn spawn<S: AsRef<OsStr>>(&self, program: &Path, args: &[S]) -> Process {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.netns])
            .arg(program)
            .args(args)
            // Plain log lines, so that tests can read fields out of them.
            .env("NO_COLOR", "1");
        Process::spawn_command(command).unwrap()
    }

    /// Runs `f` on a thread inside the node and returns what it returns: sockets it
    /// makes belong to the node.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(Path::new("/run/netns").join(&self.netns)).unwrap();
        thread::spawn(move || {
            // A network namespace is per thread: only this one moves.
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Another program's socket on `port` of the node (every address), as a process
    /// that got there first would hold it.
    pub fn occupy(&self, port: u16) -> TcpListener {
        self.run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap())
    }

    /// An echo pod on `node_ip:ECHO_PORT`, answering as `pod` of `namespace/service`.
    pub fn echo(&self, pod: &str, namespace: &str, service: &str) -> Pod {
        self.echo_on(self.node_ip, pod, namespace, service)
    }

    /// An echo pod on `ip:ECHO_PORT` (an address of the node: `node_ip` or one from
    /// [`Node::add_address`]).
    pub fn echo_on(&self, ip: Ipv4Addr, pod: &str, namespace: &str, service: &str) -> Pod {
        let ns = File::open(Path::new("/run/netns").join(&self.netns)).unwrap();
        let config = EchoConfig {
            listen: SocketAddr::from((ip, ECHO_PORT)),
            identity: Identity::new(pod, namespace, service),
            drain_timeout: Duration::from_secs(1),
        };
        let (stop, stopped) = oneshot::channel::<Stop>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                match portico_echo::serve(config).await {
                    Ok(server) => {
                        let _ = ready_tx.send(Ok(()));
                        // Killed: leave without shutting down; dropping the runtime
                        // closes every socket at once, requests in flight included.
                        if !matches!(stopped.await, Ok(Stop::Kill)) {
                            server.shutdown().await;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        Pod {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Adds `ip`/32 to the node (on its loopback device): another pod address, which
    /// the proxy on the node reaches locally.
    pub fn add_address(&self, ip: Ipv4Addr) {
        let cidr = format!("{ip}/32");
        sh(&["ip", "-n", &self.netns, "addr", "add", &cidr, "dev", "lo"]).unwrap();
    }

    /// Sets sysctl `name` (a per-namespace one, such as `net.ipv4.tcp_migrate_req`) in
    /// the node.
    pub fn sysctl(&self, name: &str, value: &str) {
        let setting = format!("{name}={value}");
        sh(&["ip", "netns", "exec", &self.netns, "sysctl", "-w", &setting]).unwrap();
    }
}

/// How a [`Pod`] ends.
#[derive(Debug)]
enum Stop {
    /// Stops accepting and lets requests in flight finish (bounded), as on SIGTERM.
    Graceful,
    /// Every socket closed at once, as when the process is killed.
    Kill,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = sh(&["ip", "netns", "del", &self.netns]) {
            eprintln!("removing node: {e}");
        }
    }
}

/// An echo pod on a node; stops gracefully when dropped.
#[derive(Debug)]
pub struct Pod {
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Pod {
    /// Kills the pod: its sockets close at once, connections and requests in flight
    /// included (a crashed or OOM-killed container).
    pub fn kill(mut self) {
        self.end(Stop::Kill);
    }

    fn end(&mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.end(Stop::Graceful);
    }
}
