//! Limits on what one client may send or hold (docs/security.md has every default):
//! the request target and head sizes (checked here for every protocol, HTTP/1 heads
//! are also bounded by hyper's read buffer), the body size (the Content-Length up
//! front, a streamed body as it passes), and the connections open at once.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, Uri, header};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    error::{BoxError, RequestError},
    options::ProxyOptions,
    upstream::RequestBody,
};

/// The request limits of `ProxyOptions`, as the request path uses them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_uri_bytes: usize,
    pub(crate) max_request_body_bytes: Option<u64>,
}

impl Limits {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        Self {
            max_header_bytes: options.max_header_bytes,
            max_uri_bytes: options.max_uri_bytes,
            max_request_body_bytes: options.max_request_body_bytes,
        }
    }

    /// 414, 431 or 413 (by Content-Length) for a request over a limit. The head is
    /// counted as HTTP/1 would send it: the target, and `name: value\r\n` per field.
    pub(crate) fn check_head(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), RequestError> {
        let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target > self.max_uri_bytes {
            return Err(RequestError::UriTooLong {
                len: target,
                limit: self.max_uri_bytes,
            });
        }
        let head = target
            + headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if head > self.max_header_bytes {
            return Err(RequestError::HeadersTooLarge {
                len: head,
                limit: self.max_header_bytes,
            });
        }
        if let Some(limit) = self.max_request_body_bytes {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(RequestError::BodyTooLarge { limit });
            }
        }
        Ok(())
    }
}

/// The error a body capped by [`cap`] fails with once it passes its limit; found again
/// in the upstream client's error chain to answer 413 (see [`body_too_large`]).
#[derive(Debug, thiserror::Error)]
#[error("request body over the limit of {limit} bytes")]
pub(crate) struct TooLarge {
    pub(crate) limit: u64,
}

/// `body`, failing with [`TooLarge`] once more than `limit` bytes went through.
pub(crate) fn cap(body: RequestBody, limit: u64) -> RequestBody {
    http_body_util::BodyExt::boxed_unsync(Capped {
        inner: body,
        seen: 0,
        limit,
    })
}

/// The limit, when `error` (or one of its sources) is a capped body's [`TooLarge`].
pub(crate) fn body_too_large(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current = Some(error);
    // Bounded: error chains are short.
    for _ in 0..8 {
        let e = current?;
        if let Some(too_large) = e.downcast_ref::<TooLarge>() {
            return Some(too_large.limit);
        }
        current = e.source();
    }
    None
}

struct Capped {
    inner: RequestBody,
    seen: u64,
    limit: u64,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > self.limit {
                return Poll::Ready(Some(Err(Box::new(TooLarge { limit: self.limit }))));
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

/// Client connections open at once over all listeners of a proxy.
#[derive(Debug)]
pub(crate) struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub(crate) fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
    }

    /// A slot for one more connection, held until the connection ends; `None` when all
    /// are taken.
    pub(crate) fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 100,
            max_uri_bytes: 20,
            max_request_body_bytes: Some(10),
        }
    }

    #[test]
    fn head_limits() {
        let ok: Uri = "/short".parse().unwrap();
        assert!(limits().check_head(&ok, &HeaderMap::new()).is_ok());
        let long: Uri = format!("/{}", "a".repeat(20)).parse().unwrap();
        assert!(matches!(
            limits().check_head(&long, &HeaderMap::new()),
            Err(RequestError::UriTooLong { len: 21, limit: 20 })
        ));
        let mut big = HeaderMap::new();
        big.insert("x-big", HeaderValue::from_str(&"b".repeat(100)).unwrap());
        assert!(matches!(
            limits().check_head(&ok, &big),
            Err(RequestError::HeadersTooLarge { .. })
        ));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(matches!(
            limits().check_head(&ok, &declared),
            Err(RequestError::BodyTooLarge { limit: 10 })
        ));
    }

    #[tokio::test]
    async fn capped_body_fails_past_its_limit() {
        let fits = cap(crate::body::full(Bytes::from_static(b"0123456789")), 10);
        assert_eq!(fits.collect().await.unwrap().to_bytes().len(), 10);
        let over = cap(crate::body::full(Bytes::from_static(b"0123456789!")), 10);
        let error = over.collect().await.unwrap_err();
        assert_eq!(body_too_large(&*error), Some(10));
    }

    #[test]
    fn slots_are_given_back() {
        let slots = ConnectionSlots::new(1);
        let first = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(first);
        assert!(slots.take().is_some());
    }
}
