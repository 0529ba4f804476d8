//! Tunables of the data plane that do not come from the routing config.

use std::time::Duration;

/// Process-level settings of the proxy. The routing config (`Config`) says *what* to
/// serve; these say *how*: timeouts, pool sizes, and how listeners bind.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// How long to wait for a TCP connection to an upstream endpoint. A connect that
    /// does not finish in time is answered with 503, like a refused one.
    pub connect_timeout: Duration,
    /// How long a downstream HTTP/1 client may take to send the request head. Protects
    /// against slow-loris clients holding connections open.
    pub request_header_timeout: Duration,
    /// Idle keep-alive connections kept per upstream endpoint. Below the requests in
    /// flight to one endpoint (an HTTP/2 client multiplexes many on one connection, each
    /// an HTTP/1.1 exchange upstream) the pool closes connections as they come back and
    /// opens new ones for the next requests: 256, as the bench's nginx keeps.
    pub max_idle_upstream_per_host: usize,
    /// How long an idle upstream connection stays in the pool.
    pub upstream_idle_timeout: Duration,
    /// How long in-flight requests may run after a listener stops accepting (on
    /// `shutdown` or when a config removes the listener) before their connections are
    /// closed.
    pub drain_timeout: Duration,
    /// Bind every listener on an ephemeral port (port 0) whatever port the config says;
    /// `ProxyHandle::bound_addrs` tells which port each got. For tests and local runs
    /// where the configured ports (80, 443) are taken or privileged. A listener whose
    /// configured port is 0 binds an ephemeral port in any case.
    pub ephemeral_ports: bool,
    /// Reject a config (`ProxyHandle::update` fails, the running config stays) when one
    /// of its listeners cannot bind, instead of serving the others and reporting it. The
    /// config stream client sets this so that such a config becomes a NACK; standalone
    /// mode leaves it off and reports the listener.
    pub reject_unbindable: bool,
    /// TCP and TLS stream routes: a forwarded connection on which no byte moved in
    /// either direction for this long is closed (both sides), so that dead peers do not
    /// hold sockets forever.
    pub stream_idle_timeout: Duration,
    /// UDP routes: a client flow (client address and port -> one backend socket) that
    /// saw no datagram in either direction for this long is forgotten and its socket
    /// closed; the client's next datagram opens a new flow.
    pub udp_idle_timeout: Duration,
    /// UDP routes: flows kept per listener. Datagrams of new clients are dropped while
    /// the table is full (established flows keep working).
    pub max_udp_flows: usize,
    /// The largest request head (request line and headers) a client may send, in bytes.
    /// HTTP/1: hyper answers 431 and closes when its read buffer (this, at least 8 KiB)
    /// fills before the head ends; any protocol: a head over this is answered 431.
    pub max_header_bytes: usize,
    /// The longest request target (path and query) a client may send, in bytes: 414
    /// beyond it (a target that alone overflows `max_header_bytes` gets 431 first).
    pub max_uri_bytes: usize,
    /// The largest request body forwarded, in bytes: 413 when the Content-Length says
    /// more, and a streamed body that grows past it is cut (413 if no response was
    /// sent yet). `None`: no limit (bodies are streamed, never buffered whole).
    pub max_request_body_bytes: Option<u64>,
    /// Client connections open at once over all HTTP listeners; one more is accepted
    /// and closed at once, so that the kernel's backlog does not fill.
    pub max_connections: usize,
    /// How many proxies in front of this one are trusted to have appended the client
    /// address to `X-Forwarded-For`. 0: nothing the client sends about forwarding is
    /// trusted (`X-Forwarded-For` is the peer address, `X-Forwarded-Proto` our scheme,
    /// `Forwarded` removed). See docs/security.md.
    pub xff_num_trusted_hops: u32,
    /// HTTP/2: streams a client may have open at once on one connection.
    pub h2_max_concurrent_streams: u32,
    /// An OpenTelemetry collector (`http://collector:4318`): the spans of sampled
    /// requests are exported to its `/v1/traces` (OTLP/HTTP, JSON). See otlp.rs.
    pub otlp_endpoint: Option<http::Uri>,
    /// The share (0 to 1) of the traces the proxy starts itself (requests without a
    /// valid `traceparent`) that it samples: their `traceparent` carries the sampled
    /// flag and, with `otlp_endpoint`, their spans are exported. A client's trace keeps
    /// the client's decision. Without `otlp_endpoint` the proxy samples none (it would
    /// claim a sampled trace it does not record).
    pub trace_sample_ratio: f64,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_header_timeout: Duration::from_secs(30),
            max_idle_upstream_per_host: 256,
            upstream_idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(10),
            ephemeral_ports: false,
            reject_unbindable: false,
            stream_idle_timeout: Duration::from_secs(3600),
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_flows: 16_384,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 16 * 1024,
            max_request_body_bytes: None,
            max_connections: 50_000,
            xff_num_trusted_hops: 0,
            h2_max_concurrent_streams: 100,
            otlp_endpoint: None,
            trace_sample_ratio: 0.0,
        }
    }
}

/// The limit flags (docs/security.md), each with an environment variable: one struct,
/// flattened into `portico-proxy`'s flags and `portico standalone`'s, so that both take
/// the same names with the same defaults (those of [`ProxyOptions`]).
#[derive(Clone, Debug, clap::Args)]
pub struct LimitArgs {
    /// The largest request head (request line and headers) a client may send: 431
    /// beyond it.
    #[arg(long, env = "PORTICO_MAX_HEADER_BYTES", default_value_t = ProxyOptions::default().max_header_bytes)]
    pub max_header_bytes: usize,

    /// The longest request target (path and query): 414 beyond it.
    #[arg(long, env = "PORTICO_MAX_URI_BYTES", default_value_t = ProxyOptions::default().max_uri_bytes)]
    pub max_uri_bytes: usize,

    /// The largest request body forwarded: 413 beyond it. No limit when unset.
    #[arg(long, env = "PORTICO_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<u64>,

    /// Client connections open at once over all listeners; more are closed at accept.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS", default_value_t = ProxyOptions::default().max_connections)]
    pub max_connections: usize,

    /// How long a client may take to send a request head (HTTP/1; also how long a
    /// keep-alive connection may stay idle).
    #[arg(long, env = "PORTICO_REQUEST_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_header_timeout: Duration,

    /// Proxies in front of this one trusted to append the client address to
    /// X-Forwarded-For; 0 trusts no forwarding header a client sends.
    #[arg(long, env = "PORTICO_XFF_NUM_TRUSTED_HOPS", default_value_t = ProxyOptions::default().xff_num_trusted_hops)]
    pub xff_num_trusted_hops: u32,
}

impl LimitArgs {
    /// `options` with these limits.
    pub fn apply(&self, options: ProxyOptions) -> ProxyOptions {
        ProxyOptions {
            max_header_bytes: self.max_header_bytes,
            max_uri_bytes: self.max_uri_bytes,
            max_request_body_bytes: self.max_request_body_bytes,
            max_connections: self.max_connections,
            request_header_timeout: self.request_header_timeout,
            xff_num_trusted_hops: self.xff_num_trusted_hops,
            ..options
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
    }

    /// The flags' defaults are `ProxyOptions`' (the "30s" literal included).
    #[test]
    fn defaults_are_the_options_defaults() {
        let flags = Flags::parse_from(["x"]);
        let applied = flags.limits.apply(ProxyOptions::default());
        let defaults = ProxyOptions::default();
        assert_eq!(applied.max_header_bytes, defaults.max_header_bytes);
        assert_eq!(applied.max_uri_bytes, defaults.max_uri_bytes);
        assert_eq!(
            applied.max_request_body_bytes,
            defaults.max_request_body_bytes
        );
        assert_eq!(applied.max_connections, defaults.max_connections);
        assert_eq!(
            applied.request_header_timeout,
            defaults.request_header_timeout
        );
        assert_eq!(applied.xff_num_trusted_hops, defaults.xff_num_trusted_hops);
    }
}
