//! The routing table: a `Config` compiled into what a request needs, built once per
//! config outside any lock and then swapped in whole.
//!
//! ```text
//! RoutingTable { version }
//! ├── listeners: name -> ListenerRoutes { addr }
//! │   └── vhosts[]           HostPattern; the most specific match wins (isolation)
//! │       └── groups[]       HostPattern; walked in order, "" matches all
//! │           └── routes[]   RouteMatcher + RouteFilters + WeightedBackends
//! │                          + Timeouts + RetryPolicy  │          └─ Backend { Arc<ClusterState>,
//! │                                                    │                       RouteFilters } ─┐
//! │                                     mirrors ─ Arc<ClusterState> ────────────────────────┤
//! └── clusters: name -> Arc<ClusterState>   <──────────────────────────────────────────────┘
//! ```
//!
//! Everything that can fail (addresses, hostnames, regexes, header names, cluster
//! references) fails here, so that a bad config is rejected before it serves a request
//! and the running table is never half-updated.

mod backend;
mod health;
mod host;
mod matcher;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::request::Parts;
use portico_api::config::v1 as pb;

use crate::{
    error::{ConfigError, ProxyError},
    filters::{Downstream, RetryPolicy, RouteFilters, Timeouts},
    metrics::{ProxyMetrics, RouteStats},
};
pub(crate) use backend::{ClusterState, Target, UpstreamProtocol, WeightedBackends};
pub(crate) use host::{HostPattern, host_of, request_host};
use matcher::RouteMatcher;

#[derive(Debug)]
pub(crate) struct RoutingTable {
    pub(crate) version: String,
    /// HTTP listeners only; sorted by name so that logs and summaries are stable.
    pub(crate) listeners: BTreeMap<String, ListenerRoutes>,
    clusters: HashMap<String, Arc<ClusterState>>,
}

#[derive(Debug)]
pub(crate) struct ListenerRoutes {
    /// The address the config asks for (before `ProxyOptions::ephemeral_ports`).
    pub(crate) addr: SocketAddr,
    /// The scheme and Gateway listener port, for redirects.
    pub(crate) downstream: Downstream,
    vhosts: Vec<VirtualHost>,
}

#[derive(Debug)]
struct VirtualHost {
    name: String,
    hostname: HostPattern,
    groups: Vec<HostGroup>,
    /// The indices in `groups` of the groups with an exact hostname, by hostname, in
    /// order: a request's host finds its groups without walking the others (one group
    /// per route hostname, thousands of them).
    exact: HashMap<Box<str>, Box<[usize]>>,
    /// The indices of the groups a lookup tests one by one, in order: the wildcard and
    /// "any" groups, or every group when there are at most [`SCAN_GROUPS`] (and then
    /// `exact` is empty).
    inexact: Box<[usize]>,
}

/// Up to this many groups, a virtual host has no hostname map: its groups are tested
/// in order.
const SCAN_GROUPS: usize = 8;

#[derive(Debug)]
struct HostGroup {
    hostname: HostPattern,
    routes: Vec<Route>,
}

#[derive(Debug)]
pub(crate) struct Route {
    /// "<namespace>/<route>/rule/<i>/match/<j>".
    pub(crate) name: String,
    matcher: RouteMatcher,
    pub(crate) filters: RouteFilters,
    pub(crate) backends: WeightedBackends,
    pub(crate) timeouts: Timeouts,
    pub(crate) retry: Option<RetryPolicy>,
    /// A GRPCRoute entry: the proxy's own errors are gRPC statuses (crate::grpc).
    pub(crate) grpc: bool,
    /// The route object this entry comes from (the config's `Route.route`), the
    /// `route` of metrics and access-log lines.
    pub(crate) object: String,
    /// "<namespace>/<name>" of the Gateway, and the Gateway listener
    /// ("<namespace>/<gateway>/<listener>", the virtual host) that serve this entry.
    pub(crate) gateway: Arc<str>,
    pub(crate) gateway_listener: Arc<str>,
    /// Whether requests of this entry get an access-log line (the Gateway's
    /// `portico.dev/access-log` annotation, via `VirtualHost.access_log_disabled`).
    pub(crate) access_log: bool,
    /// The metric handles of this entry, resolved by [`RoutingTable::resolve_stats`]
    /// before the table serves.
    pub(crate) stats: Option<Arc<RouteStats>>,
}

impl RoutingTable {
    /// An empty table, served before the first config (nothing listens then anyway).
    pub(crate) fn empty() -> Self {
        Self {
            version: String::new(),
            listeners: BTreeMap::new(),
            clusters: HashMap::new(),
        }
    }

    /// Gives every route its metric handles (`RouteStats`, whose series are resolved on
    /// the route's first request). Handles depend only on the Gateway, the route object
    /// and the route's clusters: entries that share them share one set, and sets of
    /// `previous` are reused, so that a route that served keeps its resolved series
    /// across updates and an update that adds one route to thousands creates one set.
    #[expect(
        clippy::mutable_key_type,
        reason = "StatsKey hashes and compares the clusters' addresses, not their state"
    )]
    pub(crate) fn resolve_stats(&mut self, metrics: &ProxyMetrics, previous: &RoutingTable) {
        // Keys borrow from both tables (no allocation per route): the handles are
        // looked up first, then handed to the routes.
        let stats: Vec<Arc<RouteStats>> = {
            let mut known: HashMap<StatsKey<'_>, Arc<RouteStats>> = HashMap::new();
            for route in previous.routes() {
                if let Some(stats) = &route.stats {
                    known.insert(StatsKey::of(route), stats.clone());
                }
            }
            self.routes()
                .map(|route| {
                    known
                        .entry(StatsKey::of(route))
                        .or_insert_with(|| Arc::new(metrics.route_stats(&route.gateway, route)))
                        .clone()
                })
                .collect()
        };
        let routes = self
            .listeners
            .values_mut()
            .flat_map(|l| l.vhosts.iter_mut())
            .flat_map(|v| v.groups.iter_mut())
            .flat_map(|g| g.routes.iter_mut());
        for (route, stats) in routes.zip(stats) {
            route.stats = Some(stats);
        }
    }

    /// Every route entry of every listener.
    fn routes(&self) -> impl Iterator<Item = &Route> {
        self.listeners
            .values()
            .flat_map(|l| l.vhosts.iter())
            .flat_map(|v| v.groups.iter())
            .flat_map(|g| g.routes.iter())
    }

    /// Compiles `config`. Clusters equal to one in `previous` reuse its state, so that
    /// an update that does not touch a cluster does not reset its load balancing.
    pub(crate) fn build(config: &pb::Config, previous: &RoutingTable) -> Result<Self, ProxyError> {
        let mut clusters = HashMap::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let state = match previous.clusters.get(&c.name) {
                Some(old) if old.same_source(c) => old.clone(),
                _ => Arc::new(ClusterState::build(c).map_err(|e| ProxyError::invalid(&c.name, e))?),
            };
            if clusters.insert(c.name.clone(), state).is_some() {
                return Err(ProxyError::invalid(&c.name, ConfigError::DuplicateCluster));
            }
        }

        let mut listeners = BTreeMap::new();
        for l in &config.listeners {
            if listeners.contains_key(&l.name) {
                return Err(ProxyError::invalid(&l.name, ConfigError::DuplicateListener));
            }
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
            // The scheme clients use on this listener: redirects without a scheme keep
            // it, and the backend learns it from x-forwarded-proto.
            let scheme = match pb::Protocol::try_from(l.protocol) {
                Ok(pb::Protocol::Http) => "http",
                Ok(pb::Protocol::Https) => "https",
                // TLS, TCP and UDP sockets carry stream routes only (crate::l4 serves
                // them); they have no HTTP routes to index here.
                Ok(pb::Protocol::Tls | pb::Protocol::Tcp | pb::Protocol::Udp) => continue,
                _ => {
                    tracing::warn!(
                        listener = %l.name,
                        protocol = l.protocol,
                        "unknown listener protocol, not serving it"
                    );
                    continue;
                }
            };
            let mut vhosts = Vec::with_capacity(l.virtual_hosts.len());
            for v in &l.virtual_hosts {
                vhosts.push(VirtualHost::build(v, &clusters)?);
            }
            listeners.insert(
                l.name.clone(),
                ListenerRoutes {
                    addr: SocketAddr::new(ip, port),
                    downstream: Downstream {
                        scheme,
                        // Behind a Service the proxy binds a proxy port; clients (and
                        // so redirects) use the Gateway listener's port.
                        port: match l.gateway_port {
                            0 => port,
                            p => u16::try_from(p)
                                .map_err(|_| ProxyError::invalid(&l.name, ConfigError::Port(p)))?,
                        },
                    },
                    vhosts,
                },
            );
        }

        Ok(Self {
            version: config.version.clone(),
            listeners,
            clusters,
        })
    }
}

/// What a route's metric handles are made of: Gateway, route object, and its clusters
/// (by identity: a cluster whose config changed is a new state, with new handles).
struct StatsKey<'t> {
    gateway: &'t str,
    object: &'t str,
    backends: &'t WeightedBackends,
}

impl<'t> StatsKey<'t> {
    fn of(route: &'t Route) -> Self {
        Self {
            gateway: &route.gateway,
            object: &route.object,
            backends: &route.backends,
        }
    }

    fn clusters(&self) -> impl Iterator<Item = *const ClusterState> + 't {
        self.backends.clusters().map(Arc::as_ptr)
    }
}

impl PartialEq for StatsKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.gateway == other.gateway
            && self.object == other.object
            && self.clusters().eq(other.clusters())
    }
}

impl Eq for StatsKey<'_> {}

impl std::hash::Hash for StatsKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.gateway.hash(state);
        self.object.hash(state);
        for cluster in self.clusters() {
            cluster.hash(state);
        }
    }
}

impl ListenerRoutes {
    /// The route that answers a request for `host` (see [`request_host`]).
    ///
    /// Only the most specific virtual host's routes are considered: a request for
    /// `a.example.com` on a socket shared by listeners `a.example.com` and
    /// `*.example.com` belongs to the first, and routes attached only to the wildcard
    /// listener cannot answer it (listener isolation).
    pub(crate) fn route(&self, host: &str, req: &Parts) -> Option<&Route> {
        let vhost = self.vhosts.get(self.vhost_for(host)?)?;
        tracing::trace!(vhost = %vhost.name, "virtual host selected");
        // Gateway API (HTTPRouteRule precedence): "Largest number of characters in a
        // matching non-wildcard hostname. Largest number of characters in a matching
        // hostname. ..." The groups arrive in that order; a group whose routes do not
        // match falls through to the next, less specific one.
        vhost
            .groups_for(host)
            .flat_map(|g| g.routes.iter())
            .find(|r| r.matcher.matches(req))
    }

    /// The index of the most specific virtual host matching `host`: an exact hostname
    /// beats any wildcard, a longer wildcard a shorter one, and a listener without
    /// hostname comes last.
    fn vhost_for(&self, host: &str) -> Option<usize> {
        let mut best: Option<(usize, &VirtualHost)> = None;
        for (i, v) in self.vhosts.iter().enumerate() {
            if v.hostname.matches(host)
                && best.is_none_or(|(_, b)| v.hostname.specificity() > b.hostname.specificity())
            {
                best = Some((i, v));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Whether a request for `host` came on a TLS connection whose handshake was served
    /// for another virtual host (the one `sni` selects), so that the client must open a
    /// new connection for it: 421 Misdirected Request (RFC 9110 section 15.5.20). This
    /// happens when a client reuses a connection for another name its certificate
    /// covers (HTTP/2 connection coalescing), or sends a Host unrelated to its SNI.
    ///
    /// Gateway API (GatewayHTTPSListenerDetectMisdirectedRequests; the upstream test
    /// `HTTPRouteHTTPSListenerDetectMisdirectedRequests`): HTTPS listeners on the same
    /// port answer 421 when the Host header selects a different listener than the SNI
    /// did; a Host that selects the same listener is routed (and gets 404 when no route
    /// of that listener matches).
    pub(crate) fn misdirected(&self, sni: &str, host: &str) -> bool {
        self.vhost_for(&sni.to_ascii_lowercase()) != self.vhost_for(host)
    }
}

impl VirtualHost {
    /// The groups whose hostname matches `host`, in order: the exact groups for `host`
    /// merged with the wildcard and "any" groups that match.
    fn groups_for<'s>(&'s self, host: &str) -> impl Iterator<Item = &'s HostGroup> {
        let exact: &[usize] = self.exact.get(host).map_or(&[], |v| v);
        let mut exact = exact.iter().copied().peekable();
        let mut inexact = self
            .inexact
            .iter()
            .copied()
            .filter(move |&i| self.groups[i].hostname.matches(host))
            .peekable();
        std::iter::from_fn(move || {
            let next = match (exact.peek(), inexact.peek()) {
                (Some(&e), Some(&w)) if w < e => inexact.next(),
                (Some(_), _) => exact.next(),
                (None, _) => inexact.next(),
            }?;
            Some(&self.groups[next])
        })
    }

    fn build(
        v: &pb::VirtualHost,
        clusters: &HashMap<String, Arc<ClusterState>>,
    ) -> Result<Self, ProxyError> {
        let hostname =
            HostPattern::parse(&v.hostname).map_err(|e| ProxyError::invalid(&v.name, e))?;
        // "<namespace>/<gateway>/<listener>" -> "<namespace>/<gateway>".
        let gateway: Arc<str> = Arc::from(v.name.rsplit_once('/').map_or("", |(g, _)| g));
        let gateway_listener: Arc<str> = Arc::from(v.name.as_str());
        let mut groups = Vec::with_capacity(v.host_routes.len());
        for g in &v.host_routes {
            let group_hostname =
                HostPattern::parse(&g.hostname).map_err(|e| ProxyError::invalid(&v.name, e))?;
            // Sized up front: collecting from a fallible iterator starts at 4 entries,
            // and most groups (one per route hostname) hold one.
            let mut routes = Vec::with_capacity(g.routes.len());
            for r in &g.routes {
                let route = Route::build(r, clusters, &gateway, &gateway_listener)
                    .map_err(|e| ProxyError::invalid(&r.name, e))?;
                routes.push(Route {
                    access_log: !v.access_log_disabled,
                    ..route
                });
            }
            groups.push(HostGroup {
                hostname: group_hostname,
                routes,
            });
        }
        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut inexact = Vec::new();
        if groups.len() <= SCAN_GROUPS {
            // A few groups are scanned in order: cheaper than a map (three allocations)
            // per virtual host, and there are thousands when each route has its own.
            inexact.extend(0..groups.len());
        } else {
            for (i, g) in groups.iter().enumerate() {
                match &g.hostname {
                    HostPattern::Exact(name) => {
                        exact.entry(name.as_str().into()).or_default().push(i);
                    }
                    HostPattern::Wildcard(_) | HostPattern::Any => inexact.push(i),
                }
            }
        }
        Ok(Self {
            name: v.name.clone(),
            hostname,
            groups,
            exact: exact.into_iter().map(|(k, v)| (k, v.into())).collect(),
            inexact: inexact.into(),
        })
    }
}

impl Route {
    /// The entry `r` of the virtual host `gateway_listener` of `gateway`.
    fn build(
        r: &pb::Route,
        clusters: &HashMap<String, Arc<ClusterState>>,
        gateway: &Arc<str>,
        gateway_listener: &Arc<str>,
    ) -> Result<Self, ConfigError> {
        let cluster = |name: &str| {
            clusters
                .get(name)
                .cloned()
                .ok_or_else(|| ConfigError::UnknownCluster(name.to_owned()))
        };
        Ok(Self {
            name: r.name.clone(),
            matcher: RouteMatcher::compile(r.r#match.as_ref())?,
            filters: RouteFilters::compile(&r.filters, cluster)?,
            backends: WeightedBackends::build(&r.backends, cluster)?,
            timeouts: Timeouts::compile(r.timeouts.as_ref()),
            retry: r.retry.as_ref().map(RetryPolicy::compile),
            grpc: r.grpc,
            // Configs from before `route` was filled name the entry only:
            // "<namespace>/<route>/rule/..." still names the route object.
            object: if r.route.is_empty() {
                r.name.split('/').take(2).collect::<Vec<_>>().join("/")
            } else {
                r.route.clone()
            },
            gateway: gateway.clone(),
            gateway_listener: gateway_listener.clone(),
            access_log: true,
            stats: None,
        })
    }
}
