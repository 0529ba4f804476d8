//! Privileged tests of NodePort and LoadBalancer traffic from outside the node: a client
//! namespace dials a LoadBalancer IP or a node port of the node namespace, whose tc
//! programs translate to backends in a third namespace and translate the replies back.
//! Skip (loudly) without root and BPF.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Lab, replies, service};
use portico_agent::maps::flags;
use portico_agent::{NodePort, Protocol, ServiceEntry};

const LB_IP: &str = "10.124.200.10";
const NODE_IP: &str = "10.124.1.2";

fn external(
    frontend: &str,
    protocol: Protocol,
    backends: &[(std::net::SocketAddrV4, u32)],
) -> ServiceEntry {
    let mut entry = service(frontend, protocol, backends);
    entry.flags = flags::EXTERNAL;
    entry
}

#[test]
fn load_balancer_ips_and_node_ports_reach_backends_and_replies_come_back_from_the_frontend() {
    let Some(mut lab) = Lab::new("load_balancer_ips_and_node_ports_reach_backends") else {
        return;
    };
    let iface = lab.add_node();
    let b1 = lab.tcp_backend("10.124.2.2", "b1");
    let b2 = lab.tcp_backend("10.124.2.3", "b2");
    let u1 = lab.udp_backend("10.124.2.2", "u1");
    let mut dp = lab.datapath();
    let lb = format!("{LB_IP}:80");
    dp.upsert_service(&external(&lb, Protocol::Tcp, &[(b1, 1), (b2, 1)]))
        .unwrap();
    dp.upsert_service(&external(
        "0.0.0.0:30080",
        Protocol::Tcp,
        &[(b1, 1), (b2, 1)],
    ))
    .unwrap();
    dp.upsert_service(&external(&format!("{LB_IP}:53"), Protocol::Udp, &[(u1, 1)]))
        .unwrap();
    let nodeport = lab.in_node_ns(|| NodePort::load(&lab.pin_dir, &iface).unwrap());

    // TCP to the LoadBalancer IP: both backends answer, and the client's socket is
    // connected to the address it dialled (the replies were translated back).
    let got = replies(&lab.probe_from_outside(&["tcp", &lb, "--count", "40"]), &lb);
    assert!(
        got.iter().any(|r| r == "b1") && got.iter().any(|r| r == "b2"),
        "{got:?}"
    );

    // A node port, on the node's address.
    let np = format!("{NODE_IP}:30080");
    let got = replies(&lab.probe_from_outside(&["tcp", &np, "--count", "10"]), &np);
    assert!(got.iter().all(|r| r == "b1" || r == "b2"), "{got:?}");

    // UDP: the reply comes from the LoadBalancer IP.
    let udp = format!("{LB_IP}:53");
    let got = lab.probe_from_outside(&["udp", &udp, "--count", "3"]);
    assert_eq!(replies(&got, &udp), ["u1"; 3]);

    // Every flow was tracked both ways.
    assert!(nodeport.tracked_entries().unwrap() >= 2 * (40 + 10 + 3));
}

#[test]
fn established_flows_keep_their_backend_when_the_backends_change() {
    let Some(mut lab) = Lab::new("established_flows_keep_their_backend") else {
        return;
    };
    let iface = lab.add_node();
    let b1 = lab.tcp_backend("10.124.2.2", "b1");
    let b2 = lab.tcp_backend("10.124.2.3", "b2");
    let mut dp = lab.datapath();
    let lb = format!("{LB_IP}:80");
    dp.upsert_service(&external(&lb, Protocol::Tcp, &[(b1, 1)]))
        .unwrap();
    let _nodeport = lab.in_node_ns(|| NodePort::load(&lab.pin_dir, &iface).unwrap());

    let (mut held, first) = lab.hold_from_outside(&lb);
    assert_eq!(replies(&[first], &lb), ["b1"]);
    dp.upsert_service(&external(&lb, Protocol::Tcp, &[(b2, 1)]))
        .unwrap();
    let got = replies(&lab.probe_from_outside(&["tcp", &lb, "--count", "5"]), &lb);
    assert_eq!(got, ["b2"; 5]);
    assert_eq!(held.echo("still b1"), "echo still b1");
}

#[test]
fn external_traffic_policy_local_without_local_backends_drops() {
    let Some(mut lab) = Lab::new("external_traffic_policy_local_drops") else {
        return;
    };
    let iface = lab.add_node();
    let b1 = lab.tcp_backend("10.124.2.2", "b1");
    let mut dp = lab.datapath();
    // The source programs only this node's backends for Local; here there are none for
    // port 80 and one for port 81.
    let mut none = external(&format!("{LB_IP}:80"), Protocol::Tcp, &[]);
    none.flags |= flags::LOCAL;
    let mut local = external(&format!("{LB_IP}:81"), Protocol::Tcp, &[(b1, 1)]);
    local.flags |= flags::LOCAL;
    dp.upsert_service(&none).unwrap();
    dp.upsert_service(&local).unwrap();
    let _nodeport = lab.in_node_ns(|| NodePort::load(&lab.pin_dir, &iface).unwrap());

    // Dropped, not refused: the SYN never gets an answer.
    let lines = lab.probe_from_outside(&["tcp", &format!("{LB_IP}:80"), "--timeout-ms", "500"]);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("error kind=TimedOut"), "{lines:?}");
    let lb81 = format!("{LB_IP}:81");
    assert_eq!(
        replies(&lab.probe_from_outside(&["tcp", &lb81]), &lb81),
        ["b1"]
    );
}
