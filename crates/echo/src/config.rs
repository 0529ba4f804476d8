//! What the echo server needs to start: where to listen and who it is.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The address echo-basic listens on for HTTP (`HTTP_PORT` defaults to 3000 there).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 3000));

/// How long [`crate::EchoServer::shutdown`] lets open connections finish by default.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this echo server claims to be; every answer reports it, so a client behind a
/// load balancer can tell which backend answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Pod name; also reported as `environment.HOSTNAME`.
    pub pod: String,
    pub namespace: String,
    /// The Service the pod stands behind.
    pub service: String,
    /// echo-basic's `ingress` field (its `INGRESS_NAME`); usually empty.
    pub ingress: String,
}

impl Identity {
    pub fn new(
        pod: impl Into<String>,
        namespace: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            pod: pod.into(),
            namespace: namespace.into(),
            service: service.into(),
            ingress: String::new(),
        }
    }
}

/// Configuration of one echo server. Built from flags by the binary, or as a value by
/// tests (`EchoConfig { listen: "127.0.0.1:0".parse()?, ..Default::default() }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// Address to bind; port 0 picks a free port, read it back with
    /// [`crate::EchoServer::local_addr`].
    pub listen: SocketAddr,
    pub identity: Identity,
    /// Upper bound on the graceful part of shutdown: after it, connections still open
    /// are dropped.
    pub drain_timeout: Duration,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            identity: Identity::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}
