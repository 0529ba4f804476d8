//! Header filters on hostile names and values: a route whose RequestHeaderModifier,
//! ResponseHeaderModifier, URLRewrite, RequestRedirect, CORS and backendRef filters come
//! from the fuzzer, compiled by the proxy (straight from the config model, so that
//! values the translator would refuse reach the proxy's own checks too), then a
//! fuzzed request and backend response go through it. No header the backend or the
//! client would get may carry CR, LF or NUL, and a redirect always has a Location.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portico_api::config::v1 as pb;

#[derive(Arbitrary, Debug)]
struct Modifier {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

#[derive(Arbitrary, Debug)]
enum PathChange {
    Full(String),
    Prefix(String, String),
}

#[derive(Arbitrary, Debug)]
enum Step {
    RequestHeaders(Modifier),
    ResponseHeaders(Modifier),
    Rewrite(String, Option<PathChange>),
    Redirect(String, String, u16, Option<PathChange>, u16),
    Cors(
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        bool,
        u32,
    ),
}

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<Step>,
    backend: Vec<Step>,
    method: String,
    uri: String,
    request_headers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<(String, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let config = config(&input);
    let Ok(compiled) = portico_proxy::fuzzing::compile(&config) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(input.method.as_str())
        .uri(input.uri.as_str());
    for (name, value) in input.request_headers.iter().take(16) {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (request, ()) = request.into_parts();
    let mut response = http::HeaderMap::new();
    for (name, value) in input.response_headers.iter().take(16) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            response.append(n, v);
        }
    }
    for exchange in compiled.exchange(&request, &response) {
        if let Some(headers) = &exchange.upstream_request {
            portico_fuzz::assert_no_line_breaks(headers, "upstream request");
        }
        if let Some(headers) = &exchange.downstream_response {
            portico_fuzz::assert_no_line_breaks(headers, "downstream response");
            if exchange
                .filter_status
                .is_some_and(|s| (300..400).contains(&s))
            {
                assert!(
                    headers.contains_key(http::header::LOCATION),
                    "redirect {:?} without a Location",
                    exchange.filter_status
                );
            }
        }
    }
});

fn config(input: &Input) -> pb::Config {
    let route = pb::Route {
        name: "default/route/rule/0/match/0".to_owned(),
        route: "default/route".to_owned(),
        filters: input.steps.iter().take(8).map(filter).collect(),
        backends: vec![pb::WeightedBackend {
            weight: 1,
            target: Some(pb::weighted_backend::Target::Cluster("c".to_owned())),
            filters: input.backend.iter().take(4).map(filter).collect(),
        }],
        ..Default::default()
    };
    pb::Config {
        version: "fuzz".to_owned(),
        listeners: vec![pb::Listener {
            name: "l".to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 8080,
            protocol: pb::Protocol::Http.into(),
            virtual_hosts: vec![pb::VirtualHost {
                name: "default/gw/http".to_owned(),
                host_routes: vec![pb::HostRoutes {
                    hostname: String::new(),
                    routes: vec![route],
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        clusters: vec![pb::Cluster {
            name: "c".to_owned(),
            endpoints: vec![pb::Endpoint {
                address: "127.0.0.1".to_owned(),
                port: 9000,
                ready: true,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn filter(step: &Step) -> pb::Filter {
    use pb::filter::Kind;
    let kind = match step {
        Step::RequestHeaders(m) => Kind::RequestHeaderModifier(modifier(m)),
        Step::ResponseHeaders(m) => Kind::ResponseHeaderModifier(modifier(m)),
        Step::Rewrite(hostname, path) => Kind::UrlRewrite(pb::UrlRewrite {
            hostname: hostname.clone(),
            path: path.as_ref().map(path_modifier),
        }),
        Step::Redirect(scheme, hostname, port, path, status) => {
            Kind::RequestRedirect(pb::RequestRedirect {
                scheme: scheme.clone(),
                hostname: hostname.clone(),
                port: u32::from(*port),
                path: path.as_ref().map(path_modifier),
                status_code: u32::from(*status),
            })
        }
        Step::Cors(origins, methods, headers, expose, credentials, max_age) => {
            Kind::Cors(pb::Cors {
                allow_origins: origins.clone(),
                allow_methods: methods.clone(),
                allow_headers: headers.clone(),
                expose_headers: expose.clone(),
                allow_credentials: *credentials,
                max_age_seconds: *max_age,
            })
        }
    };
    pb::Filter { kind: Some(kind) }
}

fn modifier(m: &Modifier) -> pb::HeaderModifier {
    let header = |(name, value): &(String, String)| pb::Header {
        name: name.clone(),
        value: value.clone(),
    };
    pb::HeaderModifier {
        set: m.set.iter().map(header).collect(),
        add: m.add.iter().map(header).collect(),
        remove: m.remove.clone(),
    }
}

fn path_modifier(p: &PathChange) -> pb::PathModifier {
    use pb::path_modifier::Kind;
    pb::PathModifier {
        kind: Some(match p {
            PathChange::Full(path) => Kind::ReplaceFullPath(path.clone()),
            PathChange::Prefix(prefix, replacement) => {
                Kind::ReplacePrefixMatch(pb::PrefixReplacement {
                    prefix: prefix.clone(),
                    replacement: replacement.clone(),
                })
            }
        }),
    }
}
