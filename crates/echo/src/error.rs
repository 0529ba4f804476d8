use std::net::SocketAddr;

/// Why the echo server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the bound address of the listener for {addr}: {source}")]
    LocalAddr {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("unusable TLS certificate: {reason}")]
    Certificate { reason: String },
}
