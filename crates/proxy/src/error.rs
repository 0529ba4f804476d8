//! Errors of the proxy.
//!
//! Three families, by who has to act on them:
//!
//! - [`ProxyError`]: a config was rejected. The caller (the config client) turns it into
//!   a NACK; the running config stays.
//! - [`ListenerError`]: a listener could not bind. Not fatal: the other listeners serve,
//!   and the next config update tries to bind it again.
//! - [`RequestError`]: one request could not be forwarded. It becomes a local reply
//!   (400, 404, 500, 502, 503, 504) and says, as pingora's errors do, which side failed
//!   and whether a retry would be safe, so that the retry layer and metrics can use it.

use std::{error::Error as StdError, fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;

/// A config the proxy refuses to serve. `location` names the offending object
/// (listener, virtual host, route or cluster name) so that the NACK can point at it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error("invalid config at {location}: {error}")]
    InvalidConfig {
        location: String,
        error: ConfigError,
    },
    /// A listener of the config cannot bind, with `ProxyOptions::reject_unbindable`.
    #[error("{0}")]
    Unbindable(ListenerError),
}

impl ProxyError {
    /// The config listener ("<address>:<port>") the error is about, when it is about
    /// one: the operator maps it to the Gateways sharing that socket.
    pub fn listener(&self) -> Option<&str> {
        match self {
            Self::Unbindable(error) => Some(&error.listener),
            Self::InvalidConfig { .. } => None,
        }
    }

    pub(crate) fn invalid(location: impl Into<String>, error: ConfigError) -> Self {
        Self::InvalidConfig {
            location: location.into(),
            error,
        }
    }
}

/// What is wrong with a rejected config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("duplicate listener name")]
    DuplicateListener,
    #[error("cluster TLS: {0}")]
    UpstreamTls(String),
    #[error("duplicate cluster name")]
    DuplicateCluster,
    #[error("invalid IP address {address:?}: {error}")]
    Address {
        address: String,
        error: std::net::AddrParseError,
    },
    #[error("port {0} out of range")]
    Port(u32),
    #[error("invalid hostname {0:?}")]
    Hostname(String),
    #[error("invalid regex {pattern:?}: {error}")]
    Regex {
        pattern: String,
        error: Box<regex::Error>,
    },
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0:?}")]
    HeaderValue(String),
    #[error("invalid method {0:?}")]
    Method(String),
    #[error("{0} match kind is unspecified")]
    UnspecifiedKind(&'static str),
    #[error("filter of unknown kind")]
    UnknownFilter,
    #[error("filter {0} cannot run on a backend")]
    BackendFilter(&'static str),
    #[error("invalid {what}: {value:?}")]
    InvalidFilterValue { what: &'static str, value: String },
    #[error("backend refers to unknown cluster {0:?}")]
    UnknownCluster(String),
}

/// A listener whose socket could not be bound (port in use, address not local...).
#[derive(Clone, Debug, thiserror::Error)]
#[error("listener {listener}: cannot bind {addr}: {error}")]
pub struct ListenerError {
    /// The listener's name in the config.
    pub listener: String,
    /// The address it tried to bind.
    pub addr: SocketAddr,
    /// The bind error (shared so that the error can be reported in several places).
    pub error: Arc<io::Error>,
}

/// Which side of the proxy a request failed on (pingora's `ErrorSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSide {
    /// The client's request cannot be served as sent (no route, unusable URI).
    Downstream,
    /// The backend: no ready endpoint, connect failed, the exchange broke.
    Upstream,
    /// The proxy's own config: an invalid backend reference, a vanished listener.
    Internal,
}

/// Why one request got a local reply instead of an upstream response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("host {host:?} is served by another listener than the TLS server name {sni:?}")]
    Misdirected { host: String, sni: String },
    #[error("listener {0} is not in the running config")]
    ListenerGone(String),
    #[error("route {route} has no backend with a weight")]
    NoBackend { route: String },
    #[error("route {route}: invalid backend: {reason}")]
    InvalidBackend { route: String, reason: String },
    #[error("cluster {cluster} has no ready endpoint")]
    NoReadyEndpoint { cluster: String },
    #[error("connect to {endpoint} ({cluster}) failed: {}", Chain(&**.error))]
    Connect {
        cluster: String,
        endpoint: SocketAddr,
        error: BoxError,
    },
    #[error("request to {endpoint} ({cluster}) failed: {}", Chain(&**.error))]
    Upstream {
        cluster: String,
        endpoint: SocketAddr,
        error: BoxError,
    },
    /// The TLS handshake with a cluster endpoint failed (BackendTLSPolicy): an untrusted
    /// chain or a name the certificate does not carry. Never retried in cleartext.
    #[error("TLS to {endpoint} ({cluster}) failed: {reason}")]
    UpstreamTls {
        cluster: String,
        endpoint: SocketAddr,
        reason: String,
    },
    #[error("no response from {endpoint} ({cluster}) within {after:?}")]
    BackendTimeout {
        cluster: String,
        endpoint: SocketAddr,
        after: Duration,
    },
    #[error("no response within the route's request timeout of {after:?}")]
    RequestTimeout { after: Duration },
    #[error("route {route}: a filter could not be resolved: {reason}")]
    UnresolvedFilter { route: String, reason: String },
    #[error("reading the request body failed: {}", Chain(.0))]
    ClientBody(hyper::Error),
    #[error("cannot build the upstream request: {0}")]
    BadRequest(String),
    /// The request target is longer than `ProxyOptions::max_uri_bytes`.
    #[error("request target of {len} bytes, over the limit of {limit}")]
    UriTooLong { len: usize, limit: usize },
    /// The request head is larger than `ProxyOptions::max_header_bytes`.
    #[error("request head of {len} bytes, over the limit of {limit}")]
    HeadersTooLarge { len: usize, limit: usize },
    /// The body is (or grew) larger than `ProxyOptions::max_request_body_bytes`.
    #[error("request body over the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
}

/// The errors of the HTTP clients and bodies, boxed: the HTTP/1.1 pool and the h2c
/// connections fail with different types.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

impl RequestError {
    /// Which side failed.
    pub fn side(&self) -> ErrorSide {
        match self {
            Self::NoRoute { .. }
            | Self::Misdirected { .. }
            | Self::BadRequest(_)
            | Self::ClientBody(_)
            | Self::UriTooLong { .. }
            | Self::HeadersTooLarge { .. }
            | Self::BodyTooLarge { .. } => ErrorSide::Downstream,
            Self::NoReadyEndpoint { .. }
            | Self::Connect { .. }
            | Self::Upstream { .. }
            | Self::UpstreamTls { .. }
            | Self::BackendTimeout { .. }
            | Self::RequestTimeout { .. } => ErrorSide::Upstream,
            Self::ListenerGone(_)
            | Self::NoBackend { .. }
            | Self::InvalidBackend { .. }
            | Self::UnresolvedFilter { .. } => ErrorSide::Internal,
        }
    }

    /// Whether sending the request again (to another endpoint) is safe and may help:
    /// a failed connect or a cluster that had no endpoint at that instant (nothing
    /// left the proxy), or an attempt that timed out (Gateway API, HTTPRouteRetry
    /// backoff: a request is retried "after timing out or receiving a response code
    /// configured to be retriable"). A route retries only when it has a retry policy.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::NoReadyEndpoint { .. } | Self::BackendTimeout { .. }
        )
    }

    /// The status of the local reply.
    ///
    /// Gateway API (HTTPBackendRef): "If a backendRef is invalid, ... requests that would
    /// have been sent to that backend MUST receive a 500 status code." A valid backend
    /// that cannot be reached is a 503 (no endpoint, connect failed), a broken exchange a
    /// 502.
    ///
    /// Gateway API (HTTPRouteTimeouts request): "If the gateway has not been able to
    /// respond before this deadline is met, the gateway MUST return a timeout error":
    /// 504, as for a backend attempt that timed out. A filter that cannot be resolved:
    /// "requests that would have been processed by that filter MUST receive a HTTP error
    /// response", 500 as GEP-1364 says.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Self::BadRequest(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoBackend { .. }
            | Self::InvalidBackend { .. }
            | Self::UnresolvedFilter { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ListenerGone(_) | Self::NoReadyEndpoint { .. } | Self::Connect { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Upstream { .. } | Self::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            Self::BackendTimeout { .. } | Self::RequestTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }
}

/// Displays an error with its sources, "a: b: c": hyper's errors put the useful part
/// (connection refused, timed out) in the source chain.
struct Chain<'a>(&'a dyn StdError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        // Bounded: error chains are short, but a cyclic `source` must not hang a log line.
        let mut depth = 0;
        while let Some(e) = source {
            if depth == 8 {
                break;
            }
            write!(f, ": {e}")?;
            source = e.source();
            depth += 1;
        }
        Ok(())
    }
}
