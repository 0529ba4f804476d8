#![allow(clippy::unwrap_used)]

use portico_api::config::v1::filter::Kind;
use portico_api::k8s::Service;
use serde_json::json;

use super::*;
use crate::inputs::{Inputs, Options};

fn inputs() -> Inputs {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "mirror", "namespace": "ns"},
        "spec": {"ports": [{"port": 8080}]}
    }))
    .unwrap();
    Inputs {
        services: vec![service],
        ..Inputs::default()
    }
}

/// Converts the rule filters written as YAML-like JSON, with `prefix` as the rule's
/// single PathPrefix match.
fn convert(filters: serde_json::Value, prefix: Option<&str>) -> Result<RuleFilters, RouteError> {
    let inputs = inputs();
    let options = Options::default();
    let index = Index::new(&inputs, &options);
    let filters: Vec<HttpRouteRulesFilters> = serde_json::from_value(filters).unwrap();
    convert_rule(
        Context {
            index: &index,
            route_kind: portico_api::names::kind::HTTP_ROUTE,
            namespace: "ns",
            rule: 0,
            prefix,
        },
        &filters,
    )
}

fn kinds(filters: serde_json::Value, prefix: Option<&str>) -> Vec<Kind> {
    convert(filters, prefix)
        .unwrap()
        .filters
        .into_iter()
        .map(|f| f.kind.unwrap())
        .collect()
}

#[test]
fn header_modifiers_keep_their_lists() {
    let got = kinds(
        json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "X-Set", "value": "v"}],
            "add": [{"name": "foo", "value": "bar"}],
            "remove": ["X-Gone"]}}]),
        None,
    );
    assert_eq!(
        got,
        [Kind::RequestHeaderModifier(HeaderModifier {
            set: vec![Header {
                name: "X-Set".into(),
                value: "v".into()
            }],
            add: vec![Header {
                name: "foo".into(),
                value: "bar".into()
            }],
            remove: vec!["X-Gone".into()],
        })]
    );
}

#[test]
fn redirect_defaults_and_values() {
    let got = kinds(
        json!([{"type": "RequestRedirect", "requestRedirect": {"hostname": "example.org"}}]),
        None,
    );
    assert_eq!(
        got,
        [Kind::RequestRedirect(RequestRedirect {
            scheme: String::new(),
            hostname: "example.org".into(),
            port: 0,
            path: None,
            status_code: 302,
        })]
    );
    let got = kinds(
        json!([{"type": "RequestRedirect", "requestRedirect": {
            "scheme": "https", "port": 8443, "statusCode": 301,
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]),
        Some("/old"),
    );
    assert_eq!(
        got,
        [Kind::RequestRedirect(RequestRedirect {
            scheme: "https".into(),
            hostname: String::new(),
            port: 8443,
            path: Some(PathModifier {
                kind: Some(path_modifier::Kind::ReplacePrefixMatch(PrefixReplacement {
                    prefix: "/old".into(),
                    replacement: "/new".into(),
                })),
            }),
            status_code: 301,
        })]
    );
}

#[test]
fn rewrite_full_and_prefix() {
    let got = kinds(
        json!([{"type": "URLRewrite", "urlRewrite": {
            "hostname": "one.example.org",
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/one"}}}]),
        None,
    );
    assert_eq!(
        got,
        [Kind::UrlRewrite(UrlRewrite {
            hostname: "one.example.org".into(),
            path: Some(PathModifier {
                kind: Some(path_modifier::Kind::ReplaceFullPath("/one".into())),
            }),
        })]
    );
    // Stripping the prefix: an empty replacement is allowed.
    let got = kinds(
        json!([{"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": ""}}}]),
        Some("/strip"),
    );
    assert!(matches!(
        &got[0],
        Kind::UrlRewrite(UrlRewrite { path: Some(_), .. })
    ));
}

#[test]
fn mirror_fractions_and_references() {
    let got = convert(
        json!([
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 8080}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 8080}, "percent": 20}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 8080},
                "fraction": {"numerator": 25, "denominator": 50}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 8080},
                "fraction": {"numerator": 3}}},
        ]),
        None,
    )
    .unwrap();
    let fractions: Vec<(String, u32, u32)> = got
        .filters
        .iter()
        .map(|f| match f.kind.as_ref().unwrap() {
            Kind::RequestMirror(m) => (m.cluster.clone(), m.numerator, m.denominator),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fractions,
        [
            ("ns/mirror:8080".to_owned(), 1, 1),
            ("ns/mirror:8080".to_owned(), 20, 100),
            ("ns/mirror:8080".to_owned(), 25, 50),
            ("ns/mirror:8080".to_owned(), 3, 100),
        ]
    );
    // One cluster however often it is mirrored to.
    assert_eq!(got.clusters.len(), 1);
    assert!(got.errors.is_empty());

    // A mirror to a missing Service is dropped and reported; the rule keeps serving.
    let got = convert(
        json!([
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "missing", "port": 8080}}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "a", "value": "b"}]}},
        ]),
        None,
    )
    .unwrap();
    assert_eq!(got.filters.len(), 1);
    assert!(matches!(
        got.errors.as_slice(),
        [BackendError::ServiceNotFound { .. }]
    ));
}

#[test]
fn extension_ref_answers_500_and_is_an_invalid_kind() {
    let got = convert(
        json!([{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Foo", "name": "bar"}}]),
        None,
    )
    .unwrap();
    assert!(matches!(
        got.filters[0].kind.as_ref().unwrap(),
        Kind::Unresolved(u) if u.reason.starts_with("InvalidKind: ")
    ));
    assert_eq!(got.errors.len(), 1);
    assert_eq!(got.errors[0].reason(), "InvalidKind");
}

#[test]
fn cors_defaults() {
    let got = kinds(
        json!([{"type": "CORS", "cors": {
            "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
            "allowMethods": ["GET", "OPTIONS"],
            "allowHeaders": ["x-header-1"],
            "allowCredentials": true}}]),
        None,
    );
    assert_eq!(
        got,
        [Kind::Cors(Cors {
            allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["x-header-1".into()],
            expose_headers: vec![],
            allow_credentials: true,
            max_age_seconds: 5,
        })]
    );
}

/// Each row: the filters, the rule's prefix, and a piece of the expected error.
#[test]
fn what_the_api_server_would_refuse_is_refused() {
    let rows = [
        (
            json!([{"type": "RequestRedirect", "requestRedirect": {"statusCode": 305}}]),
            None,
            "statusCode 305 is not supported",
        ),
        (
            json!([{"type": "RequestRedirect", "requestRedirect": {"hostname": "Not_A_Host"}}]),
            None,
            "invalid hostname",
        ),
        (
            json!([{"type": "RequestRedirect", "requestRedirect": {}},
                   {"type": "URLRewrite", "urlRewrite": {}}]),
            None,
            "cannot be combined with URLRewrite",
        ),
        (
            json!([{"type": "CORS", "cors": {}}, {"type": "CORS", "cors": {}}]),
            None,
            "cannot be repeated",
        ),
        (
            json!([{"type": "URLRewrite", "urlRewrite": {
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
            None,
            "needs exactly one PathPrefix match",
        ),
        (
            json!([{"type": "URLRewrite", "urlRewrite": {
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "relative"}}}]),
            None,
            "must start with '/'",
        ),
        (
            json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath"}}}]),
            None,
            "needs replaceFullPath",
        ),
        (
            json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "mirror", "port": 8080}, "percent": 10,
                "fraction": {"numerator": 1}}}]),
            None,
            "only one of percent or fraction",
        ),
        (
            json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "mirror", "port": 8080},
                "fraction": {"numerator": 3, "denominator": 2}}}]),
            None,
            "numerator <= denominator",
        ),
        (
            json!([{"type": "CORS", "cors": {"allowOrigins": ["*", "https://a.com"]}}]),
            None,
            "cannot contain '*' alongside others",
        ),
        (
            json!([{"type": "CORS", "cors": {"allowOrigins": ["ftp://a.com"]}}]),
            None,
            "invalid allowOrigins entry",
        ),
        (
            json!([{"type": "ExternalAuth", "externalAuth": {
                "protocol": "HTTP", "backendRef": {"name": "auth", "port": 80}}}]),
            None,
            "filter ExternalAuth is not supported",
        ),
        (
            json!([{"type": "RequestMirror"}]),
            None,
            "has no requestMirror field",
        ),
    ];
    for (filters, prefix, want) in rows {
        let got = convert(filters.clone(), prefix)
            .err()
            .unwrap_or_else(|| panic!("accepted: {filters}"))
            .to_string();
        assert!(got.contains(want), "{filters}: {got:?} lacks {want:?}");
        assert_eq!(
            convert(filters, prefix).unwrap_err().reason(),
            "UnsupportedValue"
        );
    }
}

#[test]
fn backend_filters() {
    let inputs = inputs();
    let options = Options::default();
    let index = Index::new(&inputs, &options);
    let cx = Context {
        index: &index,
        route_kind: portico_api::names::kind::HTTP_ROUTE,
        namespace: "ns",
        rule: 1,
        prefix: None,
    };
    let filters: Vec<HttpRouteRulesBackendRefsFilters> = serde_json::from_value(json!([
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "Backend", "value": "v1"}]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}},
    ]))
    .unwrap();
    let (got, errors) = convert_backend(cx, &filters).unwrap();
    assert_eq!(got.len(), 2);
    assert!(errors.is_empty());

    let mirror: Vec<HttpRouteRulesBackendRefsFilters> = serde_json::from_value(json!([
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 8080}}},
    ]))
    .unwrap();
    assert_eq!(
        convert_backend(cx, &mirror).unwrap_err().to_string(),
        "rule 1: filter RequestMirror is not supported on a backendRef"
    );
}

#[test]
fn origins() {
    for ok in [
        "https://www.foo.com",
        "http://a.b.c:8080",
        "https://*.bar.com",
        "https://*",
        "http://localhost",
    ] {
        assert!(is_cors_origin(ok), "{ok}");
    }
    for bad in [
        "www.foo.com",
        "https://",
        "https://a..b",
        "https://a.com:",
        "https://a.com:123456",
        "https://a.*.com",
        "https://a.com/path",
    ] {
        assert!(!is_cors_origin(bad), "{bad}");
    }
}
