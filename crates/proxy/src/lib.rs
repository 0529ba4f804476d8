//! Portico's L7 data plane: serves a [`Config`](portico_api::config::v1::Config) on
//! HTTP listeners, routes requests by host, path, headers, query and method, applies
//! the route's filters, and forwards to a weighted choice of backends.
//!
//! # Request lifecycle
//!
//! ```text
//!  client ──TCP──> listener (accept loop, one per Config listener)      listener.rs
//!                    │ hyper auto: HTTP/1.1 or h2c by the preface,
//!                    │ 4xx for malformed requests before we see them
//!                    v
//!  ① load the routing table (once per request)                         service.rs
//!  ② route: virtual host (most specific hostname) -> host groups
//!     in order -> first matching route                    ── none ──> 404
//!  ③ backend: weighted share -> cluster -> ready endpoint ── invalid/none ──> 500
//!                                                          ── no endpoint ──> 503
//!  ④ request headers: hop-by-hop out, x-forwarded-*, x-request-id,
//!     then the route's RequestHeaderModifier filters       filters/, headers.rs
//!  ⑤ upstream: pooled client, HTTP/1.1 or h2c per cluster  upstream.rs
//!                                                          ── connect failed ──> 503
//!                                                          ── exchange failed ──> 502
//!  ⑥ response headers: hop-by-hop out, ResponseHeaderModifier filters
//!  client <── response (body streamed, never buffered)
//! ```
//!
//! Why this order:
//! - ① first and once: a config swap (see [`ProxyHandle::update`]) replaces the table
//!   atomically; a request that loaded the old one finishes on it, so no request is
//!   dropped or routed by a mix of two configs.
//! - ② before any rewrite: matches are written against what the client sent.
//! - ③ before the header work: error replies need none of it.
//! - ④ the proxy's headers before the route's filters: the route author has the last
//!   word on what the backend sees.
//! - ⑥ filters after hop-by-hop removal, for the same reason on the way back.
//!
//! Errors on the request path are [`RequestError`]s: they say which side failed
//! ([`ErrorSide`]) and whether a retry would be safe, and become local replies.

#![forbid(unsafe_code)]

mod error;
mod filters;
mod handle;
mod headers;
mod listener;
mod options;
mod service;
mod table;
mod upstream;

pub use error::{ConfigError, ErrorSide, ListenerError, ProxyError, RequestError};
pub use handle::{ProxyHandle, UpdateSummary, start};
pub use options::ProxyOptions;
