//! The route filters over real sockets: redirects, URL rewrites, mirrors, CORS,
//! backendRef filters, unresolved filters.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use portico_api::config::v1 as pb;
use support::*;

fn filter(kind: pb::filter::Kind) -> pb::Filter {
    pb::Filter { kind: Some(kind) }
}

fn redirect(scheme: &str, hostname: &str, port: u32, status_code: u32) -> pb::Filter {
    filter(pb::filter::Kind::RequestRedirect(pb::RequestRedirect {
        scheme: scheme.to_owned(),
        hostname: hostname.to_owned(),
        port,
        path: None,
        status_code,
    }))
}

fn prefix_replacement(prefix: &str, replacement: &str) -> pb::PathModifier {
    pb::PathModifier {
        kind: Some(pb::path_modifier::Kind::ReplacePrefixMatch(
            pb::PrefixReplacement {
                prefix: prefix.to_owned(),
                replacement: replacement.to_owned(),
            },
        )),
    }
}

fn set_header(name: &str, value: &str) -> pb::Filter {
    filter(pb::filter::Kind::RequestHeaderModifier(
        pb::HeaderModifier {
            set: vec![pb::Header {
                name: name.to_owned(),
                value: value.to_owned(),
            }],
            ..Default::default()
        },
    ))
}

fn mirror(cluster: &str) -> pb::Filter {
    filter(pb::filter::Kind::RequestMirror(pb::RequestMirror {
        cluster: cluster.to_owned(),
        numerator: 1,
        denominator: 1,
    }))
}

#[tokio::test]
async fn redirects_answer_without_a_backend() {
    let mut path_redirect = redirect("", "", 0, 302);
    if let Some(pb::filter::Kind::RequestRedirect(r)) = &mut path_redirect.kind {
        r.path = Some(prefix_replacement(
            "/original-prefix",
            "/replacement-prefix",
        ));
    }
    // The listener is configured on 8080: a redirect without scheme or port keeps it.
    let (proxy, addr) = start_on(
        8080,
        vec![
            filtered_route(
                "host",
                "/hostname-redirect",
                vec![redirect("", "example.org", 0, 302)],
                vec![],
            ),
            filtered_route(
                "scheme",
                "/scheme",
                vec![redirect("https", "", 0, 301)],
                vec![],
            ),
            filtered_route("port", "/port", vec![redirect("", "", 8083, 308)], vec![]),
            filtered_route("path", "/original-prefix", vec![path_redirect], vec![]),
        ],
        vec![],
    )
    .await;
    let client = TestClient::http1();
    // (path, status, Location)
    let cases = [
        (
            "/hostname-redirect?a=b",
            302,
            "http://example.org:8080/hostname-redirect?a=b",
        ),
        ("/scheme", 301, "https://gw.example/scheme"),
        ("/port/x", 308, "http://gw.example:8083/port/x"),
        (
            "/original-prefix/lemon",
            302,
            "http://gw.example:8080/replacement-prefix/lemon",
        ),
    ];
    for (path, status, location) in cases {
        let reply = client.get(addr, "gw.example:8080", path).await;
        assert_eq!(reply.status.as_u16(), status, "{path}");
        assert_eq!(reply.headers["location"], location, "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn url_rewrite_changes_what_the_backend_sees() {
    let a = Echo::start("a").await;
    let rewrite = |hostname: &str, path: Option<pb::PathModifier>| {
        filter(pb::filter::Kind::UrlRewrite(pb::UrlRewrite {
            hostname: hostname.to_owned(),
            path,
        }))
    };
    let full = pb::PathModifier {
        kind: Some(pb::path_modifier::Kind::ReplaceFullPath("/one".to_owned())),
    };
    let (proxy, addr) = start_on(
        80,
        vec![
            filtered_route(
                "prefix",
                "/prefix/one",
                vec![rewrite("", Some(prefix_replacement("/prefix/one", "/one")))],
                vec![to("a", 1)],
            ),
            filtered_route(
                "strip",
                "/strip-prefix",
                vec![rewrite("", Some(prefix_replacement("/strip-prefix", "/")))],
                vec![to("a", 1)],
            ),
            filtered_route(
                "full",
                "/full/one",
                vec![
                    rewrite("one.example.org", Some(full)),
                    set_header("x-after", "yes"),
                ],
                vec![to("a", 1)],
            ),
        ],
        vec![cluster("a", &[&a])],
    )
    .await;
    // (path sent, path seen, host rewritten to)
    let cases = [
        ("/prefix/one/two?q=1", "/one/two?q=1", None),
        ("/strip-prefix/three", "/three", None),
        ("/strip-prefix", "/", None),
        ("/full/one/two", "/one", Some("one.example.org")),
    ];
    for (sent, path, rewritten) in cases {
        // HTTP/1.1: the host comes in the Host header.
        let reply = TestClient::http1().get(addr, "rewrite.example", sent).await;
        assert_eq!(reply.json()["path"], path, "{sent}");
        let host = rewritten.unwrap_or("rewrite.example");
        assert_eq!(reply.seen_header("host"), [host], "{sent}");
        // HTTP/2: the host comes in :authority, and is rewritten there.
        let reply = TestClient::h2c().get(addr, "", sent).await;
        assert_eq!(reply.json()["path"], path, "{sent}");
        let host = rewritten.map_or_else(|| addr.to_string(), str::to_owned);
        assert_eq!(reply.seen_header("host"), [host], "{sent}");
    }
    let reply = TestClient::http1().get(addr, "h", "/full/one").await;
    assert_eq!(reply.seen_header("x-after"), ["yes"]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn mirrors_get_a_copy_and_never_delay_the_request() {
    let main = Echo::start("main").await;
    let copy = Echo::start("copy").await;
    let stuck = BlackHole::start().await;
    let (proxy, addr) = start_on(
        80,
        vec![
            filtered_route(
                "mirrored",
                "/mirror",
                vec![
                    set_header("x-before", "1"),
                    mirror("copy"),
                    set_header("x-after", "2"),
                ],
                vec![to("main", 1)],
            ),
            filtered_route(
                "two-mirrors",
                "/multi",
                vec![mirror("copy"), mirror("stuck")],
                vec![to("main", 1)],
            ),
        ],
        vec![
            cluster("main", &[&main]),
            cluster("copy", &[&copy]),
            stuck.cluster("stuck"),
        ],
    )
    .await;
    let client = TestClient::http1();

    let reply = client
        .request(
            "POST",
            addr,
            "h",
            "/mirror/x",
            &[("content-type", "text/plain")],
            "payload",
        )
        .await;
    assert_eq!(reply.server(), "main");
    assert_eq!(reply.json()["body"], "payload");
    copy.wait_received(1).await;
    let seen = eventually(Duration::from_secs(5), || async {
        copy.seen().first().cloned()
    })
    .await;
    assert_eq!(seen["path"], "/mirror/x");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], "payload");
    // The copy is the request as it was at the mirror's place in the filter list.
    assert_eq!(seen["headers"]["x-before"][0], "1");
    assert!(seen["headers"].get("x-after").is_none());

    // A mirror that never answers does not hold up the request, nor the next ones.
    for _ in 0..5 {
        let started = Instant::now();
        let reply = client.get(addr, "h", "/multi").await;
        assert_eq!(reply.server(), "main");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    copy.wait_received(6).await;
    eventually(Duration::from_secs(5), || async {
        (stuck.accepted() >= 1).then_some(())
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_fraction_of_requests_is_mirrored() {
    let main = Echo::start("main").await;
    let copy = Echo::start("copy").await;
    let (proxy, addr) = start_on(
        80,
        vec![filtered_route(
            "some",
            "/",
            vec![filter(pb::filter::Kind::RequestMirror(pb::RequestMirror {
                cluster: "copy".to_owned(),
                numerator: 25,
                denominator: 50,
            }))],
            vec![to("main", 1)],
        )],
        vec![cluster("main", &[&main]), cluster("copy", &[&copy])],
    )
    .await;
    let client = TestClient::http1();
    for _ in 0..400 {
        client.get(addr, "h", "/").await;
    }
    // Half of 400, well within a binomial spread (sd 10).
    let mirrored = eventually(Duration::from_secs(5), || async {
        let n = copy.received();
        (n >= 150).then_some(n)
    })
    .await;
    assert!((150..=250).contains(&mirrored), "{mirrored}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_and_actual_responses_get_headers() {
    let a = Echo::start("a").await;
    let cors = filter(pb::filter::Kind::Cors(pb::Cors {
        allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
        expose_headers: vec!["x-header-3".into()],
        allow_credentials: true,
        max_age_seconds: 3600,
    }));
    let (proxy, addr) = start_on(
        80,
        vec![filtered_route(
            "cors",
            "/cors-1",
            vec![cors],
            vec![to("a", 1)],
        )],
        vec![cluster("a", &[&a])],
    )
    .await;
    let client = TestClient::http1();
    let preflight = client
        .request(
            "OPTIONS",
            addr,
            "h",
            "/cors-1",
            &[
                ("origin", "https://xpto.www.bar.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
            "",
        )
        .await;
    assert_eq!(preflight.status, StatusCode::OK);
    let h = &preflight.headers;
    assert_eq!(h["access-control-allow-origin"], "https://xpto.www.bar.com");
    assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2");
    assert_eq!(h["access-control-expose-headers"], "x-header-3");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    // The preflight never reached the backend.
    assert_eq!(a.received(), 0);

    let actual = client
        .send(addr, "h", "/cors-1", &[("origin", "https://www.foo.com")])
        .await;
    assert_eq!(actual.server(), "a");
    assert_eq!(
        actual.headers["access-control-allow-origin"],
        "https://www.foo.com"
    );
    let other = client
        .send(addr, "h", "/cors-1", &[("origin", "https://foobar.com")])
        .await;
    assert_eq!(other.server(), "a");
    assert!(other.headers.get("access-control-allow-origin").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn backend_filters_run_only_for_their_backend() {
    let v1 = Echo::start("v1").await;
    let v2 = Echo::start("v2").await;
    let with_filter = |cluster: &str| pb::WeightedBackend {
        filters: vec![set_header("backend", cluster)],
        ..to(cluster, 1)
    };
    let (proxy, addr) = start_on(
        80,
        vec![prefix_route(
            "split",
            "/",
            vec![with_filter("v1"), with_filter("v2")],
        )],
        vec![cluster("v1", &[&v1]), cluster("v2", &[&v2])],
    )
    .await;
    let client = TestClient::http1();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let reply = client.get(addr, "h", "/").await;
        let server = reply.server();
        assert_eq!(reply.seen_header("backend"), std::slice::from_ref(&server));
        seen.insert(server);
    }
    assert_eq!(seen.len(), 2, "both backends answered");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unresolved_filter_answers_500() {
    let a = Echo::start("a").await;
    let unresolved = filter(pb::filter::Kind::Unresolved(pb::Unresolved {
        reason: "InvalidKind: example.com/RateLimit".to_owned(),
    }));
    let (proxy, addr) = start_on(
        80,
        vec![
            filtered_route("custom", "/custom", vec![unresolved], vec![to("a", 1)]),
            prefix_route("fine", "/", vec![to("a", 1)]),
        ],
        vec![cluster("a", &[&a])],
    )
    .await;
    let client = TestClient::http1();
    assert_eq!(
        client.get(addr, "h", "/custom").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(client.get(addr, "h", "/other").await.status, StatusCode::OK);
    assert_eq!(a.received(), 1);
    proxy.shutdown().await;
}
