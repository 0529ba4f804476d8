//! Portico's L7 data plane: serves a [`Config`](portico_api::config::v1::Config) on
//! HTTP listeners, routes requests by host, path, headers, query and method, applies
//! the route's filters, and forwards to a weighted choice of backends.
//!
//! # Request lifecycle
//!
//! ```text
//!  client ──TCP──> listener (accept loop, one per Config listener)      listener.rs
//!                    │ HTTPS: TLS handshake first, certificate by SNI,   tls.rs
//!                    │ ALPN h2 or http/1.1
//!                    │ hyper auto: HTTP/1.1 or h2c by the preface, upgrades allowed,
//!                    │ 4xx for malformed requests before we see them
//!                    v
//!  ① load the routing table (once per request)                         service.rs
//!  ② route: virtual host (most specific hostname) -> host groups
//!     in order -> first matching route                    ── none ──> 404
//!  ③ the route's request timeout starts                   ── exceeded ──> 504
//!  ④ upgrade (WebSocket) taken aside                                   upgrade.rs
//!  ⑤ request headers: hop-by-hop out, x-forwarded-*, x-request-id      headers.rs
//!  ⑥ route filters in order: header modifier, URL rewrite,             filters/
//!     mirror (copy taken), CORS                  ── redirect, preflight ──> 3xx, 200
//!                                                ── unresolved filter ──> 500
//!  ⑦ backend: weighted share -> its own filters  ── invalid/none ──> 500
//!  ⑧ body: buffered for retries, tapped for mirrors; mirrors sent      body.rs
//!  ⑨ attempts: endpoint, backendRequest timeout, retries  exchange.rs, upstream.rs
//!                                                ── no endpoint ──> 503
//!                                                ── connect failed ──> 503
//!                                                ── exchange failed ──> 502
//!                                                ── attempt timed out ──> 504
//!  ⑩ response headers: hop-by-hop out (101: upgrade headers back, tunnel starts),
//!     backend then route response filters (CORS headers, ResponseHeaderModifier)
//!  client <── response (body streamed, never buffered)
//!  ⑪ body done (or dropped): metrics and the access-log line          access_log.rs
//! ```
//!
//! Observability: ⑤ also continues or starts the W3C trace (trace_context.rs); the
//! metrics (metrics.rs: requests, durations, connect errors, open connections, config
//! version and outcomes) are served by [`ProxyHandle::metrics_text`], and the access
//! log is one JSON line per request on the `portico::access` target.
//!
//! Why this order:
//! - ① first and once: a config swap (see [`ProxyHandle::update`]) replaces the table
//!   atomically; a request that loaded the old one finishes on it, so no request is
//!   dropped or routed by a mix of two configs.
//! - ② before any rewrite: matches are written against what the client sent.
//! - ⑤ before the route's filters: the route author has the last word on what the
//!   backend sees.
//! - ⑥ before ⑦: a redirect or a CORS preflight needs no backend (a redirect rule has
//!   none), and filters run in the order the route lists them.
//! - ⑧ after ⑦: only a request that goes to a backend is mirrored, and mirrors run in
//!   tasks of their own so that they never hold up the request they copy.
//! - ⑩ filters after hop-by-hop removal, for the same reason as ⑤ on the way back.
//!
//! Errors on the request path are [`RequestError`]s: they say which side failed
//! ([`ErrorSide`]) and whether a retry would be safe, and become local replies. On a
//! GRPCRoute entry, and for any gRPC request (`content-type: application/grpc*`), the
//! local reply is a gRPC status instead (UNIMPLEMENTED for no route, UNAVAILABLE,
//! DEADLINE_EXCEEDED, INTERNAL; see `grpc.rs`), and gRPC always goes to backends over
//! HTTP/2.

#![forbid(unsafe_code)]

mod access_log;
mod bind_check;
mod body;
pub mod client;
mod error;
mod exchange;
mod filters;
mod framing;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod grpc;
mod handle;
mod headers;
mod l4;
mod limits;
mod listener;
mod metrics;
mod options;
mod otlp;
mod path;
mod service;
mod table;
mod tls;
mod trace_context;
mod upgrade;
mod upstream;
mod upstream_http1;
mod upstream_tls;

pub use error::{ConfigError, ErrorSide, ListenerError, ProxyError, RequestError};
pub use handle::{ProxyHandle, UpdateSummary, start};
pub use options::{LimitArgs, ProxyOptions};
