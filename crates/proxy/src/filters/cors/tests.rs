//! The CORS filter against the cases of the upstream conformance tests
//! (httproute-cors.go, httproute-cors-allow-credentials-behavior.go), request by
//! request.

#![allow(clippy::unwrap_used)]

use http::Request;

use super::*;

fn cors(
    origins: &[&str],
    methods: &[&str],
    headers: &[&str],
    expose: &[&str],
    credentials: bool,
    max_age: u32,
) -> Cors {
    let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    Cors::compile(&pb::Cors {
        allow_origins: list(origins),
        allow_methods: list(methods),
        allow_headers: list(headers),
        expose_headers: list(expose),
        allow_credentials: credentials,
        max_age_seconds: max_age,
    })
    .unwrap()
}

/// The routes of httproute-cors.yaml.
fn cors_1() -> Cors {
    cors(
        &["https://www.foo.com", "https://*.bar.com"],
        &["GET", "OPTIONS"],
        &["x-header-1", "x-header-2"],
        &["x-header-3", "x-header-4"],
        true,
        3600,
    )
}
fn cors_2() -> Cors {
    cors(&["https://www.foo.com"], &["*"], &[], &[], false, 5)
}
fn wildcard_origin() -> Cors {
    cors(&["*"], &["PUT"], &[], &[], false, 5)
}
fn wildcard_all(credentials: bool) -> Cors {
    cors(&["*"], &["*"], &["*"], &[], credentials, 5)
}

fn request(method: &str, headers: &[(&str, &str)]) -> Parts {
    let mut r = Request::builder().method(method).uri("/cors");
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    r.body(()).unwrap().into_parts().0
}

fn preflight(c: &Cors, headers: &[(&str, &str)]) -> Response<ProxyBody> {
    match c.on_request(&request("OPTIONS", headers)) {
        CorsStep::Preflight(response) => response,
        CorsStep::Actual(_) => panic!("not taken for a preflight"),
    }
}

/// The response headers an actual request gets.
fn actual(c: &Cors, method: &str, headers: &[(&str, &str)]) -> HeaderMap {
    let mut response = HeaderMap::new();
    match c.on_request(&request(method, headers)) {
        CorsStep::Actual(Some(h)) => h.apply(&mut response),
        CorsStep::Actual(None) => {}
        CorsStep::Preflight(_) => panic!("answered like a preflight"),
    }
    response
}

fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn preflight_from_allowed_origins() {
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        // "any number of periods left to '*'"
        "https://xpto.www.bar.com",
    ] {
        let response = preflight(
            &cors_1(),
            &[
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
        );
        assert_eq!(response.status(), 200, "{origin}");
        let h = response.headers();
        assert_eq!(get(h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(h, "access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(
            get(h, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            get(h, "access-control-expose-headers"),
            Some("x-header-3, x-header-4")
        );
        assert_eq!(get(h, "access-control-max-age"), Some("3600"));
        assert_eq!(get(h, "access-control-allow-credentials"), Some("true"));
    }
}

#[test]
fn preflight_from_other_origins_gets_no_cors_headers() {
    for origin in [
        "https://foobar.com",
        // A wildcard needs a label in front of it.
        "https://bar.com",
        // Another scheme or port is another origin.
        "http://www.foo.com",
        "https://www.foo.com:8443",
    ] {
        let response = preflight(
            &cors_1(),
            &[("origin", origin), ("access-control-request-method", "GET")],
        );
        assert!([200, 204, 403].contains(&response.status().as_u16()));
        assert!(
            response
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{origin}: {:?}",
            response.headers()
        );
    }
}

#[test]
fn default_ports_are_the_same_origin() {
    let response = preflight(
        &cors_1(),
        &[
            ("origin", "https://www.foo.com:443"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert_eq!(
        get(response.headers(), "access-control-allow-origin"),
        Some("https://www.foo.com:443")
    );
}

#[test]
fn actual_requests() {
    let h = actual(
        &cors_1(),
        "GET",
        &[
            ("origin", "https://www.bar.com"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://www.bar.com")
    );
    assert_eq!(get(&h, "vary"), Some("Origin"));
    let h = actual(&cors_1(), "GET", &[("origin", "https://foobar.com")]);
    assert!(h.is_empty());
    // No Origin: not a CORS request at all.
    assert!(matches!(
        cors_1().on_request(&request("GET", &[])),
        CorsStep::Actual(None)
    ));
    // OPTIONS without Access-Control-Request-Method is an actual request.
    assert!(matches!(
        cors_1().on_request(&request("OPTIONS", &[("origin", "https://www.foo.com")])),
        CorsStep::Actual(Some(_))
    ));
}

#[test]
fn wildcard_methods_echo_the_requested_method() {
    let response = preflight(
        &cors_2(),
        &[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    let h = response.headers();
    assert_eq!(get(h, "access-control-allow-methods"), Some("POST"));
    assert_eq!(
        get(h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(get(h, "access-control-allow-credentials"), None);
}

#[test]
fn wildcard_origin_echoes_the_origin_with_its_port() {
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let response = preflight(
            &wildcard_origin(),
            &[("origin", origin), ("access-control-request-method", "PUT")],
        );
        let h = response.headers();
        assert_eq!(get(h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(get(h, "access-control-allow-credentials"), None);
        let h = actual(&wildcard_origin(), "PUT", &[("origin", origin)]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
    }
}

#[test]
fn credentials_only_when_configured_and_allowed() {
    let ask = [
        ("origin", "https://other.foo.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    let response = preflight(&wildcard_all(true), &ask);
    let h = response.headers();
    assert_eq!(
        get(h, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(get(h, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        get(h, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(get(h, "access-control-allow-credentials"), Some("true"));

    let response = preflight(&wildcard_all(false), &ask);
    assert_eq!(
        get(response.headers(), "access-control-allow-credentials"),
        None
    );

    let authed = [
        ("origin", "https://other.foo.com"),
        ("authorization", "Bearer test"),
    ];
    let h = actual(&wildcard_all(true), "GET", &authed);
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    let h = actual(&wildcard_all(false), "GET", &authed);
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(get(&h, "access-control-allow-credentials"), None);

    // allowCredentials with an origin that is not allowed: no credentials header.
    let creds = cors(&["https://app.example"], &[], &[], &[], true, 5);
    let h = actual(&creds, "GET", &[("origin", "http://not-app.example")]);
    assert!(h.is_empty());
    let h = actual(&creds, "GET", &[("origin", "https://app.example")]);
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn allow_headers_only_when_asked() {
    let response = preflight(
        &cors_1(),
        &[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert_eq!(
        get(response.headers(), "access-control-allow-headers"),
        None
    );
}

#[test]
fn exposing_every_header_with_credentials_names_them() {
    let c = cors(&["*"], &[], &[], &["*"], true, 5);
    let mut response = HeaderMap::new();
    response.insert("x-one", HeaderValue::from_static("1"));
    response.insert("content-type", HeaderValue::from_static("text/plain"));
    match c.on_request(&request("GET", &[("origin", "https://a.example")])) {
        CorsStep::Actual(Some(h)) => h.apply(&mut response),
        other => panic!("{other:?}"),
    }
    let exposed = get(&response, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("x-one") && exposed.contains("content-type"),
        "{exposed}"
    );
    assert!(!exposed.contains('*'));

    let c = cors(&["*"], &[], &[], &["*"], false, 5);
    let h = actual(&c, "GET", &[("origin", "https://a.example")]);
    assert_eq!(get(&h, "access-control-expose-headers"), Some("*"));
}

#[test]
fn patterns() {
    let p = |s: &str| OriginPattern::parse(s).unwrap();
    assert_eq!(
        p("https://*.bar.com"),
        OriginPattern {
            scheme: "https".into(),
            host: HostMatch::Suffix(".bar.com".into()),
            port: 443
        }
    );
    assert_eq!(p("http://a.com:8080").port, 8080);
    assert_eq!(p("https://*").host, HostMatch::Any);
    for bad in [
        "a.com",
        "ftp://a.com",
        "https://a.*.com",
        "https://*bar.com",
        "https://a.com:x",
    ] {
        assert!(OriginPattern::parse(bad).is_none(), "{bad}");
    }
}
