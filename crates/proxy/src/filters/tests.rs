//! The filter chain as a whole: order, answers that end it, backend restrictions.

#![allow(clippy::unwrap_used)]

use http::Request;

use super::*;

fn add(name: &str, value: &str) -> pb::Filter {
    pb::Filter {
        kind: Some(pb::filter::Kind::RequestHeaderModifier(
            pb::HeaderModifier {
                add: vec![pb::Header {
                    name: name.to_owned(),
                    value: value.to_owned(),
                }],
                ..Default::default()
            },
        )),
    }
}

fn mirror() -> pb::Filter {
    pb::Filter {
        kind: Some(pb::filter::Kind::RequestMirror(pb::RequestMirror {
            cluster: "mirror".to_owned(),
            numerator: 1,
            denominator: 1,
        })),
    }
}

fn redirect() -> pb::Filter {
    pb::Filter {
        kind: Some(pb::filter::Kind::RequestRedirect(pb::RequestRedirect {
            hostname: "example.org".to_owned(),
            status_code: 302,
            ..Default::default()
        })),
    }
}

fn compile(filters: &[pb::Filter]) -> RouteFilters {
    RouteFilters::compile(filters, |name| {
        Ok(Arc::new(
            ClusterState::build(&pb::Cluster {
                name: name.to_owned(),
                ..Default::default()
            })
            .unwrap(),
        ))
    })
    .unwrap()
}

fn parts() -> Parts {
    Request::builder()
        .uri("/p")
        .header("host", "gw")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

const DOWN: Downstream = Downstream {
    scheme: "http",
    port: 80,
};

#[test]
fn a_mirror_copies_the_request_as_it_is_at_its_step() {
    let filters = compile(&[add("x-before", "1"), mirror(), add("x-after", "2")]);
    let mut p = parts();
    let Verdict::Forward(forward) = filters.on_request(&mut p, &DOWN, "r") else {
        panic!("not forwarded");
    };
    assert_eq!(forward.mirrors.len(), 1);
    let copy = &forward.mirrors[0].1;
    assert!(copy.headers.contains_key("x-before"));
    assert!(!copy.headers.contains_key("x-after"));
    // The request itself went through every step.
    assert!(p.headers.contains_key("x-before") && p.headers.contains_key("x-after"));
}

#[test]
fn a_redirect_answers_and_ends_the_chain() {
    let filters = compile(&[redirect(), add("x-after", "2")]);
    let mut p = parts();
    match filters.on_request(&mut p, &DOWN, "r") {
        Verdict::Respond(response) => {
            assert_eq!(response.status(), 302);
            assert_eq!(response.headers()["location"], "http://example.org/p");
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.headers.contains_key("x-after"));
}

#[test]
fn an_unresolved_filter_fails_with_500() {
    let filters = compile(&[pb::Filter {
        kind: Some(pb::filter::Kind::Unresolved(pb::Unresolved {
            reason: "InvalidKind: example.com/Foo".to_owned(),
        })),
    }]);
    match filters.on_request(&mut parts(), &DOWN, "ns/r/rule/0/match/0") {
        Verdict::Fail(error) => assert_eq!(error.status(), 500),
        other => panic!("{other:?}"),
    }
}

#[test]
fn response_modifiers_run_in_order_after_cors() {
    let set = |v: &str| pb::Filter {
        kind: Some(pb::filter::Kind::ResponseHeaderModifier(
            pb::HeaderModifier {
                set: vec![pb::Header {
                    name: "x-set".to_owned(),
                    value: v.to_owned(),
                }],
                ..Default::default()
            },
        )),
    };
    let filters = compile(&[set("first"), set("second")]);
    let mut headers = HeaderMap::new();
    filters.on_response(&mut headers, None);
    assert_eq!(headers["x-set"], "second");
}

#[test]
fn backends_refuse_rule_only_filters() {
    for f in [redirect(), mirror()] {
        assert!(matches!(
            RouteFilters::compile_backend(&[f]),
            Err(ConfigError::BackendFilter(_))
        ));
    }
    assert!(RouteFilters::compile_backend(&[add("backend", "v1")]).is_ok());
}

#[test]
fn unknown_filter_kinds_reject_the_config() {
    assert!(matches!(
        RouteFilters::compile(&[pb::Filter { kind: None }], |_| unreachable!()),
        Err(ConfigError::UnknownFilter)
    ));
}
