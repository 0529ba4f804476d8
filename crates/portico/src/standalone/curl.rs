//! The curl commands `portico standalone` suggests: one per distinct (host, path) that a
//! route answers, so a user can try every route right away.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use portico_api::config::v1::{Config, Protocol, path_match};

/// At most this many suggestions are printed; a big folder would otherwise flood the
/// terminal.
const MAX_SUGGESTIONS: usize = 12;

/// Builds curl command lines for the routes of `config`. `bound` gives the real address of
/// each listener by name (it differs from the config when the port was 0).
pub(crate) fn suggestions(
    config: &Config,
    bound: &std::collections::BTreeMap<String, SocketAddr>,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for listener in &config.listeners {
        if listener.protocol() != Protocol::Http {
            continue;
        }
        let Some(addr) = bound.get(&listener.name) else {
            continue;
        };
        let target = reachable(*addr);
        for vhost in &listener.virtual_hosts {
            for group in &vhost.host_routes {
                let host = example_host(&group.hostname).or_else(|| example_host(&vhost.hostname));
                for route in &group.routes {
                    let path = route
                        .r#match
                        .as_ref()
                        .and_then(|m| m.path.as_ref())
                        .filter(|p| p.kind() != path_match::Kind::Regex)
                        .map_or("/", |p| p.value.as_str());
                    let line = command(host.as_deref(), target, path, route);
                    if seen.insert(line.clone()) {
                        out.push(line);
                    }
                    if out.len() == MAX_SUGGESTIONS {
                        return out;
                    }
                }
            }
        }
    }
    out
}

fn command(
    host: Option<&str>,
    target: SocketAddr,
    path: &str,
    route: &portico_api::config::v1::Route,
) -> String {
    let mut line = String::from("curl -s");
    let headers = route
        .r#match
        .as_ref()
        .map(|m| m.headers.as_slice())
        .unwrap_or_default();
    for header in headers {
        line.push_str(&format!(" -H '{}: {}'", header.name, header.value));
    }
    if let Some(method) = route
        .r#match
        .as_ref()
        .map(|m| m.method.as_str())
        .filter(|m| !m.is_empty())
    {
        line.push_str(&format!(" -X {method}"));
    }
    match host {
        Some(host) => {
            let port = target.port();
            line.push_str(&format!(
                " --resolve {host}:{port}:{ip} http://{host}:{port}{path}",
                ip = target.ip()
            ));
        }
        None => line.push_str(&format!(" http://{target}{path}")),
    }
    line
}

/// A name that `pattern` matches: the name itself, or `www` under a wildcard suffix.
fn example_host(pattern: &str) -> Option<String> {
    match pattern {
        "" => None,
        wildcard if wildcard.starts_with("*.") => Some(format!("www.{}", &wildcard[2..])),
        exact => Some(exact.to_owned()),
    }
}

/// A listener bound to the unspecified address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_get_an_example_name() {
        assert_eq!(
            example_host("*.example.com").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(example_host("foo.bar.com").as_deref(), Some("foo.bar.com"));
        assert_eq!(example_host(""), None);
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8080");
    }
}
