//! Starting the proxy, swapping its config, stopping it.
//!
//! An update runs in this order, and the order is the point:
//!
//! 1. build the new routing table from the config, outside any lock: a config that
//!    fails here is rejected and nothing changes; the certificate tables of HTTPS
//!    listeners too (crate::tls);
//! 2. (updates are serialized from here on) stop listeners that are gone or moved:
//!    their sockets close, their open connections drain in the background;
//! 3. bind listeners that are new, moved, or failed to bind last time; a bind failure
//!    is reported and the others carry on;
//! 4. swap the table in (one atomic store: requests already running keep the table
//!    they loaded), and the certificates of running HTTPS listeners (handshakes from
//!    now on get them; open connections keep theirs);
//! 5. start accepting on the newly bound sockets, now that the table knows them.
//!
//! Stream listeners (TLS, TCP, UDP; crate::l4) follow the same steps with a table of
//! their own: built in 1, stale sockets stopped in 2 (before any HTTP bind, so that a
//! port moving from TCP to HTTP is free), swapped in 4, bound and started in 5.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;
use portico_api::config::v1::Config;
use tokio::{sync::Mutex, task::JoinHandle};

use crate::{
    bind_check,
    error::{ListenerError, ProxyError},
    l4::{self, StreamTable, Streams},
    limits::{ConnectionSlots, Limits},
    listener::{self, Running},
    metrics::ProxyMetrics,
    options::ProxyOptions,
    otlp::Exporter,
    service::Shared,
    table::RoutingTable,
    tls::{self, CertResolver},
    upstream::Upstream,
};

/// Starts the proxy with `initial` and returns once every listener that could bind is
/// accepting. Fails only when `initial` is invalid; listeners that cannot bind are
/// reported by [`ProxyHandle::listener_errors`] while the others serve.
pub async fn start(options: ProxyOptions, initial: Config) -> Result<ProxyHandle, ProxyError> {
    let otlp = options.otlp_endpoint.as_ref().and_then(Exporter::start);
    // Without an exporter nothing is recorded: no new trace is marked sampled.
    let trace_sample_ratio = if otlp.is_some() {
        options.trace_sample_ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let handle = ProxyHandle {
        streams: Arc::new(Streams::new(&options)),
        shared: Arc::new(Shared {
            table: ArcSwap::from_pointee(RoutingTable::empty()),
            upstream: Upstream::new(&options),
            metrics: ProxyMetrics::new(),
            limits: Limits::new(&options),
            connections: ConnectionSlots::new(options.max_connections),
            xff_num_trusted_hops: options.xff_num_trusted_hops,
            otlp,
            trace_sample_ratio,
        }),
        options,
        state: Mutex::new(State::default()),
        status: ArcSwap::from_pointee(Status::default()),
    };
    handle.update(initial).await?;
    Ok(handle)
}

/// The running proxy. Dropping it stops accepting on every listener and lets open
/// connections drain in the background; [`ProxyHandle::shutdown`] also waits for them.
#[derive(Debug)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    /// The stream routes (TLS, TCP, UDP) and what their connections share.
    streams: Arc<Streams>,
    options: ProxyOptions,
    /// Listeners by name; the mutex serializes updates (never held by requests).
    state: Mutex<State>,
    /// What `bound_addrs` and `listener_errors` read, without waiting on an update.
    status: ArcSwap<Status>,
}

#[derive(Debug, Default)]
struct State {
    running: BTreeMap<String, Running>,
    /// Stopped listeners still draining their connections; awaited by `shutdown`.
    draining: Vec<JoinHandle<()>>,
    /// The certificate resolvers of the running HTTPS listeners, by listener name.
    tls: BTreeMap<String, Arc<CertResolver>>,
    /// The running stream listeners (TLS, TCP, UDP).
    l4: l4::Running,
}

#[derive(Debug, Default)]
struct Status {
    bound: BTreeMap<String, SocketAddr>,
    errors: Vec<ListenerError>,
}

/// What an update changed.
#[derive(Clone, Debug, Default)]
pub struct UpdateSummary {
    /// The version now running.
    pub version: String,
    /// The version that ran before.
    pub previous_version: String,
    /// Listeners that started accepting.
    pub added: Vec<String>,
    /// Listeners that stopped accepting (in-flight requests on them finish).
    pub removed: Vec<String>,
    /// Listeners of the config that could not bind: the rest of the config is serving,
    /// and the next update tries these again.
    pub listener_errors: Vec<ListenerError>,
}

impl ProxyHandle {
    /// Validates the config and builds the internal routing table outside any lock,
    /// then swaps it in atomically. Binds sockets for new listeners and stops accepting
    /// on listeners that disappeared (in-flight requests on them finish). A config that
    /// fails validation (e.g. a bad regex) returns `Err` and the running config stays.
    ///
    /// Listeners that cannot bind do not fail the update: they are in
    /// [`UpdateSummary::listener_errors`] (and [`ProxyHandle::listener_errors`]), unless
    /// `ProxyOptions::reject_unbindable` is set: then the update fails with
    /// [`ProxyError::Unbindable`] before any listener is stopped or the table swapped.
    pub async fn update(&self, config: Config) -> Result<UpdateSummary, ProxyError> {
        // 1. Build. The previous table is only used to reuse unchanged clusters, so a
        //    concurrent update making it stale costs a rebuild, nothing more.
        let started = std::time::Instant::now();
        let mut table = match RoutingTable::build(&config, &self.shared.table.load()) {
            Ok(table) => table,
            Err(error) => {
                tracing::warn!(version = %config.version, %error, "config rejected");
                self.shared.metrics.config_rejected();
                return Err(error);
            }
        };
        table.resolve_stats(&self.shared.metrics, &self.shared.table.load());

        let provider = tls::provider();
        let streams = match StreamTable::build(&config, &self.streams.table.load(), &provider) {
            Ok(streams) => streams,
            Err(error) => {
                tracing::warn!(version = %config.version, %error, "config rejected");
                self.shared.metrics.config_rejected();
                return Err(error);
            }
        };
        let stream_sockets: BTreeMap<String, _> = streams
            .sockets()
            .into_iter()
            .map(|(name, (addr, kind))| (name, (self.effective_addr(addr), kind)))
            .collect();
        let mut certificates = tls::tables(&config, &provider);
        let build_ms = started.elapsed().as_secs_f64() * 1000.0;

        let mut state = self.state.lock().await;
        // 1b. With `reject_unbindable` (the config stream), a socket that cannot be bound
        //     rejects the config here, before anything running is touched.
        if self.options.reject_unbindable
            && let Err(error) = bind_check::check(&config, &self.status.load().bound, |a| {
                self.effective_addr(a)
            })
        {
            tracing::warn!(version = %config.version, %error, "config rejected");
            self.shared.metrics.config_rejected();
            return Err(error);
        }
        let mut summary = UpdateSummary {
            version: table.version.clone(),
            previous_version: self.shared.table.load().version.clone(),
            ..UpdateSummary::default()
        };

        // 2. Stop listeners that are gone or asked for another address.
        let wanted: BTreeMap<&String, SocketAddr> = table
            .listeners
            .iter()
            .map(|(name, l)| (name, self.effective_addr(l.addr)))
            .collect();
        let stale: Vec<String> = state
            .running
            .iter()
            .filter(|(name, r)| {
                // A listener that turns from HTTP to HTTPS (or back) is a new socket.
                wanted.get(name) != Some(&r.requested)
                    || state.tls.contains_key(*name) != certificates.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            state.tls.remove(&name);
            if let Some(running) = state.running.remove(&name) {
                let task = running.stop().await;
                state.draining.push(task);
                summary.removed.push(name);
            }
        }
        for (name, task) in state.l4.stop_stale(&stream_sockets).await {
            state.draining.push(task);
            summary.removed.push(name);
        }
        state.draining.retain(|task| !task.is_finished());

        // 3. Bind the listeners that are not running.
        let mut bound = Vec::new();
        for (name, addr) in wanted {
            if state.running.contains_key(name) {
                continue;
            }
            match listener::bind(name, addr) {
                Ok(socket) => bound.push((name.clone(), addr, socket)),
                Err(error) => {
                    tracing::error!(%error, "listener not serving");
                    summary.listener_errors.push(error);
                }
            }
        }

        // 4. Swap.
        let mut listener_names: Vec<String> = table.listeners.keys().cloned().collect();
        self.shared.table.store(Arc::new(table));
        self.streams.table.store(Arc::new(streams));
        for (name, resolver) in &state.tls {
            if let Some(table) = certificates.remove(name) {
                resolver.swap(table);
            }
        }

        // 5. Accept.
        for (name, addr, socket) in bound {
            let server_config = match certificates.remove(&name) {
                None => None,
                Some(table) => {
                    let resolver = Arc::new(CertResolver::new(table));
                    match tls::server_config(provider.clone(), resolver.clone()) {
                        Ok(server_config) => {
                            state.tls.insert(name.clone(), resolver);
                            Some(server_config)
                        }
                        // Only a provider without TLS 1.2/1.3 suites fails here, which
                        // ring is not; the listener is left out rather than served
                        // without TLS.
                        Err(error) => {
                            tracing::error!(listener = %name, %error, "TLS listener not serving");
                            continue;
                        }
                    }
                }
            };
            match Running::spawn(
                &name,
                addr,
                socket,
                self.shared.clone(),
                &self.options,
                server_config,
                self.streams.clone(),
            ) {
                Ok(running) => {
                    state.running.insert(name.clone(), running);
                    summary.added.push(name);
                }
                Err(error) => {
                    tracing::error!(%error, "listener not serving");
                    summary.listener_errors.push(error);
                }
            }
        }

        let (added, errors) = state.l4.start_new(&stream_sockets, &self.streams);
        summary.added.extend(added);
        summary.listener_errors.extend(errors);
        listener_names.extend(stream_sockets.keys().cloned());

        self.status.store(Arc::new(Status {
            bound: state
                .running
                .iter()
                .map(|(name, r)| (name.clone(), r.local_addr))
                .chain(state.l4.bound().map(|(name, addr)| (name.clone(), addr)))
                .collect(),
            errors: summary.listener_errors.clone(),
        }));
        tracing::info!(
            version = %summary.version,
            previous_version = %summary.previous_version,
            listeners = ?listener_names,
            added = ?summary.added,
            removed = ?summary.removed,
            failed = summary.listener_errors.len(),
            build_ms,
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            "config applied"
        );
        self.shared
            .metrics
            .config_applied(&summary.previous_version, &summary.version);
        Ok(summary)
    }

    /// The bound address of each listener by listener name. A listener whose socket
    /// could not be bound is absent here and present in
    /// [`ProxyHandle::listener_errors`].
    pub fn bound_addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.status.load().bound.clone()
    }

    /// The listeners of the running config that could not bind, as of the last
    /// `start` or `update`.
    pub fn listener_errors(&self) -> Vec<ListenerError> {
        self.status.load().errors.clone()
    }

    /// The proxy's metrics in the Prometheus text format (see the `metrics` module for
    /// the series), for an admin endpoint's `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// The version of the running config.
    pub fn version(&self) -> String {
        self.shared.table.load().version.clone()
    }

    /// Stops accepting on every listener, lets in-flight requests finish within
    /// `ProxyOptions::drain_timeout`, and returns.
    pub async fn shutdown(self) {
        let mut state = self.state.into_inner();
        let mut tasks = std::mem::take(&mut state.draining);
        for (_, running) in std::mem::take(&mut state.running) {
            tasks.push(running.stop().await);
        }
        tasks.extend(state.l4.stop_all().await);
        for task in tasks {
            // Each task is bounded by the drain timeout; a join error means it
            // panicked, and then there is nothing left to wait for.
            if let Err(error) = task.await {
                tracing::warn!(%error, "listener task failed");
            }
        }
        tracing::info!("proxy stopped");
    }

    fn effective_addr(&self, addr: SocketAddr) -> SocketAddr {
        if self.options.ephemeral_ports {
            SocketAddr::new(addr.ip(), 0)
        } else {
            addr
        }
    }
}
