//! The config server's socket: TLS from files (or plaintext with `--insecure`), HTTP/2
//! keepalives so that a proxy that vanished without closing its connection is noticed,
//! and a graceful stop on shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_api::config::v1::config_discovery_server::ConfigDiscoveryServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{error, info};

use crate::xds::server::ConfigServer;

/// A ping every this long on idle connections; no answer within the timeout ends the
/// connection (and the proxy's session with it).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how the config server listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// `None`: plaintext (only with an explicit `--insecure`).
    pub tls: Option<ServerTls>,
}

/// PEM files, as the Helm chart mounts them from Secrets.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate chain, signed by the CA the proxies trust.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, proxies must present a client certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration of the config server: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("binding the config server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running config server.
#[derive(Debug)]
pub struct Serving {
    /// The bound address (the port when `listen` asked for 0).
    pub addr: SocketAddr,
    /// Ends after `shutdown`, once the streams have closed.
    pub task: JoinHandle<()>,
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Binds `config.listen` and serves `server` on it until `shutdown`.
pub async fn serve(
    config: &ServeConfig,
    server: ConfigServer,
    shutdown: CancellationToken,
) -> Result<Serving, ServeError> {
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = &config.tls {
        // tonic builds its rustls server config with the process-wide provider; ring is
        // the one the workspace uses. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        let mut tls_config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca {
            tls_config = tls_config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(tls_config).map_err(ServeError::Tls)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = builder.add_service(ConfigDiscoveryServer::new(server));
    info!(%addr, tls = config.tls.is_some(), mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "config server listening");
    let task = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            error!(error = %e, "config server failed");
        }
    });
    Ok(Serving { addr, task })
}
