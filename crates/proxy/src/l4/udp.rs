//! UDP routes: per-client flows.
//!
//! ```text
//! listener socket ──recv_from(client)──> flows[client]? ── yes ──> its backend socket ──> endpoint
//!        ^                                  └ no: route (the first), weighted backend,
//!        │                                    endpoint; a new connected socket; flow task
//!        └──────── send_to(client) <── flow task: recv on the backend socket
//!                                       ends after udp_idle_timeout without a datagram
//!                                       either way, or when the listener stops
//! ```
//!
//! A flow is keyed by the client's address and port, so every datagram of one client
//! socket reaches the same backend endpoint (DNS over UDP, QUIC and the like keep state
//! per peer), and the replies of that endpoint come back from the listener's own
//! address, which is where the client sent its datagram. The table is bounded
//! (`max_udp_flows`): while full, datagrams of new clients are dropped.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::{net::UdpSocket, sync::oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Streams, stream::idle_deadline};
use crate::error::ListenerError;

/// Big enough for any UDP payload (IPv4's 65,507 bytes at most).
const MAX_DATAGRAM: usize = 65_535;

/// A bound UDP listener socket.
#[derive(Debug)]
pub(super) struct Bound {
    socket: UdpSocket,
    pub(super) local_addr: SocketAddr,
}

/// Binds `addr` for listener `name`, synchronously like the TCP listeners.
pub(super) fn bind(name: &str, addr: SocketAddr) -> Result<Bound, ListenerError> {
    let error = |e: std::io::Error| ListenerError {
        listener: name.to_owned(),
        addr,
        error: Arc::new(e),
    };
    let std = std::net::UdpSocket::bind(addr).map_err(error)?;
    std.set_nonblocking(true).map_err(error)?;
    let local_addr = std.local_addr().map_err(error)?;
    let socket = UdpSocket::from_std(std).map_err(error)?;
    Ok(Bound { socket, local_addr })
}

#[derive(Debug)]
struct Flow {
    backend: Arc<UdpSocket>,
    started: Instant,
    last: Arc<AtomicU64>,
    /// Tells this flow from a later one of the same client when the flow task removes
    /// its entry.
    id: u64,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

fn touch(started: Instant, last: &AtomicU64) {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    last.store(ms, Ordering::Relaxed);
}

/// Serves a UDP listener until `stop`; its flows end with it (there is nothing to
/// drain in a datagram protocol).
pub(super) async fn serve(
    name: Arc<str>,
    bound: Bound,
    streams: Arc<Streams>,
    stop: CancellationToken,
    closed: oneshot::Sender<()>,
) {
    let socket = Arc::new(bound.socket);
    let flows: Flows = Arc::default();
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (n, client) = match received {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(listener = %name, %error, "UDP receive failed");
                continue;
            }
        };
        let datagram = &buf[..n];
        let existing = lock(&flows)
            .get(&client)
            .map(|f| (f.backend.clone(), f.started, f.last.clone()));
        let backend = match existing {
            Some((backend, started, last)) => {
                touch(started, &last);
                backend
            }
            None => {
                let Some(flow) = open_flow(&name, &streams, &flows, client, next_id).await else {
                    continue;
                };
                next_id += 1;
                let backend = flow.backend.clone();
                let task = FlowTask {
                    name: name.clone(),
                    client,
                    backend: flow.backend.clone(),
                    started: flow.started,
                    last: flow.last.clone(),
                    id: flow.id,
                    listener: socket.clone(),
                    flows: flows.clone(),
                    streams: streams.clone(),
                    cut: cut.clone(),
                };
                lock(&flows).insert(client, flow);
                tracker.spawn(task.run());
                backend
            }
        };
        if let Err(error) = backend.send(datagram).await {
            tracing::debug!(listener = %name, %client, %error, "UDP send to the backend failed");
        }
    }
    drop(socket);
    let _ = closed.send(());
    cut.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::debug!(listener = %name, "UDP listener stopped");
}

fn lock(flows: &Flows) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Flow>> {
    // A panic while holding the lock leaves a map that is still consistent (every
    // operation on it is a single insert, get or remove).
    flows
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A new flow for `client`: route, backend, a socket connected to the endpoint. `None`
/// (the datagram is dropped) when the table is full or no backend can take it.
async fn open_flow(
    name: &str,
    streams: &Streams,
    flows: &Flows,
    client: SocketAddr,
    id: u64,
) -> Option<Flow> {
    let max = streams.options.max_udp_flows;
    if lock(flows).len() >= max {
        tracing::debug!(listener = %name, %client, max, "UDP flow table full, dropping");
        return None;
    }
    let table = streams.table.load();
    let route = table.listeners.get(name)?.first()?.clone();
    drop(table);
    let (endpoint, cluster) = match route.endpoint() {
        Ok(chosen) => chosen,
        Err(error) => {
            tracing::debug!(route = %route.name, %client, %error, "no UDP backend, dropping");
            return None;
        }
    };
    let local = match endpoint.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let connected = async {
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
        socket.connect(endpoint).await?;
        Ok::<_, std::io::Error>(socket)
    };
    match connected.await {
        Ok(socket) => {
            tracing::debug!(route = %route.name, %client, %endpoint, cluster, "UDP flow opened");
            let started = Instant::now();
            Some(Flow {
                backend: Arc::new(socket),
                started,
                last: Arc::new(AtomicU64::new(0)),
                id,
            })
        }
        Err(error) => {
            tracing::debug!(route = %route.name, %client, %endpoint, %error, "UDP backend socket failed, dropping");
            None
        }
    }
}

/// Carries the backend's replies of one flow back to its client.
struct FlowTask {
    name: Arc<str>,
    client: SocketAddr,
    backend: Arc<UdpSocket>,
    started: Instant,
    last: Arc<AtomicU64>,
    id: u64,
    listener: Arc<UdpSocket>,
    flows: Flows,
    streams: Arc<Streams>,
    cut: CancellationToken,
}

impl FlowTask {
    async fn run(self) {
        let idle = self.streams.options.udp_idle_timeout;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                received = self.backend.recv(&mut buf) => match received {
                    Ok(n) => {
                        touch(self.started, &self.last);
                        if let Err(error) = self.listener.send_to(&buf[..n], self.client).await {
                            tracing::debug!(listener = %self.name, client = %self.client, %error, "UDP reply to the client failed");
                        }
                    }
                    // ICMP port unreachable from the endpoint shows up here once per
                    // datagram; the flow stays until it is idle, as the client may retry.
                    Err(error) => tracing::debug!(listener = %self.name, client = %self.client, %error, "UDP receive from the backend failed"),
                },
                () = idle_deadline(self.started, &self.last, idle) => {
                    tracing::debug!(listener = %self.name, client = %self.client, ?idle, "UDP flow idle, closing");
                    break;
                }
                () = self.cut.cancelled() => break,
            }
        }
        let mut flows = lock(&self.flows);
        if flows.get(&self.client).is_some_and(|f| f.id == self.id) {
            flows.remove(&self.client);
        }
    }
}
