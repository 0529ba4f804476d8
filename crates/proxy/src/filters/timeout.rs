//! HTTPRoute `timeouts`: how long the proxy waits for a response.
//!
//! Gateway API (HTTPRouteTimeouts):
//! - request: "Request specifies the maximum duration for a gateway to respond to an
//!   HTTP request. If the gateway has not been able to respond before this deadline is
//!   met, the gateway MUST return a timeout error." It runs from the moment the route is
//!   chosen (body buffering, every attempt and backoff included) until the response head
//!   is ready: the API lets the timeout "start ... after the entire request stream has
//!   been received", and a response that has started cannot turn into a 504 any more,
//!   so a body that streams past the deadline is not cut (long polls, downloads and
//!   WebSocket tunnels keep working).
//! - backendRequest: "BackendRequest specifies a timeout for an individual request from
//!   the gateway to a backend." It bounds one attempt, up to its response head.
//!
//! Both answer 504 when exceeded (see `RequestError::status`). A zero or absent value
//! means no timeout: "Setting a timeout to the zero duration (e.g. "0s") SHOULD disable
//! the timeout completely."

use std::time::Duration;

use portico_api::config::v1 as pb;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) request: Option<Duration>,
    pub(crate) backend_request: Option<Duration>,
}

impl Timeouts {
    pub(crate) fn compile(t: Option<&pb::Timeouts>) -> Self {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        match t {
            None => Self::default(),
            Some(t) => Self {
                request: ms(t.request_ms),
                backend_request: ms(t.backend_request_ms),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_no_timeout() {
        assert_eq!(Timeouts::compile(None), Timeouts::default());
        let t = Timeouts::compile(Some(&pb::Timeouts {
            request_ms: 0,
            backend_request_ms: 500,
        }));
        assert_eq!(t.request, None);
        assert_eq!(t.backend_request, Some(Duration::from_millis(500)));
    }
}
