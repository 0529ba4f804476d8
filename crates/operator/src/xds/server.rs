//! The config stream, operator side: one [`Session`] per proxy stream.
//!
//! ```text
//!   configs (watch: latest translated Config) ──┐
//!   proxy messages (hello, ACK, NACK) ──────────┼─> Session loop ──> ConfigPush ──> proxy
//!   shutdown ───────────────────────────────────┘        │
//!                                                        └─> ProxyRecords, XdsMetrics
//! ```
//!
//! At most one push is in flight per stream: a new config that arrives meanwhile waits
//! for the ACK or NACK, and only the latest one is sent then (the watch channel keeps
//! only the latest). A NACKed version is not sent again; the next version is.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use portico_api::config::v1::{
    Ack, Config, ConfigPush, Hello, Nack, ProxyMessage, config_discovery_server::ConfigDiscovery,
    proxy_message,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::xds::metrics::XdsMetrics;
use crate::xds::records::{ProxyRecords, Rejection};
use crate::xds::view::{self, GatewaySet, View};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The translated config every proxy's view is cut from; `None` until the first
/// translation.
pub type Configs = watch::Receiver<Option<Arc<Config>>>;

/// The tonic service. Cheap to clone: every stream shares the records and metrics.
#[derive(Debug, Clone)]
pub struct ConfigServer {
    configs: Configs,
    records: ProxyRecords,
    metrics: XdsMetrics,
    shutdown: CancellationToken,
    next_stream: Arc<AtomicU64>,
}

impl ConfigServer {
    pub fn new(
        configs: Configs,
        records: ProxyRecords,
        metrics: XdsMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            configs,
            records,
            metrics,
            shutdown,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }
}

type PushStream = Pin<Box<dyn Stream<Item = Result<ConfigPush, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigServer {
    type StreamConfigStream = PushStream;

    async fn stream_config(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<PushStream>, Status> {
        let peer = request.remote_addr();
        let mut incoming = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, incoming.message()).await {
            Ok(Ok(Some(ProxyMessage {
                kind: Some(proxy_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message of a config stream must be a hello",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no hello in time")),
        };
        let gateways = gateway_set(&hello)?;
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let running = Some(hello.running_version.clone()).filter(|v| !v.is_empty());
        self.records
            .connect(&hello.node, stream, peer, gateways.clone(), running.clone());
        self.metrics.streams.inc();
        self.metrics.connected.inc();
        info!(node = %hello.node, stream, ?peer, gateways = ?gateways, running = running.as_deref().unwrap_or(""), "proxy connected");

        // Room for one push: the session never has more than one in flight.
        let (tx, rx) = mpsc::channel(1);
        let span = info_span!("config_stream", node = %hello.node, stream);
        let session = Session {
            node: hello.node,
            stream,
            gateways,
            configs: self.configs.clone(),
            records: self.records.clone(),
            metrics: self.metrics.clone(),
            tx,
            nonce: 0,
            in_flight: None,
            running: running.unwrap_or_default(),
            nacked: None,
            view: None,
        };
        tokio::spawn(
            session
                .run(incoming, self.shutdown.clone())
                .instrument(span),
        );
        Ok(Response::new(Box::pin(rx)))
    }
}

/// "<namespace>/<name>" entries of the hello, checked.
fn gateway_set(hello: &Hello) -> Result<GatewaySet, Status> {
    if hello.node.is_empty() {
        return Err(Status::invalid_argument("hello: node must not be empty"));
    }
    if hello.gateways.is_empty() {
        return Ok(None);
    }
    let mut set = BTreeSet::new();
    for g in &hello.gateways {
        match g.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                set.insert(g.clone());
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "hello: gateway {g:?} is not \"<namespace>/<name>\""
                )));
            }
        }
    }
    Ok(Some(set))
}

struct InFlight {
    nonce: u64,
    view: Arc<View>,
    sent: Instant,
    /// From the push to the proxy's answer (exported with --otlp-endpoint).
    span: tracing::Span,
}

struct Session {
    node: String,
    stream: u64,
    gateways: GatewaySet,
    configs: Configs,
    records: ProxyRecords,
    metrics: XdsMetrics,
    tx: mpsc::Sender<Result<ConfigPush, Status>>,
    nonce: u64,
    in_flight: Option<InFlight>,
    /// The version the proxy serves.
    running: String,
    /// The last version it rejected: not pushed again.
    nacked: Option<String>,
    /// The view of the latest config seen, and the translator version it was cut from,
    /// so that an unchanged config is not cut again.
    view: Option<(String, Arc<View>)>,
}

impl Session {
    async fn run(mut self, mut incoming: Streaming<ProxyMessage>, shutdown: CancellationToken) {
        loop {
            if self.in_flight.is_none() && !self.push_latest().await {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = self.configs.changed() => if changed.is_err() { break },
                message = incoming.message() => match message {
                    Ok(Some(message)) => self.handle(message),
                    Ok(None) => {
                        debug!("proxy closed the stream");
                        break;
                    }
                    Err(status) => {
                        debug!(%status, "config stream broke");
                        break;
                    }
                },
            }
        }
        self.records.disconnect(&self.node, self.stream);
        self.metrics.connected.dec();
        info!(node = %self.node, "proxy disconnected");
    }

    /// The view of the latest config, cut again only when the config changed.
    fn latest_view(&mut self) -> Option<Arc<View>> {
        let full = self.configs.borrow_and_update().clone()?;
        match &self.view {
            Some((version, view)) if *version == full.version => Some(view.clone()),
            _ => {
                let view = Arc::new(View::build(&full, &self.gateways));
                self.view = Some((full.version.clone(), view.clone()));
                Some(view)
            }
        }
    }

    /// Sends the latest view unless the proxy runs it or rejected it. `false` when the
    /// stream is gone.
    async fn push_latest(&mut self) -> bool {
        let Some(view) = self.latest_view() else {
            return true;
        };
        let version = &view.config.version;
        if *version == self.running {
            // A proxy that reconnects with the current version has nothing to apply.
            self.records.ack(&self.node, self.stream, version);
            return true;
        }
        if self.nacked.as_ref() == Some(version) {
            return true;
        }
        self.nonce += 1;
        let previous = self.in_flight_or_running_resources();
        let changed = view::changed(&previous, &view.resources).len();
        let push = ConfigPush {
            nonce: self.nonce,
            version: version.clone(),
            config: Some(view.config.clone()),
            resources: view.resources.clone(),
        };
        info!(nonce = self.nonce, %version, changed, resources = view.resources.len(), "pushing config");
        if self.tx.send(Ok(push)).await.is_err() {
            return false;
        }
        self.metrics.pushes.inc();
        self.records.pushed(&self.node, self.stream, version);
        let span = tracing::info_span!(
            target: portico_api::otlp::SPAN_TARGET,
            "config push",
            portico.proxy = %self.node,
            portico.version = %version,
            portico.resources_changed = changed,
            portico.result = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        self.in_flight = Some(InFlight {
            nonce: self.nonce,
            view,
            sent: Instant::now(),
            span,
        });
        true
    }

    /// The resources the proxy runs, as far as this stream knows (for the log line).
    fn in_flight_or_running_resources(&self) -> Vec<portico_api::config::v1::Resource> {
        self.view
            .as_ref()
            .filter(|(_, v)| v.config.version == self.running)
            .map(|(_, v)| v.resources.clone())
            .unwrap_or_default()
    }

    fn handle(&mut self, message: ProxyMessage) {
        match message.kind {
            Some(proxy_message::Kind::Ack(Ack { nonce, version })) => {
                let Some(in_flight) = self.take_in_flight(nonce) else {
                    return;
                };
                self.metrics.acks.inc();
                self.metrics
                    .push_latency
                    .observe(in_flight.sent.elapsed().as_secs_f64());
                info!(nonce, %version, "config acknowledged");
                in_flight.span.record("portico.result", "ACK");
                self.running = version;
                self.nacked = None;
                self.records.ack(&self.node, self.stream, &self.running);
            }
            Some(proxy_message::Kind::Nack(Nack {
                nonce,
                version,
                error,
                listener,
                running_version,
            })) => {
                let Some(in_flight) = self.take_in_flight(nonce) else {
                    return;
                };
                self.metrics.nacks.inc();
                self.metrics
                    .push_latency
                    .observe(in_flight.sent.elapsed().as_secs_f64());
                warn!(nonce, %version, %error, %listener, running = %running_version, "config rejected by the proxy");
                in_flight.span.record("portico.result", "NACK");
                in_flight.span.record("error", error.as_str());
                let gateways = in_flight
                    .view
                    .gateways(Some(listener.as_str()).filter(|l| !l.is_empty()));
                self.running = running_version;
                self.nacked = Some(version.clone());
                self.records.nack(
                    &self.node,
                    self.stream,
                    Rejection {
                        version,
                        error,
                        listener,
                        gateways,
                    },
                );
            }
            Some(proxy_message::Kind::Hello(_)) => {
                warn!("hello in the middle of a stream, ignored");
            }
            None => debug!("empty message, ignored"),
        }
    }

    /// The push an ACK or NACK answers; `None` (and a debug line) for a stale nonce.
    fn take_in_flight(&mut self, nonce: u64) -> Option<InFlight> {
        match &self.in_flight {
            Some(in_flight) if in_flight.nonce == nonce => self.in_flight.take(),
            _ => {
                debug!(nonce, "answer to no push in flight, ignored");
                None
            }
        }
    }
}
