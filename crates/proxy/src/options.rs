//! Tunables of the data plane that do not come from the routing config.

use std::time::Duration;

/// Process-level settings of the proxy. The routing config (`Config`) says *what* to
/// serve; these say *how*: timeouts, pool sizes, and how listeners bind.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// How long to wait for a TCP connection to an upstream endpoint. A connect that
    /// does not finish in time is answered with 503, like a refused one.
    pub connect_timeout: Duration,
    /// How long a downstream HTTP/1 client may take to send the request head. Protects
    /// against slow-loris clients holding connections open.
    pub request_header_timeout: Duration,
    /// Idle keep-alive connections kept per upstream endpoint.
    pub max_idle_upstream_per_host: usize,
    /// How long an idle upstream connection stays in the pool.
    pub upstream_idle_timeout: Duration,
    /// How long in-flight requests may run after a listener stops accepting (on
    /// `shutdown` or when a config removes the listener) before their connections are
    /// closed.
    pub drain_timeout: Duration,
    /// Bind every listener on an ephemeral port (port 0) whatever port the config says;
    /// `ProxyHandle::bound_addrs` tells which port each got. For tests and local runs
    /// where the configured ports (80, 443) are taken or privileged. A listener whose
    /// configured port is 0 binds an ephemeral port in any case.
    pub ephemeral_ports: bool,
    /// Reject a config (`ProxyHandle::update` fails, the running config stays) when one
    /// of its listeners cannot bind, instead of serving the others and reporting it. The
    /// config stream client sets this so that such a config becomes a NACK; standalone
    /// mode leaves it off and reports the listener.
    pub reject_unbindable: bool,
    /// TCP and TLS stream routes: a forwarded connection on which no byte moved in
    /// either direction for this long is closed (both sides), so that dead peers do not
    /// hold sockets forever.
    pub stream_idle_timeout: Duration,
    /// UDP routes: a client flow (client address and port -> one backend socket) that
    /// saw no datagram in either direction for this long is forgotten and its socket
    /// closed; the client's next datagram opens a new flow.
    pub udp_idle_timeout: Duration,
    /// UDP routes: flows kept per listener. Datagrams of new clients are dropped while
    /// the table is full (established flows keep working).
    pub max_udp_flows: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_header_timeout: Duration::from_secs(30),
            max_idle_upstream_per_host: 64,
            upstream_idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(10),
            ephemeral_ports: false,
            reject_unbindable: false,
            stream_idle_timeout: Duration::from_secs(3600),
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_flows: 16_384,
        }
    }
}
