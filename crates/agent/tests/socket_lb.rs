//! Privileged tests of the socket load balancer: real connects and datagrams from a
//! client namespace, through the programs attached to the lab's cgroup, to backends in
//! another namespace. They skip (loudly) without root and BPF; CI runs them as root.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Lab, replies, service, tcp_service};
use portico_agent::Protocol;

const VIP: &str = "10.123.100.10:80";
const VIP_PEER: &str = "10.123.100.10:80";

#[test]
fn tcp_connects_to_a_service_reach_its_backends_by_weight() {
    let Some(mut lab) = Lab::new("tcp_connects_to_a_service_reach_its_backends_by_weight") else {
        return;
    };
    let b1 = lab.tcp_backend("10.123.0.2", "b1");
    let b2 = lab.tcp_backend("10.123.0.3", "b2");
    let mut dp = lab.datapath();
    dp.upsert_service(&tcp_service(VIP, &[(b1, 1), (b2, 3)]))
        .unwrap();

    let lines = lab.probe(&["tcp", VIP, "--count", "200"]);
    // getpeername shows the service address, not the backend's.
    let got = replies(&lines, VIP_PEER);
    let n1 = got.iter().filter(|r| *r == "b1").count();
    let n2 = got.iter().filter(|r| *r == "b2").count();
    assert_eq!(n1 + n2, 200, "{got:?}");
    // Expected 50 and 150; the bounds are four standard deviations away.
    assert!(
        (25..=75).contains(&n1),
        "b1 got {n1} of 200 with weight 1 of 4"
    );

    // Addresses that are not services are left alone.
    let direct = lab.probe(&["tcp", &b1.to_string()]);
    assert_eq!(replies(&direct, &b1.to_string()), ["b1"]);
}

#[test]
fn udp_to_a_service_is_answered_from_the_service_address_and_sticks_per_socket() {
    let Some(mut lab) = Lab::new("udp_to_a_service_is_answered_from_the_service_address") else {
        return;
    };
    let u1 = lab.udp_backend("10.123.0.2", "u1");
    let u2 = lab.udp_backend("10.123.0.3", "u2");
    let mut dp = lab.datapath();
    dp.upsert_service(&service(
        "10.123.100.53:53",
        Protocol::Udp,
        &[(u1, 1), (u2, 1)],
    ))
    .unwrap();

    let lines = lab.probe(&[
        "udp",
        "10.123.100.53:53",
        "--count",
        "20",
        "--per-socket",
        "3",
    ]);
    // recvfrom reports the service address as the source of every reply.
    let got = replies(&lines, "10.123.100.53:53");
    assert_eq!(got.len(), 60);
    for socket in got.chunks(3) {
        assert!(
            socket.iter().all(|r| *r == socket[0]),
            "a socket moved: {socket:?}"
        );
    }
    assert!(
        got.iter().any(|r| r == "u1") && got.iter().any(|r| r == "u2"),
        "{got:?}"
    );
}

#[test]
fn a_service_without_backends_refuses_connections() {
    let Some(lab) = Lab::new("a_service_without_backends_refuses_connections") else {
        return;
    };
    let mut dp = lab.datapath();
    dp.upsert_service(&tcp_service(VIP, &[])).unwrap();
    dp.upsert_service(&service("10.123.100.53:53", Protocol::Udp, &[]))
        .unwrap();

    // As with kube-proxy's REJECT rule: ECONNREFUSED, at once.
    assert_eq!(
        lab.probe(&["tcp", VIP]),
        ["error kind=ConnectionRefused os=111"]
    );
    assert_eq!(
        lab.probe(&["udp", "10.123.100.53:53"]),
        ["error kind=ConnectionRefused os=111"]
    );
}

#[test]
fn removing_a_backend_diverts_new_connections_and_keeps_established_ones() {
    let Some(mut lab) = Lab::new("removing_a_backend_diverts_new_connections") else {
        return;
    };
    let b1 = lab.tcp_backend("10.123.0.2", "b1");
    let b2 = lab.tcp_backend("10.123.0.3", "b2");
    let mut dp = lab.datapath();
    dp.upsert_service(&tcp_service(VIP, &[(b1, 1), (b2, 1)]))
        .unwrap();

    let (mut held, first) = lab.hold(VIP);
    let held_backend = replies(&[first], VIP_PEER).remove(0);
    let (gone, stays, stays_name) = if held_backend == "b1" {
        (b1, b2, "b2")
    } else {
        (b2, b1, "b1")
    };
    dp.upsert_service(&tcp_service(VIP, &[(stays, 1)])).unwrap();
    assert_eq!(dp.list().unwrap(), [tcp_service(VIP, &[(stays, 1)])]);

    let got = replies(&lab.probe(&["tcp", VIP, "--count", "30"]), VIP_PEER);
    assert!(
        got.iter().all(|r| r == stays_name),
        "{got:?} after removing {gone}"
    );
    assert_eq!(held.echo("still there"), "echo still there");
}

#[test]
fn a_restarted_agent_adopts_the_pinned_maps_and_breaks_nothing() {
    let Some(mut lab) = Lab::new("a_restarted_agent_adopts_the_pinned_maps") else {
        return;
    };
    let b1 = lab.tcp_backend("10.123.0.2", "b1");
    let b2 = lab.tcp_backend("10.123.0.4", "b2");
    let entry = tcp_service(VIP, &[(b1, 2), (b2, 1)]);
    let mut dp = lab.datapath();
    dp.upsert_service(&entry).unwrap();
    let (mut held, _) = lab.hold(VIP);

    // The agent goes away: the pinned links keep the programs attached.
    drop(dp);
    let got = replies(&lab.probe(&["tcp", VIP, "--count", "10"]), VIP_PEER);
    assert_eq!(got.len(), 10);
    assert_eq!(
        portico_agent::list_pinned(&lab.pin_dir).unwrap(),
        vec![entry.clone()]
    );

    // A new agent adopts the maps and replaces the programs.
    let mut dp = lab.datapath();
    assert_eq!(dp.list().unwrap(), vec![entry.clone()]);
    let stats = dp.sync(std::slice::from_ref(&entry)).unwrap();
    assert_eq!(stats.unchanged, 1);
    let got = replies(&lab.probe(&["tcp", VIP, "--count", "40"]), VIP_PEER);
    assert!(
        got.iter().any(|r| r == "b1") && got.iter().any(|r| r == "b2"),
        "{got:?}"
    );
    assert_eq!(held.echo("after restart"), "echo after restart");

    // Deleting the service stops the rewriting: the VIP itself is not routable here.
    assert!(dp.delete_service(&entry.frontend).unwrap());
    let lines = lab.probe(&["tcp", VIP, "--timeout-ms", "500"]);
    assert!(lines[0].starts_with("error"), "{lines:?}");
}
