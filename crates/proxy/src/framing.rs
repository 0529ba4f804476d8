//! Request smuggling: a request with both `Content-Length` and `Transfer-Encoding` gets
//! 400 and its connection is closed (docs/security.md, RFC 9112 section 6.1: a server
//! "MAY reject such a message").
//!
//! hyper resolves the conflict before the service runs (chunked wins, `Content-Length`
//! is dropped from the request, the connection closes after the response), so the
//! request the service gets no longer shows it. Only the connection's bytes do: every
//! client connection reads through [`Guarded`], which follows HTTP/1 message framing as
//! hyper does (a head, then a body by `Content-Length` or chunked coding, then the next
//! head) and records, for every request head, whether it carried both fields.
//! `service` takes one record per HTTP/1 request, in order ([`Heads::next_conflicts`]):
//! hyper serves an HTTP/1 connection's requests one at a time, in the order they came.
//!
//! The guard only ever stops following (HTTP/2, an upgraded connection, bytes hyper
//! would refuse anyway, a head over the size limit): then it records nothing more and
//! hyper's own handling (chunked wins, connection closed) is what remains, which does
//! not smuggle either.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's default limit on the fields of an HTTP/1 request head.
const MAX_FIELDS: usize = 100;

/// The record of one connection's request heads, shared by its [`Guarded`] reader and
/// its service.
#[derive(Clone, Debug, Default)]
pub(crate) struct Heads(Arc<Mutex<VecDeque<bool>>>);

impl Heads {
    /// Whether the next HTTP/1 request of the connection carried both `Content-Length`
    /// and `Transfer-Encoding`; false once the guard stopped following.
    pub(crate) fn next_conflicts(&self) -> bool {
        self.0
            .lock()
            .map(|mut heads| heads.pop_front())
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    fn record(&self, conflict: bool) {
        if let Ok(mut heads) = self.0.lock() {
            heads.push_back(conflict);
        }
    }
}

/// A client connection whose inbound bytes are followed by a [`Framing`].
pub(crate) struct Guarded<I> {
    inner: I,
    framing: Framing,
}

impl<I> Guarded<I> {
    /// `max_head`: the largest head followed (the proxy's `max_header_bytes`; hyper
    /// refuses larger ones).
    pub(crate) fn new(inner: I, heads: Heads, max_head: usize) -> Self {
        Self {
            inner,
            framing: Framing::new(heads, max_head),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.framing.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the byte stream is, in HTTP/1 message framing.
#[derive(Debug, PartialEq)]
enum State {
    /// In a request head: its bytes so far.
    Head(Vec<u8>),
    /// In a body with a `Content-Length`: the bytes left.
    Body(u64),
    /// In a chunk-size line: the size so far.
    Size(u64),
    /// Whitespace after a chunk size.
    SizeSpace(u64),
    /// A chunk extension (`;name=value`), up to the CR.
    Extension(u64),
    /// The LF of a chunk-size line.
    SizeLf(u64),
    /// Chunk data: the bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the empty line that ends the message).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// The LF of a trailer field line.
    TrailerLf,
    /// The LF of the empty line that ends a chunked message.
    EndLf,
    /// Not following any more.
    Off,
}

/// Follows the framing of the HTTP/1 requests in a byte stream.
struct Framing {
    state: State,
    heads: Heads,
    max_head: usize,
}

impl Framing {
    fn new(heads: Heads, max_head: usize) -> Self {
        Self {
            state: State::Head(Vec::new()),
            heads,
            max_head,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        // Each turn consumes at least one byte or stops.
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Off);
            let (next, used) = match state {
                State::Off => return,
                State::Head(head) => self.head(head, bytes),
                State::Body(left) | State::Data(left) => {
                    let used = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - used as u64;
                    let next = match (&state, left) {
                        (State::Body(_), 0) => State::Head(Vec::new()),
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::DataCr,
                        (_, _) => State::Data(left),
                    };
                    (next, used)
                }
                chunked => (chunk_step(chunked, bytes[0]), 1),
            };
            self.state = next;
            bytes = &bytes[used..];
        }
    }

    /// Adds `bytes` to a head; when the head is whole, records it and returns the state
    /// after it with the bytes it used.
    fn head(&mut self, mut head: Vec<u8>, bytes: &[u8]) -> (State, usize) {
        let start = head.len();
        // A head that arrives whole in one read (the usual case) is parsed where it lies;
        // only a head split over reads is collected.
        if start > 0 {
            head.extend_from_slice(bytes);
        }
        let parsed = {
            let buf: &[u8] = if start > 0 { &head } else { bytes };
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut request = httparse::Request::new(&mut fields);
            match request.parse(buf) {
                Ok(httparse::Status::Complete(len)) => Some(Some((len, after_head(&request)))),
                Ok(httparse::Status::Partial) if buf.len() <= self.max_head => Some(None),
                // Too large, too many fields, not HTTP/1 (an HTTP/2 preface): hyper's own.
                _ => None,
            }
        };
        match parsed {
            Some(Some((len, (next, conflict)))) => {
                self.heads.record(conflict);
                // `len` is at least `start`: the head was not whole before these bytes.
                (next, len.saturating_sub(start).max(1).min(bytes.len()))
            }
            Some(None) => {
                if start == 0 {
                    head.extend_from_slice(bytes);
                }
                (State::Head(head), bytes.len())
            }
            None => (State::Off, bytes.len()),
        }
    }
}

/// The state after a whole request head, and whether it carried both `Content-Length`
/// and `Transfer-Encoding`.
fn after_head(request: &httparse::Request<'_, '_>) -> (State, bool) {
    let named = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let te = named("transfer-encoding").next_back();
    let lengths: Vec<Option<u64>> = named("content-length")
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    if te.is_some() && !lengths.is_empty() {
        // Refused and closed: nothing after it is read as a request.
        return (State::Off, true);
    }
    let next = match (te, lengths.first()) {
        (Some(te), _) => {
            // hyper refuses Transfer-Encoding in HTTP/1.0 or not ending in chunked.
            let chunked = std::str::from_utf8(te.value).ok().is_some_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
            if request.version == Some(1) && chunked {
                State::Size(0)
            } else {
                State::Off
            }
        }
        (None, None) => State::Head(Vec::new()),
        (None, Some(first)) => match first {
            Some(n) if lengths.iter().all(|l| l == &Some(*n)) => match n {
                0 => State::Head(Vec::new()),
                n => State::Body(*n),
            },
            // Two lengths that differ, or not a number: hyper answers 400.
            _ => State::Off,
        },
    };
    (next, false)
}

/// One byte of chunked coding (RFC 9112 section 7.1), as hyper's decoder reads it.
fn chunk_step(state: State, b: u8) -> State {
    match (state, b) {
        (State::Size(n), b) if b.is_ascii_hexdigit() => n
            .checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(hex(b))))
            .map_or(State::Off, State::Size),
        (State::Size(n) | State::SizeSpace(n), b' ' | b'\t') => State::SizeSpace(n),
        (State::Size(n) | State::SizeSpace(n) | State::Extension(n), b';') => State::Extension(n),
        (State::Size(n) | State::SizeSpace(n) | State::Extension(n), b'\r') => State::SizeLf(n),
        (State::Extension(_), b'\n') => State::Off,
        (State::Extension(n), _) => State::Extension(n),
        (State::SizeLf(0), b'\n') => State::TrailerStart,
        (State::SizeLf(n), b'\n') => State::Data(n),
        (State::DataCr, b'\r') => State::DataLf,
        (State::DataLf, b'\n') => State::Size(0),
        (State::TrailerStart, b'\r') => State::EndLf,
        (State::Trailer, b'\r') => State::TrailerLf,
        (State::TrailerStart | State::Trailer, b'\n') => State::Off,
        (State::TrailerStart | State::Trailer, _) => State::Trailer,
        (State::TrailerLf, b'\n') => State::TrailerStart,
        (State::EndLf, b'\n') => State::Head(Vec::new()),
        _ => State::Off,
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conflict records of `bytes` fed in pieces of `step` bytes.
    fn records(bytes: &[u8], step: usize) -> (Vec<bool>, State) {
        let heads = Heads::default();
        let mut framing = Framing::new(heads.clone(), 64 * 1024);
        for piece in bytes.chunks(step) {
            framing.feed(piece);
        }
        let recorded = heads.0.lock().map(|h| h.iter().copied().collect());
        (recorded.unwrap_or_default(), framing.state)
    }

    #[test]
    fn pipelined_requests_are_followed_through_their_bodies() {
        let stream = concat!(
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 65\r\n\r\n",
            // A body that looks like a conflicting head: never read as one.
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5;ext=1\r\nhello\r\n1A\r\nContent-Length: 4\r\n\r\n12345\r\n0\r\nX-Trailer: t\r\n\r\n",
            "GET /c HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        for step in [1, 2, 7, stream.len()] {
            let (got, state) = records(stream.as_bytes(), step);
            assert_eq!(got, [false, false, false, false], "in pieces of {step}");
            assert_eq!(state, State::Head(Vec::new()), "in pieces of {step}");
        }
    }

    #[test]
    fn content_length_with_transfer_encoding_is_recorded_in_either_order() {
        for head in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: gzip, chunked\nContent-Length: 0\n\n",
        ] {
            let stream =
                format!("GET / HTTP/1.1\r\nHost: h\r\n\r\n{head}0\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
            for step in [1, 5, stream.len()] {
                let (got, state) = records(stream.as_bytes(), step);
                assert_eq!(got, [false, true], "{head:?} in pieces of {step}");
                assert_eq!(state, State::Off);
            }
        }
    }

    #[test]
    fn what_hyper_refuses_stops_the_guard() {
        for stream in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n",
        ] {
            let (_, state) = records(stream.as_bytes(), 3);
            assert_eq!(state, State::Off, "{stream:?}");
        }
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(70 * 1024));
        let (got, state) = records(big.as_bytes(), 1000);
        assert!(got.is_empty());
        assert_eq!(state, State::Off);
    }
}
