//! Route matching and regex compilation, through the whole path: an HTTPRoute whose
//! match (path, headers, query parameters, method) and hostnames come from the fuzzer
//! is translated (the translator compiles regexes to reject bad ones), the proxy
//! compiles the config (and must accept whatever the translator let through: a regex
//! the translator accepts and the proxy refuses is a NACK in production), and a fuzzed
//! request is routed. A match on an Exact path, a PathPrefix or a method must agree
//! with the request.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct Input {
    path_kind: u8,
    path: String,
    headers: Vec<(bool, String, String)>,
    query: Vec<(bool, String, String)>,
    method: Option<String>,
    hostnames: Vec<String>,
    request: Request,
}

#[derive(Arbitrary, Debug)]
struct Request {
    method: String,
    host: String,
    path_and_query: String,
    headers: Vec<(String, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let path_kind = ["Exact", "PathPrefix", "RegularExpression"][usize::from(input.path_kind % 3)];
    let string_match = |list: &[(bool, String, String)]| -> Vec<Value> {
        list.iter()
            .take(4)
            .map(|(regex, name, value)| {
                json!({"type": if *regex { "RegularExpression" } else { "Exact" }, "name": name, "value": value})
            })
            .collect()
    };
    let mut m = json!({
        "path": {"type": path_kind, "value": input.path},
        "headers": string_match(&input.headers),
        "queryParams": string_match(&input.query),
    });
    if let Some(method) = &input.method {
        m["method"] = json!(method);
    }
    let hostnames: Vec<&String> = input.hostnames.iter().take(4).collect();
    let docs = [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "portico"},
               "spec": {"controllerName": "portico.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"gatewayClassName": "portico",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "route", "namespace": "default"},
               "spec": {"parentRefs": [{"name": "gw"}], "hostnames": hostnames,
                        "rules": [{"matches": [m], "backendRefs": [{"name": "svc", "port": 80}]}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "svc", "namespace": "default"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "svc-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "svc"}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 9000}],
               "endpoints": [{"addresses": ["127.0.0.1"]}]}),
    ];
    // JSON is YAML: one document per object.
    let text = docs
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    let event = portico_fuzz::load(&[("route.yaml".to_owned(), text)]);
    let output = portico_fuzz::translate_checked(&event.inputs);
    let compiled = portico_proxy::fuzzing::compile(&output.config).expect("checked above");

    let Some(request) = request(&input.request) else {
        return;
    };
    for exchange in compiled.exchange(&request, &http::HeaderMap::new()) {
        if exchange.route.is_none() {
            continue;
        }
        let path = request.uri.path();
        match path_kind {
            "Exact" => assert_eq!(path, input.path, "Exact path matched another path"),
            "PathPrefix" => {
                let prefix = input.path.trim_end_matches('/');
                assert!(
                    path.starts_with(prefix)
                        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'),
                    "PathPrefix {:?} matched {path:?}",
                    input.path
                );
            }
            _ => {}
        }
        if let Some(method) = &input.method {
            assert_eq!(request.method.as_str(), method, "method match");
        }
    }
});

fn request(r: &Request) -> Option<http::request::Parts> {
    let mut builder = http::Request::builder()
        .method(r.method.as_str())
        .uri(r.path_and_query.as_str())
        .header(http::header::HOST, r.host.as_str());
    for (name, value) in r.headers.iter().take(8) {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some(parts)
}
