//! Entry points for the fuzz targets (`fuzz/`, `make fuzz`), behind the `fuzzing`
//! feature; nothing else builds it. They run the pure parts of the proxy without
//! sockets: what [`ProxyHandle::update`](crate::ProxyHandle::update) does with a config
//! before it binds anything, and what a request goes through in `service::serve` up to
//! the backend exchange (routing, hop-by-hop headers, the route's and the backendRef's
//! filters, the response filters).

use http::{HeaderMap, request::Parts};
use portico_api::config::v1 as pb;

use crate::{
    error::ProxyError,
    filters::Verdict,
    headers,
    l4::{self, StreamTable},
    table::{RoutingTable, Target, host_of},
    tls,
};

/// A config compiled as `ProxyHandle::update` compiles it.
#[derive(Debug)]
pub struct Compiled {
    table: RoutingTable,
}

/// Compiles `config` as `ProxyHandle::update` does before it touches a socket: the HTTP
/// routing table, the stream routes and the listeners' certificates. `Err` is what the
/// proxy NACKs.
pub fn compile(config: &pb::Config) -> Result<Compiled, ProxyError> {
    let table = RoutingTable::build(config, &RoutingTable::empty())?;
    let provider = tls::provider();
    StreamTable::build(config, &StreamTable::default(), &provider)?;
    // Certificates that do not load are reported per listener, never as an error.
    tls::tables(config, &provider);
    Ok(Compiled { table })
}

/// What one request became on one HTTP listener.
#[derive(Debug)]
pub struct Exchange {
    pub listener: String,
    /// The route entry that answered, `None` for a 404.
    pub route: Option<String>,
    /// The request headers as the backend would get them (after the filters), or `None`
    /// when no backend would (no route, a filter answered, an invalid backend).
    pub upstream_request: Option<HeaderMap>,
    /// The response headers as the client would get them: a filter's own answer
    /// (redirect, CORS preflight), or `response` through the response filters.
    pub downstream_response: Option<HeaderMap>,
    /// The status of a filter's own answer (a redirect, a CORS preflight).
    pub filter_status: Option<u16>,
}

impl Compiled {
    /// Serves `request` on every HTTP listener of the config, with `response` as the
    /// backend's answer.
    pub fn exchange(&self, request: &Parts, response: &HeaderMap) -> Vec<Exchange> {
        let host = host_of(&request.uri, &request.headers);
        let mut out = Vec::new();
        for (name, listener) in &self.table.listeners {
            let mut exchange = Exchange {
                listener: name.clone(),
                route: None,
                upstream_request: None,
                downstream_response: None,
                filter_status: None,
            };
            let Some(route) = listener.route(&host, request) else {
                out.push(exchange);
                continue;
            };
            exchange.route = Some(route.name.clone());
            let mut parts = clone_parts(request);
            headers::strip_hop_by_hop(&mut parts.headers, true);
            let forward =
                match route
                    .filters
                    .on_request(&mut parts, &listener.downstream, &route.name)
                {
                    Verdict::Forward(forward) => forward,
                    Verdict::Respond(mut answer) => {
                        route.filters.on_response(answer.headers_mut(), None);
                        exchange.filter_status = Some(answer.status().as_u16());
                        exchange.downstream_response = Some(answer.headers().clone());
                        out.push(exchange);
                        continue;
                    }
                    Verdict::Fail(_) => {
                        out.push(exchange);
                        continue;
                    }
                };
            let Some(Target::Cluster(backend)) = route.backends.pick() else {
                out.push(exchange);
                continue;
            };
            let backend_forward =
                match backend
                    .filters
                    .on_request(&mut parts, &listener.downstream, &route.name)
                {
                    Verdict::Forward(forward) => forward,
                    Verdict::Respond(answer) => {
                        exchange.filter_status = Some(answer.status().as_u16());
                        exchange.downstream_response = Some(answer.headers().clone());
                        out.push(exchange);
                        continue;
                    }
                    Verdict::Fail(_) => {
                        out.push(exchange);
                        continue;
                    }
                };
            exchange.upstream_request = Some(parts.headers);
            let mut answer = response.clone();
            headers::strip_hop_by_hop(&mut answer, false);
            backend
                .filters
                .on_response(&mut answer, backend_forward.cors.as_ref());
            route
                .filters
                .on_response(&mut answer, forward.cors.as_ref());
            exchange.downstream_response = Some(answer);
            out.push(exchange);
        }
        out
    }
}

/// Parses the first bytes of a TLS connection as a TLS passthrough listener does
/// before it picks a route: `Ok(None)` wants more bytes, `Ok(Some(server_name))` is a
/// whole ClientHello (`server_name` lowercased, `None` without SNI).
pub fn client_hello(data: &[u8]) -> Result<Option<Option<String>>, String> {
    l4::sni::parse(data)
        .map(|hello| hello.map(|h| h.server_name))
        .map_err(|e| e.to_string())
}

/// `Parts` is not `Clone` (its extensions are not); requests here have none.
fn clone_parts(p: &Parts) -> Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = p.method.clone();
    parts.uri = p.uri.clone();
    parts.version = p.version;
    parts.headers = p.headers.clone();
    parts
}
