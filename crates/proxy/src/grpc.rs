//! gRPC on the request path: recognising a gRPC request, and answering the errors the
//! proxy makes itself as gRPC statuses instead of HTTP error pages.
//!
//! ```text
//!  local reply needed (RequestError)
//!     ├─ the route is a GRPCRoute entry (Route.grpc), or the request is gRPC
//!     │  (content-type application/grpc*) ──> HTTP 200, content-type application/grpc,
//!     │                                        grpc-status + grpc-message, no body
//!     │                                        ("Trailers-Only": one HEADERS frame
//!     │                                        with END_STREAM)
//!     └─ otherwise ──> the HTTP local reply (service.rs)
//! ```
//!
//! Why: gRPC clients read the outcome of a call from `grpc-status`, never from the HTTP
//! status. grpc-go turns an HTTP 404 into UNIMPLEMENTED and a 503 into UNAVAILABLE but a
//! 500 into UNKNOWN, and loses the message; answering in gRPC's own terms gives every
//! client the same code and a reason. The codes, by what failed:
//!
//! | proxy error                                       | gRPC status        |
//! |---------------------------------------------------|--------------------|
//! | no route matched (no such service or method)      | UNIMPLEMENTED (12) |
//! | no backend, no ready endpoint, connect or exchange failed, listener gone | UNAVAILABLE (14) |
//! | route request timeout, backend attempt timeout    | DEADLINE_EXCEEDED (4) |
//! | invalid backendRef, unresolved filter, bad request | INTERNAL (13)     |
//! | target, head or body over a limit (options.rs)    | RESOURCE_EXHAUSTED (8) |
//!
//! Responses from backends pass through untouched, trailers included: hyper forwards
//! the trailer frames of a streamed body, and `te: trailers` survives hop-by-hop removal
//! (headers.rs) so that backends that insist on it see it.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};

use crate::{error::RequestError, upstream::ProxyBody};

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes the proxy answers with (grpc/doc/statuscodes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Code {
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl Code {
    /// The code of the local reply for `error`; see the table in the module docs.
    pub(crate) fn of(error: &RequestError) -> Self {
        match error {
            RequestError::NoRoute { .. } => Code::Unimplemented,
            RequestError::BackendTimeout { .. } | RequestError::RequestTimeout { .. } => {
                Code::DeadlineExceeded
            }
            RequestError::InvalidBackend { .. }
            | RequestError::UnresolvedFilter { .. }
            | RequestError::BadRequest(_)
            | RequestError::ClientBody(_) => Code::Internal,
            RequestError::UriTooLong { .. }
            | RequestError::HeadersTooLarge { .. }
            | RequestError::BodyTooLarge { .. } => Code::ResourceExhausted,
            // No backend, no ready endpoint, a failed connect or exchange, a listener
            // gone, a request on a connection for another server name: the call could
            // not be served here and now, which is what UNAVAILABLE says ("most likely a
            // transient condition, which can be corrected by retrying").
            _ => Code::Unavailable,
        }
    }

    fn as_header(self) -> HeaderValue {
        HeaderValue::from(u16::from(self as u8))
    }
}

/// Whether a request is gRPC: `content-type: application/grpc`, alone or with a
/// subtype or parameters (gRPC over HTTP/2: "Content-Type → "content-type"
/// "application/grpc" [("+proto" / "+json" / {custom})]"). gRPC-Web
/// (`application/grpc-web`) is another protocol and is not matched.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    const PREFIX: &str = "application/grpc";
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.get(..PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
                && matches!(ct.as_bytes().get(PREFIX.len()), None | Some(b'+' | b';'))
        })
}

/// A Trailers-Only response carrying `code` and the error as `grpc-message`.
///
/// gRPC over HTTP/2: "Trailers-Only is permitted for calls that produce an immediate
/// error"; it is a HTTP 200 whose only HEADERS frame carries `grpc-status`, which is
/// what hyper sends for headers and an empty body.
pub(crate) fn local_reply(error: &RequestError) -> Response<ProxyBody> {
    let code = Code::of(error);
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS.clone(), code.as_header());
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&error.to_string())) {
        headers.insert(GRPC_MESSAGE.clone(), message);
    }
    response
}

/// `grpc-message` encoding: "Percent-Encoded → 1*(Percent-Byte-Unencoded /
/// Percent-Byte-Encoded)" with the unencoded bytes being printable ASCII except `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn ct(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&ct("application/grpc")));
        assert!(is_grpc(&ct("application/grpc+proto")));
        assert!(is_grpc(&ct("application/GRPC;charset=utf-8")));
        assert!(!is_grpc(&ct("application/grpc-web")));
        assert!(!is_grpc(&ct("application/grpcfoo")));
        assert!(!is_grpc(&ct("text/plain")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn codes_by_failure() {
        let no_route = RequestError::NoRoute {
            host: "h".into(),
            path: "/a.B/C".into(),
        };
        assert_eq!(Code::of(&no_route), Code::Unimplemented);
        let no_endpoint = RequestError::NoReadyEndpoint {
            cluster: "c".into(),
        };
        assert_eq!(Code::of(&no_endpoint), Code::Unavailable);
        let timeout = RequestError::RequestTimeout {
            after: Duration::from_millis(5),
        };
        assert_eq!(Code::of(&timeout), Code::DeadlineExceeded);
        let invalid = RequestError::InvalidBackend {
            route: "r".into(),
            reason: "BackendNotFound".into(),
        };
        assert_eq!(Code::of(&invalid), Code::Internal);
    }

    #[test]
    fn trailers_only_reply() {
        let error = RequestError::NoBackend {
            route: "ns/r/rule/0/match/0 ünïcode 100%".into(),
        };
        let reply = local_reply(&error);
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.headers()["content-type"], "application/grpc");
        assert_eq!(reply.headers()["grpc-status"], "14");
        let message = reply.headers()["grpc-message"].to_str().unwrap();
        assert!(
            message.contains("%C3%BC") && message.contains("100%25"),
            "{message}"
        );
    }
}
