//! Reading the server name (SNI) of a TLS ClientHello without terminating TLS.
//!
//! ```text
//! TLSPlaintext record  [0x16 handshake][version u16][length u16][fragment ...]
//!   (the handshake message may be split over several records, and each record
//!    over several reads)
//! Handshake            [0x01 client_hello][length u24][body ...]
//! ClientHello body     version u16, random [32], session_id <u8>, cipher_suites <u16>,
//!                      compression_methods <u8>, extensions <u16>
//! extension            [type u16][length u16][data]; type 0 = server_name:
//!                      server_name_list <u16> of [name_type u8 = 0 host_name][name <u16>]
//! ```
//!
//! The bytes are read into a buffer (bounded in size and time) and handed on untouched:
//! a passthrough backend gets them first, then the rest of the connection, so it sees
//! exactly what the client sent (see [`Rewind`]).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Record content type of handshake messages.
const HANDSHAKE: u8 = 0x16;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 0x01;
/// Extension type of server_name (RFC 6066).
const SERVER_NAME: u16 = 0x0000;
/// RFC 8446: "The length (in bytes) of the following TLSPlaintext.fragment. The length
/// MUST NOT exceed 2^14 bytes."
const MAX_RECORD: usize = 1 << 14;

/// Why a connection did not start with a usable ClientHello.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SniError {
    #[error("not a TLS handshake: {0}")]
    NotTls(&'static str),
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before the ClientHello was complete")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Io(#[from] io::Error),
}

/// What a complete ClientHello said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The host_name of the server_name extension, lowercased; `None` without one.
    pub(crate) server_name: Option<String>,
}

/// Reads from `stream` until `buf` holds a whole ClientHello, at most `max` bytes and
/// for at most `within`. Everything read stays in `buf` (to be replayed).
pub(crate) async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
    within: Duration,
) -> Result<Hello, SniError> {
    let read = async {
        loop {
            if let Some(hello) = parse(buf)? {
                return Ok(hello);
            }
            if buf.len() >= max {
                return Err(SniError::TooLarge(max));
            }
            buf.reserve((max - buf.len()).min(4096));
            // `take` bounds this read so that the buffer never grows beyond `max`.
            let limit = (max - buf.len()) as u64;
            if (&mut *stream).take(limit).read_buf(buf).await? == 0 {
                return Err(SniError::Closed);
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(SniError::Timeout(within)))
}

/// Parses the ClientHello at the start of `data`: `Ok(None)` when more bytes are
/// needed, an error as soon as the bytes cannot be the start of one.
pub(crate) fn parse(data: &[u8]) -> Result<Option<Hello>, SniError> {
    // Gather the handshake message out of as many records as it spans.
    let mut handshake = Vec::new();
    let mut rest = data;
    loop {
        if rest.len() < 5 {
            return Ok(None);
        }
        if rest[0] != HANDSHAKE {
            return Err(SniError::NotTls("first record is not a handshake"));
        }
        // Any 3.x record version: ClientHellos say 3.1 (TLS 1.0) for compatibility.
        if rest[1] != 3 {
            return Err(SniError::NotTls("record version is not 3.x"));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(SniError::NotTls("record length out of range"));
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            // Take what has arrived of this record: enough, perhaps, to reject early.
            handshake.extend_from_slice(&rest[5..]);
            return check_prefix(&handshake).map(|()| None);
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        check_prefix(&handshake)?;
        if handshake.len() >= 4 {
            let body_len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]);
            let body_len = body_len as usize;
            if handshake.len() >= 4 + body_len {
                return client_hello(&handshake[4..4 + body_len]).map(Some);
            }
        }
    }
}

fn check_prefix(handshake: &[u8]) -> Result<(), SniError> {
    match handshake.first() {
        Some(&t) if t != CLIENT_HELLO => {
            Err(SniError::NotTls("first message is not a ClientHello"))
        }
        _ => Ok(()),
    }
}

/// The server name of a complete ClientHello body.
fn client_hello(body: &[u8]) -> Result<Hello, SniError> {
    const MALFORMED: SniError = SniError::NotTls("malformed ClientHello");
    let mut r = Reader(body);
    r.skip(2 + 32).ok_or(MALFORMED)?; // version, random
    r.vec8().ok_or(MALFORMED)?; // session id
    r.vec16().ok_or(MALFORMED)?; // cipher suites
    r.vec8().ok_or(MALFORMED)?; // compression methods
    if r.0.is_empty() {
        // A ClientHello may end here (no extensions at all).
        return Ok(Hello { server_name: None });
    }
    let mut extensions = Reader(r.vec16().ok_or(MALFORMED)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16().ok_or(MALFORMED)?;
        let data = extensions.vec16().ok_or(MALFORMED)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vec16().ok_or(MALFORMED)?);
        while !list.0.is_empty() {
            let name_type = list.u8().ok_or(MALFORMED)?;
            let name = list.vec16().ok_or(MALFORMED)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name)
                    .map_err(|_| SniError::NotTls("server name is not ASCII"))?;
                return Ok(Hello {
                    server_name: Some(name.trim_end_matches('.').to_ascii_lowercase()),
                });
            }
        }
    }
    Ok(Hello { server_name: None })
}

/// A cursor over TLS's length-prefixed vectors.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// A stream that first yields bytes already read from it (the ClientHello), then the
/// stream itself; writes go straight through.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: BytesMut, inner: S) -> Self {
        Self { prefix, inner }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A real ClientHello, from rustls's client, for `name`.
    fn hello(name: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// Re-frames a single-record handshake into records of at most `size` bytes.
    fn split_records(data: &[u8], size: usize) -> Vec<u8> {
        let fragment = &data[5..];
        let mut out = Vec::new();
        for chunk in fragment.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn reads_the_server_name() {
        let h = hello("Abc.Example.com");
        assert_eq!(
            parse(&h).unwrap(),
            Some(Hello {
                server_name: Some("abc.example.com".into())
            })
        );
    }

    #[test]
    fn an_ip_address_sends_no_server_name() {
        let h = hello("127.0.0.1");
        assert_eq!(parse(&h).unwrap(), Some(Hello { server_name: None }));
    }

    #[test]
    fn every_prefix_asks_for_more() {
        let h = hello("abc.example.com");
        for n in 0..h.len() {
            assert!(parse(&h[..n]).unwrap().is_none(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn a_hello_split_over_records_is_reassembled() {
        let h = split_records(&hello("split.example.com"), 7);
        let got = parse(&h).unwrap().unwrap();
        assert_eq!(got.server_name.as_deref(), Some("split.example.com"));
        assert!(parse(&h[..h.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn other_bytes_are_rejected_early() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(SniError::NotTls(_))
        ));
        // A handshake record carrying something else than a ClientHello.
        assert!(matches!(
            parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
            Err(SniError::NotTls(_))
        ));
        assert!(matches!(
            parse(&[0x16, 3, 1, 0, 0]),
            Err(SniError::NotTls(_))
        ));
    }

    #[tokio::test]
    async fn reading_replays_every_byte_and_bounds_size_and_time() {
        let h = hello("abc.example.com");
        // Delivered in pieces: the reader waits for the rest.
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = h.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in sent.chunks(10) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"after").await.unwrap();
            client
        });
        let mut buf = BytesMut::new();
        let got = read_client_hello(&mut server, &mut buf, 64 * 1024, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.server_name.as_deref(), Some("abc.example.com"));
        let _client = writer.await.unwrap();
        let mut replay = Rewind::new(buf, server);
        let mut all = vec![0; h.len() + 5];
        replay.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[..h.len()], &h[..]);
        assert_eq!(&all[h.len()..], b"after");

        let mut buf = BytesMut::new();
        let mut small = &h[..];
        assert!(matches!(
            read_client_hello(&mut small, &mut buf, 100, Duration::from_secs(5)).await,
            Err(SniError::TooLarge(100))
        ));

        let (_quiet, mut server) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_client_hello(&mut server, &mut buf, 1024, Duration::from_millis(50)).await,
            Err(SniError::Timeout(_))
        ));
    }
}
