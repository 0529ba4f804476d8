use std::net::{Ipv4Addr, SocketAddr};

use portico_echo::{EchoConfig, EchoError, EchoServer, Identity};

/// An in-process `portico-echo` on 127.0.0.1 with a free port, standing in for one pod of
/// a backend Service. Stops when dropped.
#[derive(Debug)]
pub struct EchoBackend {
    server: EchoServer,
    identity: Identity,
}

impl EchoBackend {
    /// Starts a backend answering as `pod` of `service` in `namespace`.
    pub async fn start(
        pod: impl Into<String>,
        namespace: impl Into<String>,
        service: impl Into<String>,
    ) -> Result<Self, EchoError> {
        let identity = Identity::new(pod, namespace, service);
        let server = portico_echo::serve(EchoConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            identity: identity.clone(),
            ..EchoConfig::default()
        })
        .await?;
        Ok(Self { server, identity })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn pod(&self) -> &str {
        &self.identity.pod
    }

    pub fn namespace(&self) -> &str {
        &self.identity.namespace
    }

    pub fn service(&self) -> &str {
        &self.identity.service
    }

    /// Stops the backend and waits for its connections to close.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}
