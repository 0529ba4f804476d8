//! L4: the stream routes of a config (TLSRoute passthrough and terminate, TCPRoute,
//! UDPRoute), the sockets that serve them, and the hand-over from HTTPS sockets that
//! also carry TLS routes.
//!
//! ```text
//! StreamTable { listeners: name -> StreamListener }      swapped whole by `update`
//!   StreamListener { addr, kind: Tls | Tcp | Udp, on_http_socket, routes[] }
//!     StreamRoute { hostnames (TLS), WeightedBackends ─> ClusterState, terminate? }
//!
//! TCP socket ──accept──> first route ──> weighted backend ──> endpoint ──> splice   stream.rs
//! TLS socket ──accept──> ClientHello read (not consumed) ──> route by SNI           sni.rs
//!                          ├─ passthrough: the bytes read, then splice
//!                          └─ terminate: handshake with the route's certificates, splice
//! HTTPS socket with TLS routes: the same ClientHello read first; a matching stream route
//!                          takes the connection unless an HTTPS listener's hostname
//!                          matches the SNI at least as specifically; otherwise the HTTP
//!                          stack gets it back
//! UDP socket ──datagram──> flow of (client addr:port) ──> one backend socket           udp.rs
//! ```
//!
//! A connection or flow chooses its route and backend once, from the table it loaded
//! when it started: a config update changes what new connections get and never cuts
//! established ones (only removing a listener does, after the drain timeout).

pub(crate) mod sni;
mod stream;
mod udp;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use portico_api::config::v1 as pb;
use rustls::{ServerConfig, crypto::CryptoProvider};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    error::{ConfigError, ListenerError, ProxyError},
    options::ProxyOptions,
    table::{ClusterState, HostPattern, Target, WeightedBackends},
};
pub(crate) use sni::Rewind;

/// A ClientHello larger than this is refused (post-quantum key shares make them a few
/// KiB; nothing legitimate comes near this).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// A client that has not sent its whole ClientHello by then is dropped.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How a stream socket is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tls,
    Tcp,
    Udp,
}

/// The stream routes of a config, by listener name.
#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    listeners: BTreeMap<String, Arc<StreamListener>>,
    /// Reused by the next build when a cluster did not change (its round-robin
    /// position survives the update).
    clusters: HashMap<String, Arc<ClusterState>>,
}

#[derive(Debug)]
pub(crate) struct StreamListener {
    /// The address the config asks for (before `ProxyOptions::ephemeral_ports`).
    addr: SocketAddr,
    kind: Kind,
    /// An HTTPS socket that also carries TLS routes: the HTTP listener owns the socket
    /// and hands matching connections over (see [`Streams::sniff`]).
    on_http_socket: bool,
    routes: Vec<Arc<StreamRoute>>,
    /// On an HTTPS socket: the hostnames of its HTTPS listeners (virtual hosts), which
    /// compete with the TLS routes for each SNI. Empty on TLS sockets.
    https_hostnames: Vec<HostPattern>,
}

/// One rule of a TLSRoute, TCPRoute or UDPRoute.
#[derive(Debug)]
pub(crate) struct StreamRoute {
    /// "<namespace>/<route>/rule/<i>/<listener>".
    name: String,
    hostnames: Vec<HostPattern>,
    backends: WeightedBackends,
    tls: Tls,
}

/// What a TLS route does with the handshake (TCP and UDP routes: `Passthrough`).
#[derive(Debug)]
enum Tls {
    /// The ClientHello and everything after it reach the backend unchanged.
    Passthrough,
    /// `tls.mode: Terminate`: the handshake is completed with these certificates and the
    /// decrypted bytes are forwarded.
    Terminate(Arc<ServerConfig>),
    /// Terminate, but no certificate loaded: connections are closed.
    NoCertificate,
}

/// Why a connection or flow could not be forwarded; it is closed (TCP: reset).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("route {route} has no backend with a weight")]
    NoBackend { route: String },
    #[error("route {route}: invalid backend: {reason}")]
    InvalidBackend { route: String, reason: String },
    #[error("cluster {cluster} has no ready endpoint")]
    NoReadyEndpoint { cluster: String },
}

impl StreamRoute {
    /// The endpoint for a new connection or flow: a weighted share, then round robin
    /// over its cluster's ready endpoints.
    fn endpoint(&self) -> Result<(SocketAddr, &str), StreamError> {
        match self.backends.pick() {
            None => Err(StreamError::NoBackend {
                route: self.name.clone(),
            }),
            Some(Target::Invalid(reason)) => Err(StreamError::InvalidBackend {
                route: self.name.clone(),
                reason: reason.clone(),
            }),
            Some(Target::Cluster(backend)) => match backend.cluster.pick() {
                Some(addr) => Ok((addr, &backend.cluster.name)),
                None => Err(StreamError::NoReadyEndpoint {
                    cluster: backend.cluster.name.clone(),
                }),
            },
        }
    }
}

impl StreamListener {
    /// TCP and UDP: "at most one stream route per socket that answers (the first)".
    fn first(&self) -> Option<&Arc<StreamRoute>> {
        self.routes.first()
    }

    /// TLS: the route whose hostnames match `sni` most specifically (exact, then the
    /// longest wildcard, then a route without hostnames); the first in config order on
    /// a tie. Gateway API (TLSRoute hostnames): "Hostnames that are prefixed with a
    /// wildcard label (`*.`) are interpreted as a suffix match."
    ///
    /// On a socket shared with HTTPS listeners, none when an HTTPS listener's hostname
    /// matches at least as specifically: the connection is that listener's. Gateway API
    /// (Listeners that are distinct only by Hostname): "inbound request hostnames MUST
    /// match from the most specific to least specific Hostname values to choose the
    /// correct Listener and its associated set of Routes." A TLS route's hostnames are
    /// its listener's narrowed by the route's, so this compares the route's own names
    /// with the HTTPS listeners'; an equal match goes to HTTPS, whose listener then
    /// names the host at least as closely.
    fn by_sni(&self, sni: Option<&str>) -> Option<&Arc<StreamRoute>> {
        let host = sni.unwrap_or("");
        let mut best: Option<(&Arc<StreamRoute>, (u8, usize))> = None;
        for route in &self.routes {
            for pattern in &route.hostnames {
                if !pattern.matches(host) {
                    continue;
                }
                let rank = pattern.specificity();
                if best.is_none_or(|(_, b)| rank > b) {
                    best = Some((route, rank));
                }
            }
        }
        let (route, rank) = best?;
        let https_wins = self
            .https_hostnames
            .iter()
            .any(|p| p.matches(host) && p.specificity() >= rank);
        (!https_wins).then_some(route)
    }
}

impl StreamTable {
    /// Compiles the stream routes of `config`. Fails on what would fail a request
    /// (unknown clusters, bad hostnames), like the HTTP routing table.
    pub(crate) fn build(
        config: &pb::Config,
        previous: &StreamTable,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, ProxyError> {
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let state = match previous.clusters.get(&c.name) {
                Some(old) if old.same_source(c) => old.clone(),
                _ => Arc::new(ClusterState::build(c).map_err(|e| ProxyError::invalid(&c.name, e))?),
            };
            clusters.insert(c.name.clone(), state);
        }
        let mut listeners = BTreeMap::new();
        for l in &config.listeners {
            let protocol = pb::Protocol::try_from(l.protocol).ok();
            let (kind, on_http_socket) = match protocol {
                Some(pb::Protocol::Tls) => (Kind::Tls, false),
                Some(pb::Protocol::Tcp) => (Kind::Tcp, false),
                Some(pb::Protocol::Udp) => (Kind::Udp, false),
                // TLS routes on a socket shared with HTTPS listeners.
                Some(pb::Protocol::Https) if !l.stream_routes.is_empty() => (Kind::Tls, true),
                _ => continue,
            };
            let ip: IpAddr = l.address.parse().map_err(|error| {
                ProxyError::invalid(
                    &l.name,
                    ConfigError::Address {
                        address: l.address.clone(),
                        error,
                    },
                )
            })?;
            let port = u16::try_from(l.port)
                .map_err(|_| ProxyError::invalid(&l.name, ConfigError::Port(l.port)))?;
            let mut routes = Vec::with_capacity(l.stream_routes.len());
            for r in &l.stream_routes {
                routes.push(Arc::new(StreamRoute::build(r, kind, &clusters, provider)?));
            }
            let https_hostnames = if on_http_socket {
                l.virtual_hosts
                    .iter()
                    .map(|v| HostPattern::parse(&v.hostname))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ProxyError::invalid(&l.name, e))?
            } else {
                Vec::new()
            };
            listeners.insert(
                l.name.clone(),
                Arc::new(StreamListener {
                    addr: SocketAddr::new(ip, port),
                    kind,
                    on_http_socket,
                    routes,
                    https_hostnames,
                }),
            );
        }
        Ok(Self {
            listeners,
            clusters,
        })
    }

    /// The sockets this table needs bound by the L4 side, by listener name.
    pub(crate) fn sockets(&self) -> BTreeMap<String, (SocketAddr, Kind)> {
        self.listeners
            .iter()
            .filter(|(_, l)| !l.on_http_socket)
            .map(|(name, l)| (name.clone(), (l.addr, l.kind)))
            .collect()
    }
}

impl StreamRoute {
    fn build(
        r: &pb::StreamRoute,
        kind: Kind,
        clusters: &HashMap<String, Arc<ClusterState>>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, ProxyError> {
        let invalid = |e| ProxyError::invalid(&r.name, e);
        let hostnames = if kind == Kind::Tls && !r.hostnames.is_empty() {
            r.hostnames
                .iter()
                .map(|h| HostPattern::parse(h))
                .collect::<Result<_, _>>()
                .map_err(invalid)?
        } else {
            // TCP and UDP carry none; a TLS route without hostnames answers any SNI.
            vec![HostPattern::Any]
        };
        let backends = WeightedBackends::build(&r.backends, |name| {
            clusters
                .get(name)
                .cloned()
                .ok_or_else(|| ConfigError::UnknownCluster(name.to_owned()))
        })
        .map_err(invalid)?;
        // A terminate route whose certificates all fail to load stays in the table
        // without them: its connections are closed, never passed through instead of
        // terminated (the translator checks certificates, so this is a config from
        // elsewhere, and it must not take the other routes down).
        let tls = match &r.terminate {
            None => Tls::Passthrough,
            Some(tls) => match crate::tls::termination_config(&r.name, tls, provider) {
                Some(config) => Tls::Terminate(config),
                None => Tls::NoCertificate,
            },
        };
        Ok(Self {
            name: r.name.clone(),
            hostnames,
            backends,
            tls,
        })
    }
}

/// What every stream connection and flow shares: the current table and the options.
#[derive(Debug)]
pub(crate) struct Streams {
    pub(crate) table: ArcSwap<StreamTable>,
    options: ProxyOptions,
}

/// What the HTTP side should do with a connection of an HTTPS socket.
pub(crate) enum Sniffed {
    /// A stream route took the connection and served it to its end.
    Taken,
    /// Serve it as HTTPS: the ClientHello bytes already read come first.
    Http(Rewind<TcpStream>),
    /// Not a usable TLS connection; dropped.
    Dropped,
}

impl Streams {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        Self {
            table: ArcSwap::from_pointee(StreamTable::default()),
            options: options.clone(),
        }
    }

    /// For an HTTPS listener: whether `listener` carries TLS routes too, so that its
    /// connections must be sniffed first.
    pub(crate) fn shares_socket(&self, listener: &str) -> bool {
        self.table
            .load()
            .listeners
            .get(listener)
            .is_some_and(|l| l.on_http_socket && !l.routes.is_empty())
    }

    /// An HTTPS socket that also carries TLS routes. config.proto: "a stream route whose
    /// hostnames match the SNI takes the connection, otherwise TLS is terminated for the
    /// virtual hosts."
    pub(crate) async fn sniff(
        &self,
        listener: &str,
        stream: TcpStream,
        client: SocketAddr,
    ) -> Sniffed {
        stream::sniff(self, listener, stream, client).await
    }
}

/// The L4 listeners that are running, by name.
#[derive(Debug, Default)]
pub(crate) struct Running {
    listeners: BTreeMap<String, RunningStream>,
}

#[derive(Debug)]
struct RunningStream {
    requested: SocketAddr,
    kind: Kind,
    local_addr: SocketAddr,
    stop: DropGuard,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl RunningStream {
    async fn stop(self) -> JoinHandle<()> {
        drop(self.stop);
        // The loop ends only by this token (or a panic): the socket is closed either way.
        let _ = self.closed.await;
        self.task
    }
}

impl Running {
    /// Stops the listeners that `wanted` does not have at the same address and kind;
    /// returns their names and draining tasks.
    pub(crate) async fn stop_stale(
        &mut self,
        wanted: &BTreeMap<String, (SocketAddr, Kind)>,
    ) -> Vec<(String, JoinHandle<()>)> {
        let stale: Vec<String> = self
            .listeners
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&(r.requested, r.kind)))
            .map(|(name, _)| name.clone())
            .collect();
        let mut stopped = Vec::new();
        for name in stale {
            if let Some(running) = self.listeners.remove(&name) {
                stopped.push((name, running.stop().await));
            }
        }
        stopped
    }

    /// Binds and starts the listeners of `wanted` that are not running. Call after the
    /// table that knows them is in `streams`. Returns the names started and the errors.
    pub(crate) fn start_new(
        &mut self,
        wanted: &BTreeMap<String, (SocketAddr, Kind)>,
        streams: &Arc<Streams>,
    ) -> (Vec<String>, Vec<ListenerError>) {
        let mut added = Vec::new();
        let mut errors = Vec::new();
        for (name, &(addr, kind)) in wanted {
            if self.listeners.contains_key(name) {
                continue;
            }
            let stop = CancellationToken::new();
            let (closed_tx, closed) = oneshot::channel();
            let started = match kind {
                Kind::Tcp | Kind::Tls => crate::listener::bind(name, addr).and_then(|socket| {
                    let local = socket.local_addr().map_err(|e| ListenerError {
                        listener: name.clone(),
                        addr,
                        error: Arc::new(e),
                    })?;
                    let task = tokio::spawn(stream::accept_loop(
                        Arc::from(name.as_str()),
                        socket,
                        streams.clone(),
                        stop.clone(),
                        closed_tx,
                    ));
                    Ok((local, task))
                }),
                Kind::Udp => udp::bind(name, addr).map(|socket| {
                    let local = socket.local_addr;
                    let task = tokio::spawn(udp::serve(
                        Arc::from(name.as_str()),
                        socket,
                        streams.clone(),
                        stop.clone(),
                        closed_tx,
                    ));
                    (local, task)
                }),
            };
            match started {
                Ok((local_addr, task)) => {
                    self.listeners.insert(
                        name.clone(),
                        RunningStream {
                            requested: addr,
                            kind,
                            local_addr,
                            stop: stop.drop_guard(),
                            closed,
                            task,
                        },
                    );
                    added.push(name.clone());
                }
                Err(error) => {
                    tracing::error!(%error, "stream listener not serving");
                    errors.push(error);
                }
            }
        }
        (added, errors)
    }

    /// The bound address of each running L4 listener.
    pub(crate) fn bound(&self) -> impl Iterator<Item = (&String, SocketAddr)> {
        self.listeners.iter().map(|(n, r)| (n, r.local_addr))
    }

    /// Stops every listener; returns their draining tasks.
    pub(crate) async fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (_, running) in std::mem::take(&mut self.listeners) {
            tasks.push(running.stop().await);
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn route(name: &str, hostnames: &[&str]) -> pb::StreamRoute {
        pb::StreamRoute {
            name: name.into(),
            route: format!("TLSRoute/ns/{name}"),
            hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
            backends: vec![pb::WeightedBackend {
                weight: 1,
                target: Some(pb::weighted_backend::Target::Invalid("x".into())),
                filters: vec![],
            }],
            terminate: None,
        }
    }

    fn table(protocol: pb::Protocol, routes: Vec<pb::StreamRoute>) -> StreamTable {
        let config = pb::Config {
            version: "v".into(),
            listeners: vec![pb::Listener {
                name: "l".into(),
                address: "127.0.0.1".into(),
                port: 443,
                protocol: protocol as i32,
                virtual_hosts: vec![],
                gateway_port: 0,
                stream_routes: routes,
            }],
            clusters: vec![],
        };
        StreamTable::build(&config, &StreamTable::default(), &crate::tls::provider()).unwrap()
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_any() {
        let t = table(
            pb::Protocol::Tls,
            vec![
                route("any", &[]),
                route("short", &["*.example.com"]),
                route("long", &["*.b.example.com"]),
                route("exact", &["other.example.org", "a.b.example.com"]),
            ],
        );
        let l = &t.listeners["l"];
        let got = |sni: Option<&str>| l.by_sni(sni).map(|r| r.name.clone());
        assert_eq!(got(Some("a.b.example.com")).as_deref(), Some("exact"));
        assert_eq!(got(Some("z.b.example.com")).as_deref(), Some("long"));
        assert_eq!(got(Some("q.example.com")).as_deref(), Some("short"));
        assert_eq!(got(Some("example.com")).as_deref(), Some("any"));
        assert_eq!(got(None).as_deref(), Some("any"));

        let t = table(pb::Protocol::Tls, vec![route("only", &["a.example.com"])]);
        assert!(t.listeners["l"].by_sni(Some("b.example.com")).is_none());
        assert!(t.listeners["l"].by_sni(None).is_none());
    }

    #[test]
    fn https_listeners_keep_the_names_they_match_more_closely() {
        let mut t = table(
            pb::Protocol::Https,
            vec![
                route("exact", &["abc.example.com"]),
                route("catch-all", &[]),
            ],
        );
        let listener = Arc::get_mut(t.listeners.get_mut("l").unwrap()).unwrap();
        listener.https_hostnames = vec![HostPattern::parse("*.example.com").unwrap()];
        let got = |sni: &str| listener.by_sni(Some(sni)).map(|r| r.name.clone());
        // The TLS route names abc.example.com more closely than *.example.com.
        assert_eq!(got("abc.example.com").as_deref(), Some("exact"));
        // The HTTPS listener's wildcard beats the catch-all TLS route.
        assert_eq!(got("other.example.com"), None);
        // Nothing HTTPS matches: the catch-all takes it.
        assert_eq!(got("example.org").as_deref(), Some("catch-all"));
    }

    #[test]
    fn https_hostnames_come_from_the_virtual_hosts() {
        let config = pb::Config {
            listeners: vec![pb::Listener {
                name: "l".into(),
                address: "127.0.0.1".into(),
                port: 443,
                protocol: pb::Protocol::Https as i32,
                virtual_hosts: vec![pb::VirtualHost {
                    name: "ns/gw/https".into(),
                    hostname: "*.example.com".into(),
                    ..Default::default()
                }],
                gateway_port: 0,
                stream_routes: vec![route("r", &[])],
            }],
            ..Default::default()
        };
        let t =
            StreamTable::build(&config, &StreamTable::default(), &crate::tls::provider()).unwrap();
        let l = &t.listeners["l"];
        assert!(l.by_sni(Some("x.example.com")).is_none());
        assert!(l.by_sni(Some("x.example.org")).is_some());
    }

    #[test]
    fn sockets_leave_https_ones_to_the_http_side() {
        let t = table(pb::Protocol::Https, vec![route("r", &["a.example.com"])]);
        assert!(t.sockets().is_empty());
        assert!(t.listeners["l"].on_http_socket);
        let t = table(pb::Protocol::Tcp, vec![route("r", &[])]);
        assert_eq!(
            t.sockets()["l"],
            ("127.0.0.1:443".parse().unwrap(), Kind::Tcp)
        );
        // HTTPS without stream routes is none of L4's business.
        assert!(table(pb::Protocol::Https, vec![]).listeners.is_empty());
    }

    #[test]
    fn unknown_clusters_are_rejected() {
        let mut r = route("r", &[]);
        r.backends[0].target = Some(pb::weighted_backend::Target::Cluster("nope".into()));
        let config = pb::Config {
            listeners: vec![pb::Listener {
                name: "l".into(),
                address: "127.0.0.1".into(),
                port: 9000,
                protocol: pb::Protocol::Tcp as i32,
                gateway_port: 0,
                stream_routes: vec![r],
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = StreamTable::build(&config, &StreamTable::default(), &crate::tls::provider());
        assert!(err.unwrap_err().to_string().contains("nope"));
    }
}
