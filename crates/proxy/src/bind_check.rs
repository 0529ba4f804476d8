//! The bind check of `ProxyOptions::reject_unbindable`: before an update touches anything
//! running, every socket the new config needs and the proxy does not hold yet is bound
//! once and released. A socket that fails (the port is taken by another process, the
//! address is not local) rejects the whole config, so that the config stream can NACK it
//! while the previous config keeps serving, as xDS requires of a rejected push.
//!
//! Sockets the proxy holds already are skipped: they either stay or are replaced by this
//! very update (which stops the old one before binding the new). What is left is a race
//! with another process binding the port between the check and the real bind; the real
//! bind then reports the listener as before (`UpdateSummary::listener_errors`).

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use portico_api::config::v1::{Config, Protocol};

use crate::{
    error::{ListenerError, ProxyError},
    listener,
};

/// Checks that every listener of `config` that is not among `ours` (the bound addresses
/// of the running listeners) can bind; `effective` maps a configured address to the one
/// bound (ephemeral ports). A config whose listener addresses do not parse is left to
/// the table build, which rejects it with a better error.
pub(crate) fn check(
    config: &Config,
    ours: &BTreeMap<String, SocketAddr>,
    effective: impl Fn(SocketAddr) -> SocketAddr,
) -> Result<(), ProxyError> {
    for l in &config.listeners {
        let (Ok(ip), Ok(port)) = (l.address.parse(), u16::try_from(l.port)) else {
            continue;
        };
        let addr = effective(SocketAddr::new(ip, port));
        if ours.values().any(|held| overlaps(*held, addr)) {
            continue;
        }
        let error = |e: std::io::Error| {
            ProxyError::Unbindable(ListenerError {
                listener: l.name.clone(),
                addr,
                error: Arc::new(e),
            })
        };
        if l.protocol == Protocol::Udp as i32 {
            std::net::UdpSocket::bind(addr).map_err(error)?;
        } else {
            // The same bind (SO_REUSEADDR, SO_REUSEPORT) as the real one, so that the
            // check fails when the real bind would; without listen, so that the check
            // socket never takes a connection meant for a running proxy.
            listener::bind_only(&l.name, addr).map_err(ProxyError::Unbindable)?;
        }
    }
    Ok(())
}

/// Whether binding `wanted` would collide with the socket on `held`: same port, and the
/// same IP or either one unspecified (0.0.0.0 / :: takes the port on every address).
/// Port 0 is an ephemeral port and never collides.
fn overlaps(held: SocketAddr, wanted: SocketAddr) -> bool {
    wanted.port() != 0
        && held.port() == wanted.port()
        && (held.ip() == wanted.ip() || held.ip().is_unspecified() || wanted.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use portico_api::config::v1::Listener;

    fn config(listeners: &[(&str, &str, u16, Protocol)]) -> Config {
        Config {
            version: "v".into(),
            listeners: listeners
                .iter()
                .map(|(name, address, port, protocol)| Listener {
                    name: (*name).into(),
                    address: (*address).into(),
                    port: u32::from(*port),
                    protocol: *protocol as i32,
                    ..Listener::default()
                })
                .collect(),
            clusters: vec![],
        }
    }

    // The check binds tokio sockets, which need a runtime.
    #[tokio::test]
    async fn a_port_taken_by_another_socket_rejects_the_config() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let cfg = config(&[("busy", "127.0.0.1", port, Protocol::Http)]);
        let err = check(&cfg, &BTreeMap::new(), |a| a).unwrap_err();
        assert_eq!(err.listener(), Some("busy"));
        assert!(err.to_string().contains("cannot bind"), "{err}");
    }

    #[tokio::test]
    async fn sockets_we_hold_are_not_checked_and_free_ones_pass() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let ours = BTreeMap::from([("ours".to_owned(), held.local_addr().unwrap())]);
        // The same port again (the running listener, kept or replaced) and a free one.
        let cfg = config(&[
            ("ours", "127.0.0.1", port, Protocol::Http),
            ("new", "127.0.0.1", 0, Protocol::Http),
            ("udp", "127.0.0.1", 0, Protocol::Udp),
        ]);
        check(&cfg, &ours, |a| a).unwrap();
    }

    #[tokio::test]
    async fn a_udp_port_in_use_rejects_the_config() {
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let cfg = config(&[("dns", "127.0.0.1", port, Protocol::Udp)]);
        let err = check(&cfg, &BTreeMap::new(), |a| a).unwrap_err();
        assert_eq!(err.listener(), Some("dns"));
    }

    #[test]
    fn overlap_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("0.0.0.0:80"), a("10.0.0.1:80")));
        assert!(overlaps(a("10.0.0.1:80"), a("0.0.0.0:80")));
        assert!(!overlaps(a("10.0.0.1:80"), a("10.0.0.2:80")));
        assert!(!overlaps(a("10.0.0.1:80"), a("10.0.0.1:81")));
        assert!(!overlaps(a("127.0.0.1:0"), a("127.0.0.1:0")));
    }
}
