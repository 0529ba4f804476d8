//! The request body on its way upstream: sent once, replayed for retries, or tapped for
//! mirrors.
//!
//! ```text
//! client body ─┬─ empty ─────────────────────────> Replay(empty): any number of attempts
//!              ├─ retries, known length <= 64 KiB > Replay(bytes): buffered once, every
//!              │                                    attempt and mirror gets a copy
//!              └─ otherwise ──> Tee ─────────────> Once: one attempt
//!                                └─ tap per mirror (bounded channel; a mirror that falls
//!                                   behind is cut off, never the client's request)
//! ```
//!
//! Buffering is what makes a retry possible (the first attempt consumed the body); it is
//! bounded, and a body too large or of unknown length is sent once, unretried, as
//! Envoy does past its retry buffer limit. Mirrors of an unbuffered body read the bytes
//! as they pass through to the backend: a mirror may never delay the request it copies,
//! so a tap whose channel is full is dropped and its mirror fails.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version, request::Parts};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::mpsc;

use crate::{
    error::{BoxError, RequestError},
    upstream::RequestBody,
};

/// The largest body buffered so that a request can be retried.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

/// Frames a mirror may lag behind the request it copies before it is cut off.
const TAP_CAPACITY: usize = 32;

/// A request without its body, to send (or resend) with one.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
}

impl RequestHead {
    /// Everything but the extensions, which belong to the client's connection.
    pub(crate) fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    /// The head of the request that goes on: its parts move, no field is copied.
    pub(crate) fn moved(parts: Parts) -> Self {
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        }
    }

    pub(crate) fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The body for the attempts at the backend.
#[derive(Debug)]
pub(crate) struct Outgoing {
    replay: Option<Bytes>,
    once: Option<RequestBody>,
}

impl Outgoing {
    /// The body for the next attempt; `None` once a streamed body has been sent.
    pub(crate) fn next(&mut self) -> Option<RequestBody> {
        match &self.replay {
            Some(bytes) => Some(full(bytes.clone())),
            None => self.once.take(),
        }
    }

    /// Whether another attempt can send the body again.
    pub(crate) fn replayable(&self) -> bool {
        self.replay.is_some()
    }
}

/// Prepares `body` for the backend (`replay`: the route retries) and for `taps`
/// mirrors; returns the outgoing body and one body per mirror.
pub(crate) async fn prepare(
    body: Incoming,
    replay: bool,
    taps: usize,
    limit: Option<u64>,
) -> Result<(Outgoing, Vec<RequestBody>), RequestError> {
    if body.is_end_stream() {
        let mirrors = (0..taps).map(|_| empty()).collect();
        return Ok((
            Outgoing {
                replay: Some(Bytes::new()),
                once: None,
            },
            mirrors,
        ));
    }
    let small = body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT);
    if replay && small {
        let bytes = body
            .collect()
            .await
            .map_err(RequestError::ClientBody)?
            .to_bytes();
        let mirrors = (0..taps).map(|_| full(bytes.clone())).collect();
        return Ok((
            Outgoing {
                replay: Some(bytes),
                once: None,
            },
            mirrors,
        ));
    }
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
    // A streamed body is cut where it passes the limit (a buffered one was checked by
    // its Content-Length, limits.rs), before any mirror sees the bytes.
    let body = match limit {
        Some(limit) => crate::limits::cap(body, limit),
        None => body,
    };
    if taps == 0 {
        return Ok((
            Outgoing {
                replay: None,
                once: Some(body),
            },
            Vec::new(),
        ));
    }
    let (tee, mirrors) = tee(body, taps);
    Ok((
        Outgoing {
            replay: None,
            once: Some(tee.boxed_unsync()),
        },
        mirrors,
    ))
}

pub(crate) fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn full(bytes: Bytes) -> RequestBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Splits `body` into itself and `taps` copies that see its data frames as they pass.
fn tee(body: RequestBody, taps: usize) -> (Tee, Vec<RequestBody>) {
    let size_hint = body.size_hint();
    let mut senders = Vec::with_capacity(taps);
    let mut bodies = Vec::with_capacity(taps);
    for _ in 0..taps {
        let (tx, rx) = mpsc::channel(TAP_CAPACITY);
        let complete = Arc::new(AtomicBool::new(false));
        senders.push((tx, complete.clone()));
        bodies.push(
            Tap {
                rx,
                complete,
                size_hint,
            }
            .boxed_unsync(),
        );
    }
    (
        Tee {
            inner: body,
            taps: senders,
        },
        bodies,
    )
}

/// The request body as the backend reads it, copying data frames to the taps.
struct Tee {
    inner: RequestBody,
    /// Each tap's channel, and its flag, set when the body ended cleanly with the tap
    /// still attached: a tap whose channel closes without it knows its copy is cut.
    taps: Vec<(mpsc::Sender<Bytes>, Arc<AtomicBool>)>,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    // A full or closed channel drops the tap: its mirror sees the
                    // channel close without its flag and fails.
                    this.taps
                        .retain(|(tap, _)| tap.try_send(data.clone()).is_ok());
                }
            }
            Some(Err(_)) => this.taps.clear(),
            None => {
                for (_, complete) in this.taps.drain(..) {
                    complete.store(true, Ordering::Release);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A mirror's copy of the request body.
struct Tap {
    rx: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
    size_hint: SizeHint,
}

impl Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(self.rx.poll_recv(cx)) {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None if self.complete.load(Ordering::Acquire) => Poll::Ready(None),
            None => Poll::Ready(Some(Err(
                "the mirrored request body was cut off (the original request ended or the mirror fell behind)"
                    .into(),
            ))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static str]) -> RequestBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn taps_see_every_data_frame() {
        let (tee, taps) = tee(chunks(&["ab", "cd", "ef"]), 2);
        let main = tee.collect().await.unwrap().to_bytes();
        assert_eq!(main, "abcdef");
        for tap in taps {
            assert_eq!(tap.collect().await.unwrap().to_bytes(), "abcdef");
        }
    }

    #[tokio::test]
    async fn a_tap_that_falls_behind_fails_and_the_request_goes_on() {
        let parts: Vec<&'static str> = vec!["x"; TAP_CAPACITY + 5];
        let (tee, mut taps) = tee(chunks(&parts), 1);
        // Nobody reads the tap while the request body is read to the end.
        let main = tee.collect().await.unwrap().to_bytes();
        assert_eq!(main.len(), TAP_CAPACITY + 5);
        let tap = taps.pop().unwrap();
        assert!(tap.collect().await.is_err());
    }

    #[tokio::test]
    async fn a_tap_of_an_abandoned_body_fails() {
        let (tee, mut taps) = tee(chunks(&["ab", "cd"]), 1);
        drop(tee);
        assert!(taps.pop().unwrap().collect().await.is_err());
    }

    #[tokio::test]
    async fn replayed_bodies_are_copies() {
        let mut out = Outgoing {
            replay: Some(Bytes::from_static(b"hello")),
            once: None,
        };
        assert!(out.replayable());
        for _ in 0..3 {
            let body = out.next().unwrap();
            assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        }
        let mut once = Outgoing {
            replay: None,
            once: Some(full(Bytes::from_static(b"x"))),
        };
        assert!(!once.replayable());
        assert!(once.next().is_some());
        assert!(once.next().is_none());
    }
}
