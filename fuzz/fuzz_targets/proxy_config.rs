//! Config decoding in the proxy: the input is the protobuf a proxy gets on the config
//! stream (seeds: configs translated from e2e/cases and examples/, see `make
//! fuzz-seeds`), decoded and compiled as `ProxyHandle::update` does. Never panics; a
//! config that compiles serves a request for each of its virtual hosts without a line
//! break in any header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_api::config::v1 as pb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = pb::Config::decode(data) else {
        return;
    };
    let Ok(compiled) = portico_proxy::fuzzing::compile(&config) else {
        return;
    };
    let hosts = config
        .listeners
        .iter()
        .flat_map(|l| &l.virtual_hosts)
        .flat_map(|v| std::iter::once(&v.hostname).chain(v.host_routes.iter().map(|g| &g.hostname)))
        .take(16);
    for host in hosts {
        // A wildcard "*.example.com" is asked for as "a.example.com".
        let host = host.replacen('*', "a", 1);
        let Ok(request) = http::Request::get("/")
            .header(http::header::HOST, host)
            .body(())
        else {
            continue;
        };
        let (request, ()) = request.into_parts();
        for exchange in compiled.exchange(&request, &http::HeaderMap::new()) {
            if let Some(headers) = &exchange.upstream_request {
                portico_fuzz::assert_no_line_breaks(headers, "upstream request");
            }
            if let Some(headers) = &exchange.downstream_response {
                portico_fuzz::assert_no_line_breaks(headers, "downstream response");
            }
        }
    }
});
