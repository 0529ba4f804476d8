//! Ports below 1024: upstream Gateways listen on 80 (and 443), which only root may bind
//! unless the kernel's unprivileged port range says otherwise. The check runs before
//! the listeners are bound so that the failure says what to do instead of surfacing as
//! a bind error in a status.

use portico_api::names;
use serde_json::Value;

use super::cluster::Cluster;

/// Where Linux keeps the first port an unprivileged process may bind.
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// Fails when a Gateway of our class listens on a port this process may not bind.
pub(crate) fn check_ports(cluster: &Cluster, class_name: &str) -> Result<(), String> {
    if effective_uid() == Some(0) {
        return Ok(());
    }
    let start = std::fs::read_to_string(UNPRIVILEGED_PORT_START)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1024);
    let mut low = Vec::new();
    for (key, gateway) in cluster.list(names::kind::GATEWAY) {
        if gateway
            .pointer("/spec/gatewayClassName")
            .and_then(Value::as_str)
            != Some(class_name)
        {
            continue;
        }
        for listener in gateway
            .pointer("/spec/listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(port) = listener["port"].as_u64().filter(|p| *p < start) {
                low.push(format!(
                    "{key} listener {} port {port}",
                    listener["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    if low.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Gateways listen on ports below {start}, which only root may bind ({}): run as root, \
         or allow it with `sysctl net.ipv4.ip_unprivileged_port_start=0`",
        low.join(", ")
    ))
}

/// The effective user id, from /proc (no libc call: unsafe code is forbidden here).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

/// `Uid:` lists real, effective, saved and filesystem ids.
fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_is_the_second_field() {
        assert_eq!(
            parse_effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"),
            Some(0)
        );
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
        assert!(effective_uid().is_some());
    }
}
