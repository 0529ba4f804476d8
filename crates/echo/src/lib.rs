//! portico-echo: a small HTTP backend that answers every request with JSON describing
//! the request it saw. Examples, tests, benchmarks and the conformance runner put it
//! behind the proxy and read the answer to learn which backend answered and what the
//! proxy forwarded.
//!
//! One answer serves two readers at once:
//!
//! ```text
//! {
//!   // the Gateway API conformance echo server (echo-basic)
//!   "path": "/a?b=c",                 request URI as received, query included
//!   "host": "foo.example.com",        Host header (HTTP/1) or :authority (HTTP/2)
//!   "method": "GET",
//!   "proto": "HTTP/1.1",              or "HTTP/2.0"
//!   "headers": {"X-Forwarded-For": ["10.0.0.1"]},   canonical name -> values, no Host
//!   "namespace": "echo", "ingress": "", "service": "echo-1-echo-server",
//!   "pod": "echo-1-echo-server-fd88497d-w6sgn",
//!   "sni": "",                        always empty: this server speaks no TLS
//!
//!   // the echo-server image of the reference scenario
//!   "environment": {"HOSTNAME": "<pod>", "POD_NAME": "<pod>",
//!                   "NAMESPACE": "echo", "SERVICE_NAME": "echo-1-echo-server"},
//!   "request": {"path": "/a", "method": "GET", "query": {"b": "c"},
//!               "headers": {"host": "foo.example.com", "foo": "bar"},  lowercase -> joined value
//!               "bodyLength": 0, "body": "..."},   body only when small UTF-8
//!   "http": {"method": "GET", "baseUrl": "", "originalUrl": "/a?b=c", "protocol": "http"},
//!
//!   // ours
//!   "remote_addr": "127.0.0.1:50312"  the peer of the TCP connection (the proxy)
//! }
//! ```
//!
//! The two formats disagree on one key: echo-server's `host` is an object
//! (`host.hostname`), echo-basic's is a string. `host` stays a string because the
//! conformance runner compares it; the pod name is in `environment.HOSTNAME` and `pod`.
//!
//! A request header `X-Echo-Set-Header: Name:value,Other:value` makes the answer carry
//! those response headers, as echo-basic does; conformance cases use it to test response
//! header filters.
//!
//! Every request is also published on a request log
//! ([`EchoServer::subscribe_requests`], or JSON lines on stdout with
//! `portico-echo --log-requests`): the only way to know that a backend received a
//! request whose answer went to nobody, such as a mirrored one.
//!
//! Test hooks as echo-basic has them (`/status/NNN`, `?delay=`, `?responseCode=` with
//! `succeedAfter=`) let timeout and retry tests make the backend slow or failing; see
//! the `hooks` module.
//!
//! The server speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port,
//! and serves the conformance gRPC echo service there too (requests with
//! `content-type: application/grpc`; see [`grpc`]).
//! [`serve`] binds and returns an [`EchoServer`] handle with the bound address, so tests
//! listen on port 0.
//!
//! echo-basic's L4 modes are here too, for TCPRoute, TLSRoute and UDPRoute backends:
//! the TCP line protocol, plain or over TLS ([`serve_line`], `--tcp-echo`), and the UDP
//! echo ([`serve_udp`], `--udp-echo`).
//!
//! Like echo-basic given `TLS_SERVER_CERT` and `TLS_SERVER_PRIVKEY`, the same echo
//! answers over HTTPS too ([`serve_https`], `--https-cert`): the backend of the
//! BackendTLSPolicy cases.

mod config;
mod error;
pub mod grpc;
mod headers;
mod hooks;
mod line;
mod report;
mod requests;
mod server;
mod service;
mod tls;
mod udp;

pub use config::{DEFAULT_LISTEN, EchoConfig, Identity};
pub use error::EchoError;
pub use line::{LineConfig, LineReport, LineServer, LineTls, TlsReport, WELCOME, serve_line};
pub use report::{EchoReport, SET_HEADER};
pub use requests::SeenRequest;
pub use server::{EchoServer, serve};
pub use tls::serve_https;
pub use udp::{UdpReport, UdpServer, serve_udp};
