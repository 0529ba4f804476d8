//! The request log: one [`SeenRequest`] per request answered, broadcast to whoever
//! subscribed with [`crate::EchoServer::subscribe_requests`].
//!
//! A client only sees the answers to its own requests. Some tests need to know about
//! requests nobody answers to them: a proxy mirroring a request to a second backend
//! discards that backend's answer, so the only proof the mirror happened is the
//! backend's own record of it (the conformance runner checks `mirrored_to` this way).
//! `portico-echo --log-requests` prints the log as JSON lines on stdout.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Requests kept for a subscriber that has not read them yet; a slower reader loses the
/// oldest ones (and is told so by `broadcast`'s `Lagged` error) rather than holding the
/// server's memory.
pub(crate) const REQUEST_LOG_CAPACITY: usize = 4096;

/// One request as the echo server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRequest {
    pub method: String,
    /// The request URI as received, query included (the answer's `path`).
    pub path: String,
    /// Host header on HTTP/1, `:authority` on HTTP/2.
    pub host: String,
}

/// The sending side, shared by every connection of one server.
pub(crate) type RequestLog = broadcast::Sender<SeenRequest>;

pub(crate) fn request_log() -> RequestLog {
    broadcast::channel(REQUEST_LOG_CAPACITY).0
}
