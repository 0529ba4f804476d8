//! The runner plays kube-proxy: traffic to a Service's frontends (load balancer
//! addresses, and with `portico dev-cluster` also ClusterIPs and NodePorts) is DNATed
//! to its backends, with one nftables table of the run's own, in the host (and, for
//! `dev-cluster`, also inside the pod network namespace, where client pods dial
//! ClusterIPs).
//!
//! ```text
//!   runner ── 10.245.K.7:80 ──> nat output: ip daddr 10.245.K.7 tcp dport 80
//!                                          dnat to 10.244.K.2:2xxxx ──veth──> proxy pod
//!   Service portico-gateway-x: status.loadBalancer.ingress[].ip = 10.245.K.7 (LB-IPAM)
//!                              spec.ports[] {port 80, protocol TCP, targetPort 2xxxx}
//!   dev-cluster: ip daddr 10.96.0.12 tcp dport 8080
//!                  dnat to numgen random mod 2 map { 0 : pod1 . 3000, 1 : pod2 . 3000 }
//! ```
//!
//! The case runner then dials the addresses in Gateway statuses unchanged, with
//! redirects, UDP and gRPC, as a client of a cluster would. The rules follow the
//! Services on every poll (only rewritten when they change); the table is deleted when
//! the run ends. Each frontend picks a backend at random per connection, as
//! kube-proxy's iptables mode does.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use portico_api::k8s::{IntOrString, Service};

/// One DNAT: (frontend address, protocol, port) -> one of the backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    pub(crate) address: Ipv4Addr,
    /// `tcp` or `udp`.
    pub(crate) protocol: &'static str,
    pub(crate) port: u16,
    /// Never empty (a frontend without backends gets no rule).
    pub(crate) backends: Vec<SocketAddrV4>,
}

/// The DNAT rules of one run.
#[derive(Debug)]
pub(crate) struct KubeProxy {
    table: String,
    proxy_ip: Ipv4Addr,
    /// Write the table inside this network namespace instead of the host.
    netns: Option<String>,
    current: Option<BTreeSet<Rule>>,
}

impl KubeProxy {
    /// Rules to `proxy_ip` in table `ip <table>` (created on the first sync).
    pub(crate) fn new(table: String, proxy_ip: Ipv4Addr) -> Self {
        Self {
            table,
            proxy_ip,
            netns: None,
            current: None,
        }
    }

    /// The same, with the table inside network namespace `netns`.
    pub(crate) fn in_netns(table: String, proxy_ip: Ipv4Addr, netns: &str) -> Self {
        Self {
            table,
            proxy_ip,
            netns: Some(netns.to_owned()),
            current: None,
        }
    }

    /// Brings the rules in line with `services` (their load balancer addresses).
    pub(crate) fn sync(&mut self, services: &[Service]) -> Result<(), String> {
        self.write(rules(services, self.proxy_ip))
    }

    /// Writes `rules` unless they are the ones in place: for locally generated traffic
    /// (output) and traffic arriving from elsewhere, pods included (prerouting).
    pub(crate) fn write(&mut self, rules: BTreeSet<Rule>) -> Result<(), String> {
        if self.current.as_ref() == Some(&rules) {
            return Ok(());
        }
        let mut script = format!(
            "add table ip {t}\nflush table ip {t}\ntable ip {t} {{\n",
            t = self.table
        );
        for (chain, hook) in [("output", "output"), ("prerouting", "prerouting")] {
            script.push_str(&format!(
                "  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;\n"
            ));
            for r in &rules {
                script.push_str(&format!(
                    "    ip daddr {} {} dport {} dnat to {}\n",
                    r.address,
                    r.protocol,
                    r.port,
                    targets(&r.backends)
                ));
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        nft(self.netns.as_deref(), &script)?;
        tracing::debug!(table = %self.table, rules = rules.len(), "kube-proxy rules written");
        self.current = Some(rules);
        Ok(())
    }

    /// Deletes the table (best effort: the run is ending).
    pub(crate) fn remove(&mut self) {
        if self.current.take().is_some()
            && let Err(error) = nft(
                self.netns.as_deref(),
                &format!("delete table ip {}\n", self.table),
            )
        {
            tracing::warn!(%error, table = %self.table, "cannot delete the kube-proxy table");
        }
    }
}

/// The `dnat to` argument: the backend, or a random pick among several.
fn targets(backends: &[SocketAddrV4]) -> String {
    match backends {
        [one] => one.to_string(),
        many => {
            let entries: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, b)| format!("{i} : {} . {}", b.ip(), b.port()))
                .collect();
            format!(
                "numgen random mod {} map {{ {} }}",
                many.len(),
                entries.join(", ")
            )
        }
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The rules `services` ask for: every LoadBalancer Service with an IPv4 ingress
/// address and numeric target ports (the operator's Gateway Services have both), to
/// the proxy at `proxy_ip`.
pub(crate) fn rules(services: &[Service], proxy_ip: Ipv4Addr) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let addresses: Vec<Ipv4Addr> = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        for port in spec.ports.iter().flatten() {
            let protocol = match port.protocol.as_deref() {
                None | Some("TCP") => "tcp",
                Some("UDP") => "udp",
                Some(_) => continue,
            };
            // "targetPort [...] If this is not specified, the value of the 'port' field
            // is used." A named port would need the proxy pod's spec: ours are numbers.
            let target = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(_)) => None,
            };
            let (Ok(port_number), Some(Ok(target_port))) =
                (u16::try_from(port.port), target.map(u16::try_from))
            else {
                continue;
            };
            for address in &addresses {
                out.insert(Rule {
                    address: *address,
                    protocol,
                    port: port_number,
                    backends: vec![SocketAddrV4::new(proxy_ip, target_port)],
                });
            }
        }
    }
    out
}

/// Runs `nft -f -` with `script`, inside `netns` if given.
fn nft(netns: Option<&str>, script: &str) -> Result<(), String> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    let mut child = command
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the kube-proxy rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn load_balancer_ports_map_to_target_ports() {
        let services: Vec<Service> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "portico-gateway-a", "namespace": "ns"},
             "spec": {"type": "LoadBalancer", "ports": [
                 {"name": "http", "port": 80, "targetPort": 21234},
                 {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 25353},
                 {"name": "named", "port": 81, "targetPort": "web"}]},
             "status": {"loadBalancer": {"ingress": [{"ip": "10.245.3.7"}]}}},
            {"metadata": {"name": "pending", "namespace": "ns"},
             "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 20001}]}},
            {"metadata": {"name": "cluster-ip", "namespace": "ns"},
             "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
        ]))
        .unwrap();
        let proxy: Ipv4Addr = "10.244.3.2".parse().unwrap();
        let got: Vec<Rule> = rules(&services, proxy).into_iter().collect();
        let ip: Ipv4Addr = "10.245.3.7".parse().unwrap();
        assert_eq!(
            got,
            vec![
                Rule {
                    address: ip,
                    protocol: "tcp",
                    port: 80,
                    backends: vec![SocketAddrV4::new(proxy, 21234)]
                },
                Rule {
                    address: ip,
                    protocol: "udp",
                    port: 53,
                    backends: vec![SocketAddrV4::new(proxy, 25353)]
                },
            ]
        );
    }

    #[test]
    fn several_backends_are_picked_at_random() {
        let one: SocketAddrV4 = "10.244.3.2:3000".parse().unwrap();
        let two: SocketAddrV4 = "10.244.3.3:3001".parse().unwrap();
        assert_eq!(targets(&[one]), "10.244.3.2:3000");
        assert_eq!(
            targets(&[one, two]),
            "numgen random mod 2 map { 0 : 10.244.3.2 . 3000, 1 : 10.244.3.3 . 3001 }"
        );
    }
}
