//! Privileged tests of Gateway steering: connections from a client namespace to a Gateway
//! Service's address reach a "proxy" listener in the node namespace (the lab's backend
//! namespace) that is bound to another address and port, and the proxy sees the address
//! the client dialled. Skip (loudly) without root and BPF.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Lab, replies, service, tcp_service};
use portico_agent::maps::flags;
use portico_agent::{LocalRoutes, Protocol, Steering};

const GATEWAY_IP: &str = "10.123.200.10";

fn gateway(port: u16) -> portico_agent::ServiceEntry {
    let mut entry = tcp_service(&format!("{GATEWAY_IP}:{port}"), &[]);
    entry.flags = flags::GATEWAY;
    entry
}

#[test]
fn gateway_traffic_reaches_the_node_proxy_with_its_original_destination() {
    let Some(mut lab) = Lab::new("gateway_traffic_reaches_the_node_proxy") else {
        return;
    };
    // The client reaches Gateway addresses through the node, which delivers them locally.
    lab.ip(
        false,
        &["route", "add", "10.123.200.0/24", "via", "10.123.0.2"],
    );
    let routes = LocalRoutes {
        netns: Some(lab.backend_ns.clone()),
    };
    routes.add(GATEWAY_IP.parse().unwrap()).unwrap();
    // Idempotent, as the agent re-applies it on every sync.
    routes.add(GATEWAY_IP.parse().unwrap()).unwrap();
    // The route the agent sent over netlink is the one iproute2 would have made.
    assert_eq!(
        local_routes(&lab.backend_ns),
        format!("local {GATEWAY_IP} dev lo scope host")
    );

    let (proxy_addr, proxy_socket) = lab.proxy_listener("127.0.0.1");
    let mut dp = lab.datapath();
    dp.upsert_service(&gateway(80)).unwrap();
    dp.upsert_service(&gateway(8080)).unwrap();
    let mut steering = Steering::load(&lab.pin_dir, &lab.backend_netns_path()).unwrap();

    // No proxy registered yet: nothing listens on the Gateway address.
    let lines = lab.probe(&["tcp", &format!("{GATEWAY_IP}:80"), "--timeout-ms", "1000"]);
    assert_eq!(lines, ["error kind=ConnectionRefused os=111"]);

    steering
        .set_proxy_socket(Protocol::Tcp, &proxy_socket)
        .unwrap();
    for port in [80, 8080] {
        let vip = format!("{GATEWAY_IP}:{port}");
        let got = lab.probe(&["tcp", &vip, "--count", "3"]);
        // The client sees the address it dialled; the proxy, bound to
        // {proxy_addr}, accepted the connection on that same address.
        assert_eq!(
            replies(&got, &vip),
            vec![format!("local={vip}"); 3],
            "{proxy_addr}"
        );
    }

    // A port of the Gateway address that is not a Gateway Service is not steered.
    let lines = lab.probe(&["tcp", &format!("{GATEWAY_IP}:81"), "--timeout-ms", "1000"]);
    assert_eq!(lines, ["error kind=ConnectionRefused os=111"]);

    // Unregistering the proxy stops the steering.
    assert!(steering.clear_proxy_socket(Protocol::Tcp).unwrap());
    let lines = lab.probe(&["tcp", &format!("{GATEWAY_IP}:80"), "--timeout-ms", "1000"]);
    assert_eq!(lines, ["error kind=ConnectionRefused os=111"]);
    routes.remove(GATEWAY_IP.parse().unwrap()).unwrap();
    routes.remove(GATEWAY_IP.parse().unwrap()).unwrap();
    assert_eq!(local_routes(&lab.backend_ns), "");
}

/// `ip route show table local <GATEWAY_IP>` in the namespace `ns`, trimmed.
fn local_routes(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "route", "show", "table", "local", GATEWAY_IP])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_proxy_registers_through_the_pinned_map_and_survives_an_agent_restart() {
    let Some(mut lab) = Lab::new("a_proxy_registers_through_the_pinned_map") else {
        return;
    };
    lab.ip(
        false,
        &["route", "add", "10.123.200.0/24", "via", "10.123.0.2"],
    );
    lab.ip(
        true,
        &["route", "add", "local", "10.123.200.0/24", "dev", "lo"],
    );
    let (_, proxy_socket) = lab.proxy_listener("10.123.0.2");
    let mut dp = lab.datapath();
    dp.upsert_service(&gateway(443)).unwrap();
    // A plain ClusterIP service beside it is still balanced by the socket LB.
    let b1 = lab.tcp_backend("10.123.0.3", "b1");
    dp.upsert_service(&service("10.123.100.10:80", Protocol::Tcp, &[(b1, 1)]))
        .unwrap();
    let steering = Steering::load(&lab.pin_dir, &lab.backend_netns_path()).unwrap();
    // The proxy process registers its own listener in the pinned SOCKMAP.
    portico_agent::register_proxy_socket(&lab.pin_dir, Protocol::Tcp, &proxy_socket).unwrap();

    let vip = format!("{GATEWAY_IP}:443");
    let got = lab.probe(&["tcp", &vip]);
    assert_eq!(replies(&got, &vip), [format!("local={vip}")]);

    // The agent restarts: the pinned link keeps steering while none runs, and a new
    // agent adopts the SOCKMAP with the proxy's socket in it.
    drop(steering);
    let got = lab.probe(&["tcp", &vip]);
    assert_eq!(replies(&got, &vip), [format!("local={vip}")]);
    let _steering = Steering::load(&lab.pin_dir, &lab.backend_netns_path()).unwrap();
    let got = lab.probe(&["tcp", &vip, "--count", "2"]);
    assert_eq!(replies(&got, &vip), vec![format!("local={vip}"); 2]);
    let got = lab.probe(&["tcp", "10.123.100.10:80"]);
    assert_eq!(replies(&got, "10.123.100.10:80"), ["b1"]);
}
