//! Privileged tests of L2 announcements: two "node" namespaces and a client on one
//! bridge; the client asks who has a LoadBalancer IP, and only the node elected for it
//! answers. Skip (loudly) without root and BPF.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use common::{AGENT, BPFFS, sh, unavailable};
use nix::sched::{CloneFlags, setns};
use portico_agent::L2Announcer;
use portico_agent::l2::format_mac;

const LB_IP: &str = "10.125.0.100";
/// How long an answer may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bridge in the `lan` namespace (the client, 10.125.0.1) with two node namespaces on
/// it (10.125.0.2 and .3), each with its own pin directory. Removed on drop.
struct Segment {
    lan: String,
    nodes: [String; 2],
    ifaces: [String; 2],
    pin_dir: PathBuf,
}

impl Segment {
    fn new(test: &str) -> Option<Segment> {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {test}: needs root and BPF ({why})");
            return None;
        }
        let id = format!(
            "{}y{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let seg = Segment {
            lan: format!("pl{id}l"),
            nodes: [format!("pl{id}n1"), format!("pl{id}n2")],
            ifaces: [format!("e{id}n1"), format!("e{id}n2")],
            pin_dir: Path::new(BPFFS).join(format!("portico-l2-test-{id}")),
        };
        let lan = seg.lan.as_str();
        sh(&["ip", "netns", "add", lan]).unwrap();
        for args in [
            vec!["ip", "-n", lan, "link", "add", "br0", "type", "bridge"],
            vec![
                "ip",
                "-n",
                lan,
                "addr",
                "add",
                "10.125.0.1/24",
                "dev",
                "br0",
            ],
            vec!["ip", "-n", lan, "link", "set", "br0", "up"],
        ] {
            sh(&args).unwrap();
        }
        for i in 0..2 {
            let (node, iface) = (seg.nodes[i].as_str(), seg.ifaces[i].as_str());
            let port = format!("l{id}n{}", i + 1);
            let addr = format!("10.125.0.{}/24", i + 2);
            sh(&["ip", "netns", "add", node]).unwrap();
            for args in [
                vec![
                    "ip", "link", "add", &port, "netns", lan, "type", "veth", "peer", "name",
                    iface, "netns", node,
                ],
                vec!["ip", "-n", lan, "link", "set", &port, "master", "br0"],
                vec!["ip", "-n", lan, "link", "set", &port, "up"],
                vec!["ip", "-n", node, "addr", "add", &addr, "dev", iface],
                vec!["ip", "-n", node, "link", "set", iface, "up"],
            ] {
                sh(&args).unwrap();
            }
        }
        Some(seg)
    }

    /// Attaches an announcer to node `i`'s interface, from inside its namespace.
    fn announcer(&self, i: usize) -> L2Announcer {
        let ns = File::open(Path::new("/run/netns").join(&self.nodes[i])).unwrap();
        let pin_dir = self.pin_dir.join(format!("node{}", i + 1));
        let iface = self.ifaces[i].clone();
        thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            L2Announcer::load(&pin_dir, &iface, XdpMode::Skb).unwrap()
        })
        .join()
        .unwrap()
    }

    /// Makes the client resolve `ip` afresh and returns the MAC it learnt, if any
    /// answer came within `within`.
    fn resolve(&self, ip: &str, within: Duration) -> Option<String> {
        let _ = sh(&["ip", "-n", &self.lan, "neigh", "flush", "to", ip]);
        let started = Instant::now();
        for _ in 0..50 {
            if started.elapsed() > within {
                break;
            }
            // A datagram to the IP makes the kernel ask who has it.
            let _ = Command::new("ip")
                .args(["netns", "exec", &self.lan, AGENT, "probe", "udp"])
                .arg(format!("{ip}:9"))
                .args(["--timeout-ms", "100"])
                .output()
                .unwrap();
            let out = Command::new("ip")
                .args(["-n", &self.lan, "neigh", "show", "to", ip])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut words = text.split_whitespace();
            if words.any(|w| w == "lladdr") {
                return words.next().map(str::to_owned);
            }
        }
        None
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = portico_agent::remove_pinned(&self.pin_dir);
        for ns in self.nodes.iter().chain([&self.lan]) {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

#[test]
fn exactly_the_elected_node_answers_arp_for_a_load_balancer_ip() {
    let Some(seg) = Segment::new("exactly_the_elected_node_answers_arp") else {
        return;
    };
    let mut a1 = seg.announcer(0);
    let mut a2 = seg.announcer(1);
    let ip: Ipv4Addr = LB_IP.parse().unwrap();

    // Nobody announces it yet: no answer.
    // (The kernel retries ARP every second: 1.5 s is two unanswered requests.)
    assert_eq!(seg.resolve(LB_IP, Duration::from_millis(1500)), None);

    // Node 1 is elected.
    a1.announce(ip).unwrap();
    assert_eq!(a1.announced().unwrap(), [ip]);
    assert_eq!(seg.resolve(LB_IP, WAIT), Some(format_mac(&a1.mac())));
    let answered = a1.replies().unwrap();
    assert!(answered >= 1);
    assert_eq!(a2.replies().unwrap(), 0, "node 2 answered too");

    // The IP moves to node 2.
    assert!(a1.withdraw(ip).unwrap());
    a2.announce(ip).unwrap();
    assert_eq!(seg.resolve(LB_IP, WAIT), Some(format_mac(&a2.mac())));
    assert!(a2.replies().unwrap() >= 1);
    assert_eq!(a1.replies().unwrap(), answered, "node 1 still answers");
    // The node's own address is still answered by its kernel, not by the program.
    assert!(seg.resolve("10.125.0.2", WAIT).is_some());
    assert!(!a1.withdraw(ip).unwrap());
}

/// Two agents' L2 halves (Kubernetes source + Lease elections + announcer), each on its
/// "node", against the test API server: exactly one answers ARP for the Service's
/// LoadBalancer IP, and the other takes over when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_per_ip_is_elected_by_lease_and_hands_over_when_it_stops() {
    use kube::Api;
    use kube::api::{Patch, PatchParams, PostParams};
    use portico_agent::agent::SharedStatus;
    use portico_agent::l2_election::{self, ElectionConfig};
    use portico_agent::watch_kube;
    use portico_api::k8s::Service;
    use portico_testkit::apiserver::TestApiServer;
    use portico_testkit::eventually;
    use tokio_util::sync::CancellationToken;

    let Some(seg) = Segment::new("one_node_per_ip_is_elected_by_lease") else {
        return;
    };
    let ip: Ipv4Addr = LB_IP.parse().unwrap();
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.50",
                 "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    services
        .patch_status(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
            })),
        )
        .await
        .unwrap();

    struct Node {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        status: SharedStatus,
        mac: String,
    }
    let mut nodes = Vec::new();
    for i in 0..2 {
        let announcer = seg.announcer(i);
        let mac = format_mac(&announcer.mac());
        let stop = CancellationToken::new();
        let (snapshots, _source) = watch_kube::spawn(client.clone(), stop.clone());
        let mut election = ElectionConfig::new("kube-system", format!("node{}", i + 1));
        election.lease_duration = Duration::from_secs(3);
        election.renew_before = Duration::from_secs(1);
        let status = SharedStatus::default();
        let task = l2_election::spawn(
            client.clone(),
            election,
            vec![announcer],
            snapshots,
            status.clone(),
            stop.clone(),
        );
        nodes.push(Node {
            stop,
            task,
            status,
            mac,
        });
    }
    let announcing = |nodes: &[Node]| -> Vec<usize> {
        nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.status.lock().unwrap().l2_announced == [ip])
            .map(|(i, _)| i)
            .collect()
    };
    let leader = eventually(Duration::from_secs(15), || async {
        match announcing(&nodes)[..] {
            [one] => Ok(one),
            ref other => Err(format!("announcing: {other:?}")),
        }
    })
    .await
    .unwrap();
    let follower = 1 - leader;
    let mac = tokio::task::block_in_place(|| seg.resolve(LB_IP, WAIT));
    assert_eq!(mac.as_deref(), Some(nodes[leader].mac.as_str()));
    assert_eq!(announcing(&nodes), [leader], "both announce");

    // The leader's agent stops: it withdraws and releases its Lease; the other takes over.
    let gone = nodes.remove(leader);
    gone.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), gone.task)
        .await
        .unwrap()
        .unwrap();
    assert!(gone.status.lock().unwrap().l2_announced.is_empty());
    eventually(Duration::from_secs(15), || async {
        (announcing(&nodes) == [0])
            .then_some(())
            .ok_or("no take-over yet")
    })
    .await
    .unwrap();
    let mac = tokio::task::block_in_place(|| seg.resolve(LB_IP, WAIT));
    assert_eq!(
        mac.as_deref(),
        Some(nodes[0].mac.as_str()),
        "node {follower}"
    );
    for n in nodes {
        n.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), n.task).await;
    }
    server.shutdown().await;
}
