//! One proxy's view of the translated config: the part that serves the Gateways it
//! asked for, with a content version per resource.
//!
//! ```text
//!   Config (every Gateway)               View (Gateways {a/gw})
//!   ├─ listener 0.0.0.0:80               ├─ listener 0.0.0.0:80
//!   │   ├─ vhost a/gw/http        ──keep─┤   └─ vhost a/gw/http
//!   │   └─ vhost b/other/http     ──drop │
//!   ├─ listener 0.0.0.0:9000             │  (dropped: nothing of a/gw on it)
//!   │   └─ stream b/r/rule/0/b/other/tcp │
//!   └─ clusters a/echo:80, b/db:5432     └─ clusters a/echo:80 (those the kept routes name)
//! ```
//!
//! Virtual hosts are named "<namespace>/<gateway>/<listener>" and stream routes
//! "<namespace>/<route>/rule/<i>/<namespace>/<gateway>/<listener>" (config.proto), which
//! is how a resource is traced back to its Gateway. A proxy serving every Gateway gets the
//! config unchanged, version included.

use std::collections::{BTreeMap, BTreeSet};

use portico_api::config::v1::{
    Config, Filter, Listener, Resource, Route, WeightedBackend, filter, resource, weighted_backend,
};
use prost::Message;
use sha2::{Digest, Sha256};

/// The Gateways a proxy serves, each "<namespace>/<name>"; `None` is every Gateway.
pub type GatewaySet = Option<BTreeSet<String>>;

/// What one proxy is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Its `version` is the translator's for a proxy serving every Gateway, else the
    /// content hash of the restricted config.
    pub config: Config,
    /// One per listener and cluster, in config order.
    pub resources: Vec<Resource>,
}

impl View {
    pub fn build(full: &Config, gateways: &GatewaySet) -> Self {
        let config = match gateways {
            None => full.clone(),
            Some(set) => restrict(full, set),
        };
        let resources = config
            .listeners
            .iter()
            .map(|l| resource(resource::Kind::Listener, &l.name, l))
            .chain(
                config
                    .clusters
                    .iter()
                    .map(|c| resource(resource::Kind::Cluster, &c.name, c)),
            )
            .collect();
        Self { config, resources }
    }

    /// The Gateways ("<namespace>/<name>") with a virtual host or stream route on
    /// `listener`, or on any listener when `listener` is `None` or unknown: those whose
    /// status a rejection of this view concerns.
    pub fn gateways(&self, listener: Option<&str>) -> BTreeSet<String> {
        let on = |l: &&Listener| listener.is_none_or(|name| l.name == name);
        let mut found: BTreeSet<String> = self
            .config
            .listeners
            .iter()
            .filter(on)
            .flat_map(listener_gateways)
            .collect();
        if found.is_empty() && listener.is_some() {
            found = self.gateways(None);
        }
        found
    }
}

/// The Gateways of a listener's virtual hosts and stream routes.
fn listener_gateways(l: &Listener) -> impl Iterator<Item = String> + '_ {
    let vhosts = l
        .virtual_hosts
        .iter()
        .filter_map(|v| vhost_gateway(&v.name));
    let streams = l
        .stream_routes
        .iter()
        .filter_map(|s| stream_route_gateway(&s.name));
    vhosts.chain(streams)
}

/// "<namespace>/<gateway>" of a virtual host "<namespace>/<gateway>/<listener>".
fn vhost_gateway(name: &str) -> Option<String> {
    let mut parts = name.splitn(3, '/');
    let (ns, gw) = (parts.next()?, parts.next()?);
    parts.next()?;
    Some(format!("{ns}/{gw}"))
}

/// "<namespace>/<gateway>" of a stream route
/// "<namespace>/<route>/rule/<i>/<namespace>/<gateway>/<listener>".
fn stream_route_gateway(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.splitn(7, '/').collect();
    match parts.as_slice() {
        [_, _, "rule", _, ns, gw, _] => Some(format!("{ns}/{gw}")),
        _ => None,
    }
}

fn restrict(full: &Config, gateways: &BTreeSet<String>) -> Config {
    let serves = |g: Option<String>| g.is_some_and(|g| gateways.contains(&g));
    let mut listeners = Vec::new();
    for l in &full.listeners {
        let mut kept = l.clone();
        kept.virtual_hosts
            .retain(|v| serves(vhost_gateway(&v.name)));
        kept.stream_routes
            .retain(|s| serves(stream_route_gateway(&s.name)));
        if !kept.virtual_hosts.is_empty() || !kept.stream_routes.is_empty() {
            listeners.push(kept);
        }
    }
    let mut named = BTreeSet::new();
    for l in &listeners {
        for v in &l.virtual_hosts {
            for route in v.host_routes.iter().flat_map(|h| &h.routes) {
                route_clusters(route, &mut named);
            }
        }
        for s in &l.stream_routes {
            backend_clusters(&s.backends, &mut named);
        }
    }
    let clusters = full
        .clusters
        .iter()
        .filter(|c| named.contains(c.name.as_str()))
        .cloned()
        .collect();
    let mut config = Config {
        version: String::new(),
        listeners,
        clusters,
    };
    config.version = content_version(&config);
    config
}

fn route_clusters<'a>(route: &'a Route, named: &mut BTreeSet<&'a str>) {
    filter_clusters(&route.filters, named);
    backend_clusters(&route.backends, named);
}

fn backend_clusters<'a>(backends: &'a [WeightedBackend], named: &mut BTreeSet<&'a str>) {
    for b in backends {
        if let Some(weighted_backend::Target::Cluster(c)) = &b.target {
            named.insert(c);
        }
        filter_clusters(&b.filters, named);
    }
}

/// Mirrors name clusters too.
fn filter_clusters<'a>(filters: &'a [Filter], named: &mut BTreeSet<&'a str>) {
    for f in filters {
        if let Some(filter::Kind::RequestMirror(m)) = &f.kind {
            named.insert(&m.cluster);
        }
    }
}

fn resource<M: Message>(kind: resource::Kind, name: &str, message: &M) -> Resource {
    Resource {
        kind: kind as i32,
        name: name.to_owned(),
        version: hash(&message.encode_to_vec()),
    }
}

/// The translator's rule for `Config.version`: sha256 of the encoding without version.
fn content_version(config: &Config) -> String {
    hash(&config.encode_to_vec())
}

fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The resources whose version differs between two pushes (added or changed), by kind
/// and name: what a proxy has to rebuild.
pub fn changed<'a>(before: &[Resource], after: &'a [Resource]) -> Vec<&'a Resource> {
    let old: BTreeMap<(i32, &str), &str> = before
        .iter()
        .map(|r| ((r.kind, r.name.as_str()), r.version.as_str()))
        .collect();
    after
        .iter()
        .filter(|r| old.get(&(r.kind, r.name.as_str())) != Some(&r.version.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use portico_api::config::v1::{Cluster, HostRoutes, RequestMirror, StreamRoute, VirtualHost};

    fn to(cluster: &str) -> WeightedBackend {
        WeightedBackend {
            weight: 1,
            target: Some(weighted_backend::Target::Cluster(cluster.into())),
            filters: vec![],
        }
    }

    fn vhost(gateway: &str, cluster: &str, mirror: Option<&str>) -> VirtualHost {
        VirtualHost {
            name: format!("{gateway}/http"),
            host_routes: vec![HostRoutes {
                hostname: String::new(),
                routes: vec![Route {
                    name: "r".into(),
                    filters: mirror
                        .map(|m| Filter {
                            kind: Some(filter::Kind::RequestMirror(RequestMirror {
                                cluster: m.into(),
                                numerator: 1,
                                denominator: 1,
                            })),
                        })
                        .into_iter()
                        .collect(),
                    backends: vec![to(cluster)],
                    ..Route::default()
                }],
            }],
            ..VirtualHost::default()
        }
    }

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            ..Cluster::default()
        }
    }

    fn full() -> Config {
        Config {
            version: "translator".into(),
            listeners: vec![
                Listener {
                    name: "0.0.0.0:80".into(),
                    port: 80,
                    virtual_hosts: vec![
                        vhost("a/gw", "a/echo:80", Some("a/mirror:80")),
                        vhost("b/other", "b/web:80", None),
                    ],
                    ..Listener::default()
                },
                Listener {
                    name: "0.0.0.0:9000".into(),
                    port: 9000,
                    gateway_port: 0,
                    stream_routes: vec![StreamRoute {
                        name: "b/tcp/rule/0/b/other/tcp".into(),
                        backends: vec![to("b/db:5432")],
                        ..StreamRoute::default()
                    }],
                    ..Listener::default()
                },
            ],
            clusters: ["a/echo:80", "a/mirror:80", "b/db:5432", "b/web:80"]
                .map(cluster)
                .into(),
        }
    }

    fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
        items.iter().map(name).collect()
    }

    #[test]
    fn every_gateway_gets_the_config_as_translated() {
        let view = View::build(&full(), &None);
        assert_eq!(view.config, full());
        assert_eq!(view.resources.len(), 2 + 4);
        assert_eq!(
            view.gateways(None).into_iter().collect::<Vec<_>>(),
            ["a/gw", "b/other"]
        );
    }

    #[test]
    fn a_proxy_of_some_gateways_gets_their_listeners_and_clusters_only() {
        let only_a = Some(BTreeSet::from(["a/gw".to_owned()]));
        let view = View::build(&full(), &only_a);
        assert_eq!(names(&view.config.listeners, |l| &l.name), ["0.0.0.0:80"]);
        assert_eq!(
            names(&view.config.listeners[0].virtual_hosts, |v| &v.name),
            ["a/gw/http"]
        );
        // The backend and the mirror of the kept route.
        assert_eq!(
            names(&view.config.clusters, |c| &c.name),
            ["a/echo:80", "a/mirror:80"]
        );
        assert_ne!(view.config.version, "translator");
        assert_eq!(view.config.version.len(), 64);
        // Deterministic: the same inputs give the same version.
        assert_eq!(
            View::build(&full(), &only_a).config.version,
            view.config.version
        );

        let only_b = Some(BTreeSet::from(["b/other".to_owned()]));
        let view = View::build(&full(), &only_b);
        assert_eq!(
            names(&view.config.listeners, |l| &l.name),
            ["0.0.0.0:80", "0.0.0.0:9000"]
        );
        assert_eq!(
            names(&view.config.clusters, |c| &c.name),
            ["b/db:5432", "b/web:80"]
        );
    }

    #[test]
    fn gateways_of_a_listener() {
        let view = View::build(&full(), &None);
        let of = |l| view.gateways(Some(l)).into_iter().collect::<Vec<_>>();
        assert_eq!(of("0.0.0.0:80"), ["a/gw", "b/other"]);
        assert_eq!(of("0.0.0.0:9000"), ["b/other"]);
        // Unknown listener: the rejection concerns every Gateway of the view.
        assert_eq!(of("1.2.3.4:1"), ["a/gw", "b/other"]);
    }

    #[test]
    fn changed_resources_are_those_with_a_new_version() {
        let before = View::build(&full(), &None);
        let mut config = full();
        config.clusters[0].endpoints.push(Default::default());
        config.clusters.push(cluster("c/new:1"));
        let after = View::build(&config, &None);
        let changed: Vec<&str> = changed(&before.resources, &after.resources)
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(changed, ["a/echo:80", "c/new:1"]);
    }
}
