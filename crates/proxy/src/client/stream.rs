//! The config stream, proxy side: connect, say hello, apply each push and answer ACK or
//! NACK; on any break keep serving and reconnect with backoff.
//!
//! ```text
//!   connect (TLS) ──> hello{node, gateways, running_version}
//!      ^                   │
//!      │                   v
//!   backoff <── broken ── push{nonce, version, config} ──> ProxyHandle::update
//!   (jittered,                                               ├─ Ok  ──> ACK{nonce, version}
//!    reset after a                                           └─ Err ──> NACK{nonce, version, error,
//!    working stream)                                                     listener, running_version}
//! ```
//!
//! A rejected push never replaces the running config: `update` fails before it swaps
//! anything (with `ProxyOptions::reject_unbindable`, a listener that cannot bind is such a
//! failure), and the proxy keeps serving the version it names in the NACK.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use portico_api::config::v1::{
    Ack, ConfigPush, Hello, Nack, ProxyMessage, config_discovery_client::ConfigDiscoveryClient,
    proxy_message,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::backoff::Backoff;
use crate::handle::ProxyHandle;

/// HTTP/2 pings on the stream, so that an operator that vanished without closing the
/// connection (a node lost) is noticed within interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the proxy reaches the operator.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// "https://host:port" (or "http://host:port" for plaintext).
    pub operator: String,
    pub node: String,
    /// "<namespace>/<name>" of the Gateways to serve; empty for all.
    pub gateways: Vec<String>,
    /// `None`: plaintext.
    pub tls: Option<StreamTls>,
    pub connect_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

/// TLS to the operator: the CA its certificate chains to, and for mTLS our own.
#[derive(Debug, Clone)]
pub struct StreamTls {
    pub ca_pem: Vec<u8>,
    /// (certificate chain PEM, private key PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the operator's certificate must carry; the URL's host when `None`.
    pub server_name: Option<String>,
}

/// What the stream did, for the admin endpoint, logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    pub connected: bool,
    /// Streams opened (the first one and every reconnect).
    pub streams: u64,
    /// The version serving, once a pushed config was applied.
    pub applied: Option<String>,
    pub acks: u64,
    pub nacks: u64,
    /// The error of the latest NACK.
    pub last_nack: Option<String>,
    /// Why the latest stream attempt failed or broke.
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamConfigError {
    #[error("invalid operator URL {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("TLS to the operator: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// The endpoint, checked before anything starts.
pub(crate) fn endpoint(config: &StreamConfig) -> Result<Endpoint, StreamConfigError> {
    let mut endpoint = Endpoint::from_shared(config.operator.clone())
        .map_err(|source| StreamConfigError::Url {
            url: config.operator.clone(),
            source,
        })?
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            tls_config = tls_config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &tls.server_name {
            tls_config = tls_config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(StreamConfigError::Tls)?;
    }
    Ok(endpoint)
}

/// Follows the operator until `shutdown`: never returns early, whatever the operator
/// does; the proxy keeps serving its last good config in between.
pub(crate) async fn follow(
    config: StreamConfig,
    endpoint: Endpoint,
    proxy: Arc<ProxyHandle>,
    status: watch::Sender<StreamStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    loop {
        let span = info_span!("config_stream", operator = %config.operator, node = %config.node);
        let mut session = Session {
            config: &config,
            proxy: &proxy,
            status: &status,
            resources: BTreeMap::new(),
        };
        let result = session.run(&endpoint, &shutdown).instrument(span).await;
        status.send_modify(|s| s.connected = false);
        match result {
            Ok(Ended::Shutdown) => break,
            Ok(Ended::Closed { applied }) => {
                info!(operator = %config.operator, "config stream closed by the operator");
                if applied {
                    backoff.reset();
                }
            }
            Err((error, applied)) => {
                warn!(operator = %config.operator, %error, "config stream failed; serving version {:?}", proxy.version());
                status.send_modify(|s| s.last_error = Some(error));
                if applied {
                    backoff.reset();
                }
            }
        }
        let delay = backoff.next_delay();
        debug!(?delay, "reconnecting after");
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

enum Ended {
    Shutdown,
    /// `applied`: at least one push came through, so the stream worked.
    Closed {
        applied: bool,
    },
}

struct Session<'a> {
    config: &'a StreamConfig,
    proxy: &'a ProxyHandle,
    status: &'a watch::Sender<StreamStatus>,
    /// The resource versions of the running config, to log what a push changes.
    resources: BTreeMap<(i32, String), String>,
}

impl Session<'_> {
    async fn run(
        &mut self,
        endpoint: &Endpoint,
        shutdown: &CancellationToken,
    ) -> Result<Ended, (String, bool)> {
        let channel = tokio::select! {
            () = shutdown.cancelled() => return Ok(Ended::Shutdown),
            channel = endpoint.connect() => channel.map_err(|e| (chain(&e), false))?,
        };
        let mut client = ConfigDiscoveryClient::new(channel);
        let (tx, rx) = mpsc::unbounded();
        let hello = Hello {
            node: self.config.node.clone(),
            gateways: self.config.gateways.clone(),
            running_version: self.proxy.version(),
        };
        let send = |kind| {
            tx.unbounded_send(ProxyMessage { kind: Some(kind) })
                .map_err(|e| (e.to_string(), false))
        };
        send(proxy_message::Kind::Hello(hello))?;
        let mut pushes = tokio::select! {
            () = shutdown.cancelled() => return Ok(Ended::Shutdown),
            response = client.stream_config(rx) => response.map_err(|s| (s.to_string(), false))?.into_inner(),
        };
        info!(running = %self.proxy.version(), "config stream open");
        self.status.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });
        let mut applied = false;
        loop {
            let push = tokio::select! {
                () = shutdown.cancelled() => return Ok(Ended::Shutdown),
                push = pushes.message() => push.map_err(|s| (s.to_string(), applied))?,
            };
            let Some(push) = push else {
                return Ok(Ended::Closed { applied });
            };
            let reply = self.apply(push).await;
            applied |= matches!(reply, proxy_message::Kind::Ack(_));
            send(reply).map_err(|(e, _)| (e, applied))?;
        }
    }

    async fn apply(&mut self, push: ConfigPush) -> proxy_message::Kind {
        let ConfigPush {
            nonce,
            version,
            config,
            resources,
        } = push;
        let Some(config) = config else {
            return self.nack(nonce, version, "push without a config".into(), None);
        };
        let changed = resources
            .iter()
            .filter(|r| self.resources.get(&(r.kind, r.name.clone())) != Some(&r.version))
            .count();
        info!(nonce, %version, resources = resources.len(), changed, "config pushed");
        if config.version != version {
            let error = format!(
                "push version {version:?} is not its config's {:?}",
                config.version
            );
            return self.nack(nonce, version, error, None);
        }
        match self.proxy.update(config).await {
            Ok(summary) => {
                self.resources = resources
                    .into_iter()
                    .map(|r| ((r.kind, r.name), r.version))
                    .collect();
                if !summary.listener_errors.is_empty() {
                    // Only a race with another process after the bind check lands here.
                    warn!(
                        failed = summary.listener_errors.len(),
                        "applied, but listeners failed to bind"
                    );
                }
                self.status.send_modify(|s| {
                    s.applied = Some(version.clone());
                    s.acks += 1;
                });
                proxy_message::Kind::Ack(Ack { nonce, version })
            }
            Err(error) => {
                let listener = error.listener().map(str::to_owned);
                self.nack(nonce, version, error.to_string(), listener)
            }
        }
    }

    fn nack(
        &self,
        nonce: u64,
        version: String,
        error: String,
        listener: Option<String>,
    ) -> proxy_message::Kind {
        warn!(nonce, %version, %error, running = %self.proxy.version(), "config rejected, still serving the running one");
        self.status.send_modify(|s| {
            s.nacks += 1;
            s.last_nack = Some(error.clone());
        });
        proxy_message::Kind::Nack(Nack {
            nonce,
            version,
            error,
            listener: listener.unwrap_or_default(),
            running_version: self.proxy.version(),
        })
    }
}

/// An error with its sources: tonic's transport errors put the cause (refused, TLS) in
/// the chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    let mut depth = 0;
    while let Some(e) = source
        && depth < 8
    {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
        depth += 1;
    }
    out
}
