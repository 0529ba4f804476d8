//! A pod network for local end-to-end runs: one network namespace standing for every
//! pod of a node, joined to the host by a veth pair, with a /24 of its own. Processes
//! started through [`PodNetwork::command`] run inside it and listen on pod addresses
//! that a real API server accepts in EndpointSlices (not loopback), and the host (the
//! operator, the runner) reaches them through the veth as a node reaches its pods.
//!
//! ```text
//!   host                                      netns pn<pid>x<n> ("the pods")
//!   ph<pid>x<n>  10.244.K.1/24  ───veth───  pp<pid>x<n>  10.244.K.2 .. .254 /24
//!   (route 10.244.K.0/24 on the link)         default via 10.244.K.1
//!                                              lo up
//! ```
//!
//! Every pod gets an address of its own from [`PodNetwork::allocate`] (added to the
//! namespace's end of the veth) and gives it back with [`PodNetwork::release`]. `K` is
//! picked so that no route of the host covers the /24 yet, and names carry the process
//! id and a counter, so that parallel tests and runners do not collide. Dropping the
//! network deletes the namespace and the veth pair (processes still inside keep the
//! namespace alive until they exit: stop them first).
//!
//! Needs root (`CAP_NET_ADMIN`) and iproute2; [`PodNetwork::unavailable`] says why not
//! where it cannot work.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Unique names within this process.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The /16 the pod networks' /24s are taken from (Kubernetes' usual pod CIDR).
const POD_CIDR_PREFIX: [u8; 2] = [10, 244];

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("pod networks need root (CAP_NET_ADMIN): {0}")]
    Unavailable(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("no free /24 left in 10.244.0.0/16 on this host")]
    NoSubnet,
    #[error("pod network {name}: every address of {subnet}.0/24 is in use")]
    Exhausted { name: String, subnet: String },
}

/// A network namespace joined to the host by a veth pair (see the module docs).
#[derive(Debug)]
pub struct PodNetwork {
    name: String,
    host_link: String,
    third_octet: u8,
    /// Host parts (2..=254) handed out and not given back.
    used: Mutex<BTreeSet<u8>>,
    /// Host parts already added to the namespace's interface (reused without a
    /// second `ip addr add`).
    configured: Mutex<BTreeSet<u8>>,
}

impl PodNetwork {
    /// Why pod networks cannot be made here, if they cannot.
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Some("not root".to_owned());
        }
        if let Err(e) = run(&["ip", "netns", "list"]) {
            return Some(format!("no usable `ip netns`: {e}"));
        }
        None
    }

    /// Creates the namespace, the veth pair, their addresses and routes.
    pub fn create() -> Result<Self, NetnsError> {
        if let Some(why) = Self::unavailable() {
            return Err(NetnsError::Unavailable(why));
        }
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let third_octet = free_subnet(std::process::id())?;
        let network = PodNetwork {
            name: format!("pn{id}"),
            host_link: format!("ph{id}"),
            third_octet,
            used: Mutex::default(),
            configured: Mutex::default(),
        };
        // From here on, Drop removes whatever part was made.
        let (ns, host) = (network.name.as_str(), network.host_link.as_str());
        let pod_link = format!("pp{id}");
        let host_ip = format!("{}/24", network.host_ip());
        let gateway = network.host_ip().to_string();
        let steps: [&[&str]; 7] = [
            &["ip", "netns", "add", ns],
            &[
                "ip", "link", "add", host, "type", "veth", "peer", "name", &pod_link, "netns", ns,
            ],
            &["ip", "addr", "add", &host_ip, "dev", host],
            &["ip", "link", "set", host, "up"],
            &["ip", "-n", ns, "link", "set", "lo", "up"],
            &["ip", "-n", ns, "link", "set", &pod_link, "up"],
            &[
                "ip",
                "-n",
                ns,
                "addr",
                "add", // the first pod address carries the route
                &format!("{}/24", network.address(2)),
                "dev",
                &pod_link,
            ],
        ];
        for step in steps {
            run(step)?;
        }
        run(&["ip", "-n", ns, "route", "add", "default", "via", &gateway])?;
        if let Ok(mut configured) = network.configured.lock() {
            configured.insert(2);
        }
        tracing::debug!(netns = %network.name, subnet = %network.subnet(), "pod network created");
        Ok(network)
    }

    /// The namespace's name (for `ip netns exec`, `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on the pod network (where pods reach the host).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// The network, as `10.244.K.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", self.address(0))
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(
            POD_CIDR_PREFIX[0],
            POD_CIDR_PREFIX[1],
            self.third_octet,
            host,
        )
    }

    /// Routes `cidr` from the host into the pod network (addresses that stand for the
    /// pods, such as load balancer addresses the host DNATs: replies then come back
    /// the same way). The route goes with the veth.
    pub fn route_to_pods(&self, cidr: &str) -> Result<(), NetnsError> {
        run(&["ip", "route", "replace", cidr, "dev", &self.host_link])
    }

    /// The third octet `K` of this network's `10.244.K.0/24`: unique among the pod
    /// networks of this host, to derive other per-network ranges from.
    pub fn index(&self) -> u8 {
        self.third_octet
    }

    /// A pod address nobody else holds, configured in the namespace.
    pub fn allocate(&self) -> Result<Ipv4Addr, NetnsError> {
        let exhausted = || NetnsError::Exhausted {
            name: self.name.clone(),
            subnet: format!(
                "{}.{}.{}",
                POD_CIDR_PREFIX[0], POD_CIDR_PREFIX[1], self.third_octet
            ),
        };
        let host = {
            let mut used = self.used.lock().map_err(|_| exhausted())?;
            let host = (2..=254u8)
                .find(|h| !used.contains(h))
                .ok_or_else(exhausted)?;
            used.insert(host);
            host
        };
        let fresh = self
            .configured
            .lock()
            .map(|c| !c.contains(&host))
            .unwrap_or(true);
        if fresh {
            let pod_link = self.host_link.replacen("ph", "pp", 1);
            let cidr = format!("{}/24", self.address(host));
            if let Err(e) = run(&[
                "ip", "-n", &self.name, "addr", "add", &cidr, "dev", &pod_link,
            ]) {
                self.release(self.address(host));
                return Err(e);
            }
            if let Ok(mut configured) = self.configured.lock() {
                configured.insert(host);
            }
        }
        Ok(self.address(host))
    }

    /// Gives an address back for another pod (it stays configured: harmless, and the
    /// next pod needs no `ip addr add`).
    pub fn release(&self, ip: Ipv4Addr) {
        let [a, b, c, host] = ip.octets();
        if [a, b, c] == [POD_CIDR_PREFIX[0], POD_CIDR_PREFIX[1], self.third_octet]
            && let Ok(mut used) = self.used.lock()
        {
            used.remove(&host);
        }
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs
    /// the program: the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command
            .arg("netns")
            .arg("exec")
            .arg(&self.name)
            .arg(program);
        command
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        // Best effort, both: the namespace takes its veth end (and so the pair) with it
        // once no process holds it; the host end is deleted in case one still does.
        for step in [
            vec!["ip", "link", "del", self.host_link.as_str()],
            vec!["ip", "netns", "del", self.name.as_str()],
        ] {
            if let Err(error) = run(&step) {
                tracing::debug!(%error, "cleaning up a pod network");
            }
        }
    }
}

/// A third octet `K` such that no host route covers `10.244.K.0/24`, starting from a
/// value derived from `seed` so that parallel processes start apart.
fn free_subnet(seed: u32) -> Result<u8, NetnsError> {
    let routes = output(&["ip", "-4", "route", "show", "table", "all"])?;
    let taken = |k: u8| {
        let prefix = format!("{}.{}.{k}.", POD_CIDR_PREFIX[0], POD_CIDR_PREFIX[1]);
        routes.lines().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|d| d.starts_with(&prefix))
        })
    };
    let start = seed % 250;
    (0..250u32)
        .map(|i| u8::try_from((start + i) % 250 + 1).unwrap_or(1))
        .find(|k| !taken(*k))
        .ok_or(NetnsError::NoSubnet)
}

fn run(args: &[&str]) -> Result<(), NetnsError> {
    output(args).map(drop)
}

fn output(args: &[&str]) -> Result<String, NetnsError> {
    let fail = |message: String| NetnsError::Command {
        command: args.join(" "),
        message,
    };
    let (program, rest) = args.split_first().ok_or_else(|| fail("empty".to_owned()))?;
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn pods_listen_on_their_addresses_and_the_host_reaches_them() {
        if let Some(why) = PodNetwork::unavailable() {
            eprintln!("SKIPPED: pod network test needs root ({why})");
            return;
        }
        let net = PodNetwork::create().unwrap();
        let (a, b) = (net.allocate().unwrap(), net.allocate().unwrap());
        assert_ne!(a, b);
        assert!(!a.is_loopback());

        // A socket made inside the namespace stays there: bind it on a thread that
        // joined the namespace, then reach it from the host through the veth.
        let ns = std::fs::File::open(std::path::Path::new("/run/netns").join(net.name())).unwrap();
        let listener = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind((a, 0)).unwrap()
        })
        .join()
        .unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (client, (_, peer)) = (client.unwrap(), server.unwrap());
        assert_eq!(peer.ip(), std::net::IpAddr::V4(net.host_ip()));
        drop(client);

        // Commands run inside: they see the pod addresses.
        let out = net
            .command("ip")
            .args(["-4", "addr"])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&a.to_string()) && text.contains(&b.to_string()),
            "{text}"
        );

        // Released addresses are handed out again.
        net.release(a);
        assert_eq!(net.allocate().unwrap(), a);
        let name = net.name().to_owned();
        drop(net);
        let list = output(&["ip", "netns", "list"]).unwrap();
        assert!(!list.contains(&name), "{name} still there: {list}");
    }
}
