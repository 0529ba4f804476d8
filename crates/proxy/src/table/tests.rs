//! Table-driven tests of the routing table: virtual host selection (isolation), group
//! order (hostname precedence), path, header, query and method matching, and the
//! configs that must be rejected.

#![allow(clippy::unwrap_used)]

use http::Request;
use portico_api::config::v1 as pb;

use super::*;

fn path(kind: pb::path_match::Kind, value: &str) -> pb::RouteMatch {
    pb::RouteMatch {
        path: Some(pb::PathMatch {
            kind: kind as i32,
            value: value.to_owned(),
        }),
        ..Default::default()
    }
}

fn prefix(value: &str) -> pb::RouteMatch {
    path(pb::path_match::Kind::Prefix, value)
}

fn exact(value: &str) -> pb::RouteMatch {
    path(pb::path_match::Kind::Exact, value)
}

fn regex(value: &str) -> pb::RouteMatch {
    path(pb::path_match::Kind::Regex, value)
}

fn route(name: &str, m: pb::RouteMatch) -> pb::Route {
    pb::Route {
        name: name.to_owned(),
        route: "ns/r".to_owned(),
        r#match: Some(m),
        filters: vec![],
        backends: vec![pb::WeightedBackend {
            weight: 1,
            target: Some(pb::weighted_backend::Target::Cluster("c".to_owned())),
            filters: vec![],
        }],
        timeouts: None,
        retry: None,
        grpc: Default::default(),
    }
}

fn group(hostname: &str, routes: Vec<pb::Route>) -> pb::HostRoutes {
    pb::HostRoutes {
        hostname: hostname.to_owned(),
        routes,
    }
}

// The update is needless until the proto grows a field.
#[allow(clippy::needless_update)]
fn vhost(name: &str, hostname: &str, groups: Vec<pb::HostRoutes>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        hostname: hostname.to_owned(),
        host_routes: groups,
        // Fields added to the proto later keep their defaults here.
        ..Default::default()
    }
}

fn config(vhosts: Vec<pb::VirtualHost>) -> pb::Config {
    pb::Config {
        version: "v1".to_owned(),
        listeners: vec![pb::Listener {
            name: "l".to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 8080,
            protocol: pb::Protocol::Http as i32,
            virtual_hosts: vhosts,
            gateway_port: 0,
            stream_routes: Default::default(),
        }],
        clusters: vec![pb::Cluster {
            name: "c".to_owned(),
            endpoints: vec![],
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: Default::default(),
        }],
    }
}

fn build(c: &pb::Config) -> RoutingTable {
    RoutingTable::build(c, &RoutingTable::empty()).unwrap()
}

/// The name of the route answering `method uri` with `headers` on host `host`.
fn lookup(
    table: &RoutingTable,
    host: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    let host = request_host(&Request::from_parts(parts.clone(), ()));
    table.listeners["l"]
        .route(&host, &parts)
        .map(|r| r.name.clone())
}

#[test]
fn prefix_matches_whole_segments() {
    let table = build(&config(vec![vhost(
        "v",
        "",
        vec![group(
            "",
            vec![
                route("foo", prefix("/foo")),
                route("bar-slash", prefix("/bar/")),
                route("root", prefix("/")),
            ],
        )],
    )]));
    // (path, route)
    let cases = [
        ("/foo", "foo"),
        ("/foo/", "foo"),
        ("/foo/bar", "foo"),
        ("/foo?x=1", "foo"),
        ("/foobar", "root"),
        ("/fo", "root"),
        ("/bar", "bar-slash"),
        ("/bar/baz", "bar-slash"),
        ("/barn", "root"),
        ("/", "root"),
        ("/anything/else", "root"),
    ];
    for (p, want) in cases {
        assert_eq!(
            lookup(&table, "h", "GET", p, &[]).as_deref(),
            Some(want),
            "{p}"
        );
    }
}

#[test]
fn exact_and_regex_paths() {
    let table = build(&config(vec![vhost(
        "v",
        "",
        vec![group(
            "",
            vec![
                route("exact", exact("/exact")),
                route("regex", regex(r"/items/[0-9]+")),
            ],
        )],
    )]));
    let cases = [
        ("/exact", Some("exact")),
        ("/exact?q=1", Some("exact")),
        ("/exact/", None),
        ("/exactly", None),
        ("/items/42", Some("regex")),
        // Whole-path match: no partial hits at either end.
        ("/items/42/more", None),
        ("/v1/items/42", None),
        ("/items/abc", None),
    ];
    for (p, want) in cases {
        assert_eq!(lookup(&table, "h", "GET", p, &[]).as_deref(), want, "{p}");
    }
}

#[test]
fn first_matching_route_in_order_wins() {
    // The translator orders routes by Gateway API precedence; the proxy must honour
    // that order and not, say, prefer the longest prefix on its own.
    let table = build(&config(vec![vhost(
        "v",
        "",
        vec![group(
            "",
            vec![
                route("first", prefix("/")),
                route("never", prefix("/specific")),
            ],
        )],
    )]));
    assert_eq!(
        lookup(&table, "h", "GET", "/specific", &[]).as_deref(),
        Some("first")
    );
}

#[test]
fn virtual_host_selection_and_isolation() {
    // Three Gateway listeners on one socket. Each vhost has a catch-all group.
    let table = build(&config(vec![
        vhost("any", "", vec![group("", vec![route("any", prefix("/"))])]),
        vhost(
            "wild",
            "*.example.com",
            vec![group("", vec![route("wild", prefix("/"))])],
        ),
        vhost(
            "deep-wild",
            "*.api.example.com",
            vec![group("", vec![route("deep-wild", prefix("/only"))])],
        ),
        vhost(
            "exact",
            "foo.example.com",
            vec![group("", vec![route("exact", prefix("/"))])],
        ),
    ]));
    let cases = [
        ("foo.example.com", "/", Some("exact")),
        ("FOO.example.com:8080", "/", Some("exact")),
        ("bar.example.com", "/", Some("wild")),
        ("a.b.example.com", "/", Some("wild")),
        ("x.api.example.com", "/only", Some("deep-wild")),
        // Isolation: the most specific vhost has no route for this path, and the
        // less specific vhosts' routes must not answer in its place.
        ("x.api.example.com", "/other", None),
        ("example.com", "/", Some("any")),
        ("other.org", "/", Some("any")),
    ];
    for (host, p, want) in cases {
        assert_eq!(
            lookup(&table, host, "GET", p, &[]).as_deref(),
            want,
            "{host}{p}"
        );
    }
}

/// The upstream HTTPRouteHTTPSListenerDetectMisdirectedRequests table, row by row:
/// (SNI, Host, misdirected). Listeners: none, `second-example.org`, `*.wildcard.org`,
/// `fourth-example.wildcard.org`, all on one port.
#[test]
fn misdirected_when_host_and_sni_select_different_vhosts() {
    let catch_all = |name: &str, hostname: &str| {
        vhost(
            name,
            hostname,
            vec![group("", vec![route(name, prefix("/"))])],
        )
    };
    let table = build(&config(vec![
        catch_all("https", ""),
        catch_all("with-hostname", "second-example.org"),
        catch_all("wildcard", "*.wildcard.org"),
        catch_all("matching-wildcard", "fourth-example.wildcard.org"),
    ]));
    let l = &table.listeners["l"];
    let rows = [
        ("example.org", "example.org", false),
        ("example.org", "second-example.org", true),
        ("example.org", "unknown-example.org", false),
        ("second-example.org", "second-example.org", false),
        ("second-example.org", "example.org", true),
        ("second-example.org", "unknown-example.org", true),
        (
            "third-example.wildcard.org",
            "third-example.wildcard.org",
            false,
        ),
        (
            "third-example.wildcard.org",
            "fith-example.wildcard.org",
            false,
        ),
        (
            "third-example.wildcard.org",
            "fourth-example.wildcard.org",
            true,
        ),
        ("third-example.wildcard.org", "second-example.org", true),
        ("third-example.wildcard.org", "unknown-example.org", true),
        (
            "fourth-example.wildcard.org",
            "fourth-example.wildcard.org",
            false,
        ),
        (
            "fourth-example.wildcard.org",
            "fith-example.wildcard.org",
            true,
        ),
        ("unknown-example.org", "example.org", false),
        ("unknown-example.org", "unknown-example.org", false),
        // SNI is case-insensitive; the request host arrives lowercased.
        ("Second-Example.ORG", "second-example.org", false),
    ];
    for (sni, host, want) in rows {
        assert_eq!(l.misdirected(sni, host), want, "SNI {sni}, Host {host}");
    }
}

#[test]
fn no_matching_vhost_is_no_route() {
    let table = build(&config(vec![vhost(
        "exact",
        "foo.example.com",
        vec![group("", vec![route("exact", prefix("/"))])],
    )]));
    assert_eq!(lookup(&table, "bar.example.com", "GET", "/", &[]), None);
}

#[test]
fn host_groups_walk_in_order_and_fall_through() {
    // Groups sorted as the translator does: exact, wildcard, any.
    let table = build(&config(vec![vhost(
        "v",
        "",
        vec![
            group("foo.example.com", vec![route("exact-api", prefix("/api"))]),
            group(
                "*.example.com",
                vec![
                    route("wild-api", prefix("/api")),
                    route("wild-web", prefix("/web")),
                ],
            ),
            group("", vec![route("fallback", prefix("/"))]),
        ],
    )]));
    let cases = [
        ("foo.example.com", "/api", "exact-api"),
        // Not answered by the exact group: falls through to less specific groups.
        ("foo.example.com", "/web", "wild-web"),
        ("foo.example.com", "/else", "fallback"),
        ("bar.example.com", "/api", "wild-api"),
        ("example.com", "/api", "fallback"),
    ];
    for (host, p, want) in cases {
        assert_eq!(
            lookup(&table, host, "GET", p, &[]).as_deref(),
            Some(want),
            "{host}{p}"
        );
    }
}

#[test]
fn many_hosts_each_find_their_group_in_order() {
    // One group per hostname (as thousands of routes with a hostname each give), with
    // wildcard and "any" groups between them, and one hostname in two groups: the
    // groups a host finds are its own and the matching inexact ones, in config order.
    let mut groups = vec![group(
        "dup.example.com",
        vec![route("dup-1", exact("/one"))],
    )];
    for i in 0..500 {
        groups.push(group(
            &format!("h{i}.example.com"),
            vec![route(&format!("r{i}"), prefix(&format!("/p{i}")))],
        ));
    }
    groups.push(group("*.example.com", vec![route("wild", prefix("/w"))]));
    groups.push(group(
        "dup.example.com",
        vec![route("dup-2", exact("/two"))],
    ));
    groups.push(group("", vec![route("any", prefix("/"))]));
    let table = build(&config(vec![vhost("v", "", groups)]));
    for i in [0, 1, 250, 499] {
        let host = format!("H{i}.example.com");
        assert_eq!(
            lookup(&table, &host, "GET", &format!("/p{i}/x"), &[]),
            Some(format!("r{i}"))
        );
        // Another host's path: not this host's route, the wildcard or the fallback.
        assert_eq!(
            lookup(&table, &host, "GET", &format!("/p{}", i + 1), &[]).as_deref(),
            Some("any")
        );
        assert_eq!(
            lookup(&table, &host, "GET", "/w", &[]).as_deref(),
            Some("wild")
        );
    }
    let cases = [
        ("dup.example.com", "/one", "dup-1"),
        // The wildcard group comes before the second "dup" group.
        ("dup.example.com", "/w", "wild"),
        ("dup.example.com", "/two", "dup-2"),
        ("h500.example.com", "/p500", "any"),
        ("other.org", "/w", "any"),
    ];
    for (host, p, want) in cases {
        assert_eq!(
            lookup(&table, host, "GET", p, &[]).as_deref(),
            Some(want),
            "{host}{p}"
        );
    }
}

#[test]
fn headers_query_and_method() {
    let header = |name: &str, kind: pb::StringMatchKind, value: &str| pb::HeaderMatch {
        name: name.to_owned(),
        kind: kind as i32,
        value: value.to_owned(),
    };
    let query = |name: &str, kind: pb::StringMatchKind, value: &str| pb::QueryParamMatch {
        name: name.to_owned(),
        kind: kind as i32,
        value: value.to_owned(),
    };
    let with = |m: pb::RouteMatch| pb::RouteMatch {
        path: Some(pb::PathMatch {
            kind: pb::path_match::Kind::Prefix as i32,
            value: "/".to_owned(),
        }),
        ..m
    };
    let table = build(&config(vec![vhost(
        "v",
        "",
        vec![group(
            "",
            vec![
                route(
                    "header-exact",
                    with(pb::RouteMatch {
                        headers: vec![
                            header("X-Env", pb::StringMatchKind::Exact, "canary"),
                            // A repeated name: only the first entry counts.
                            header("x-env", pb::StringMatchKind::Exact, "ignored"),
                        ],
                        ..Default::default()
                    }),
                ),
                route(
                    "header-regex",
                    with(pb::RouteMatch {
                        headers: vec![header("x-version", pb::StringMatchKind::Regex, "v[0-9]")],
                        ..Default::default()
                    }),
                ),
                route(
                    "query",
                    with(pb::RouteMatch {
                        query_params: vec![
                            query("tier", pb::StringMatchKind::Exact, "gold plus"),
                            query("id", pb::StringMatchKind::Regex, "[0-9]+"),
                        ],
                        ..Default::default()
                    }),
                ),
                route(
                    "post",
                    with(pb::RouteMatch {
                        method: "POST".to_owned(),
                        ..Default::default()
                    }),
                ),
                route("default", prefix("/")),
            ],
        )],
    )]));
    // (method, uri, headers, route)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("GET", "/", &[("x-env", "canary")], "header-exact"),
        ("GET", "/", &[("X-ENV", "canary")], "header-exact"),
        ("GET", "/", &[("x-env", "Canary")], "default"),
        ("GET", "/", &[("x-env", "ignored")], "default"),
        ("GET", "/", &[("x-version", "v2")], "header-regex"),
        ("GET", "/", &[("x-version", "v22")], "default"),
        ("GET", "/?tier=gold%20plus&id=7", &[], "query"),
        ("GET", "/?tier=gold+plus&id=7", &[], "query"),
        // First value of a repeated parameter.
        ("GET", "/?id=7&tier=gold%20plus&tier=silver", &[], "query"),
        ("GET", "/?tier=silver&tier=gold%20plus&id=7", &[], "default"),
        // Names are case-sensitive.
        ("GET", "/?Tier=gold%20plus&id=7", &[], "default"),
        ("GET", "/?tier=gold%20plus&id=x", &[], "default"),
        ("POST", "/", &[], "post"),
        ("PUT", "/", &[], "default"),
    ];
    for (method, uri, headers, want) in cases {
        assert_eq!(
            lookup(&table, "h", method, uri, headers).as_deref(),
            Some(*want),
            "{method} {uri} {headers:?}"
        );
    }
}

#[test]
fn bad_configs_are_rejected() {
    let ok = config(vec![vhost(
        "v",
        "",
        vec![group("", vec![route("r", prefix("/"))])],
    )]);
    build(&ok);

    let mut bad_regex = ok.clone();
    bad_regex.listeners[0].virtual_hosts[0].host_routes[0].routes[0].r#match =
        Some(regex("/(unclosed"));

    let mut bad_header = ok.clone();
    bad_header.listeners[0].virtual_hosts[0].host_routes[0].routes[0].r#match =
        Some(pb::RouteMatch {
            headers: vec![pb::HeaderMatch {
                name: "bad name".to_owned(),
                kind: pb::StringMatchKind::Exact as i32,
                value: "v".to_owned(),
            }],
            ..Default::default()
        });

    let mut unspecified_path = ok.clone();
    unspecified_path.listeners[0].virtual_hosts[0].host_routes[0].routes[0].r#match =
        Some(path(pb::path_match::Kind::Unspecified, "/"));

    let mut unknown_cluster = ok.clone();
    unknown_cluster.listeners[0].virtual_hosts[0].host_routes[0].routes[0].backends[0].target =
        Some(pb::weighted_backend::Target::Cluster("nope".to_owned()));

    let mut bad_address = ok.clone();
    bad_address.listeners[0].address = "localhost".to_owned();

    let mut bad_port = ok.clone();
    bad_port.listeners[0].port = 70_000;

    let mut duplicate_listener = ok.clone();
    duplicate_listener
        .listeners
        .push(duplicate_listener.listeners[0].clone());

    let mut bad_hostname = ok.clone();
    bad_hostname.listeners[0].virtual_hosts[0].hostname = "*".to_owned();

    let mut empty_filter = ok.clone();
    empty_filter.listeners[0].virtual_hosts[0].host_routes[0].routes[0]
        .filters
        .push(pb::Filter { kind: None });

    let cases = [
        ("bad regex", bad_regex, "r"),
        ("bad header", bad_header, "r"),
        ("unspecified path", unspecified_path, "r"),
        ("unknown cluster", unknown_cluster, "r"),
        ("bad address", bad_address, "l"),
        ("bad port", bad_port, "l"),
        ("duplicate listener", duplicate_listener, "l"),
        ("bad hostname", bad_hostname, "v"),
        ("unknown filter", empty_filter, "r"),
    ];
    for (what, c, at) in cases {
        match RoutingTable::build(&c, &RoutingTable::empty()) {
            Err(ProxyError::InvalidConfig { location, .. }) => {
                assert_eq!(location, at, "{what}");
            }
            Ok(_) => panic!("{what}: accepted"),
            Err(other) => panic!("{what}: {other}"),
        }
    }
}

#[test]
fn non_http_listeners_are_skipped() {
    let mut c = config(vec![]);
    let mut tcp = c.listeners[0].clone();
    tcp.name = "tcp".to_owned();
    tcp.protocol = pb::Protocol::Tcp as i32;
    c.listeners.push(tcp);
    let table = build(&c);
    assert_eq!(table.listeners.keys().collect::<Vec<_>>(), ["l"]);
}

/// The listener's scheme reaches redirects and x-forwarded-proto: an HTTPS listener
/// says "https" (HTTPRouteRedirectPortAndScheme: "a redirect without scheme on an HTTPS
/// listener keeps https").
#[test]
fn listener_scheme_follows_its_protocol() {
    let mut c = config(vec![]);
    let mut https = c.listeners[0].clone();
    https.name = "https".to_owned();
    https.port = 8443;
    https.protocol = pb::Protocol::Https as i32;
    c.listeners.push(https);
    let table = build(&c);
    let scheme = |name: &str| table.listeners[name].downstream.scheme;
    assert_eq!(scheme("l"), "http");
    assert_eq!(scheme("https"), "https");
    assert_eq!(table.listeners["https"].downstream.port, 8443);
}

#[test]
fn unchanged_clusters_keep_their_state() {
    let c = config(vec![]);
    let first = build(&c);
    let second = RoutingTable::build(&c, &first).unwrap();
    assert!(Arc::ptr_eq(&first.clusters["c"], &second.clusters["c"]));

    let mut changed = c.clone();
    changed.clusters[0].endpoints.push(pb::Endpoint {
        address: "10.0.0.1".to_owned(),
        port: 80,
        ready: true,
        pod: String::new(),
    });
    let third = RoutingTable::build(&changed, &second).unwrap();
    assert!(!Arc::ptr_eq(&second.clusters["c"], &third.clusters["c"]));
}
