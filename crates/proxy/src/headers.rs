//! Headers the proxy itself owns: hop-by-hop headers (removed on both legs) and the
//! forwarding headers it adds for the backend (`x-forwarded-for`, `x-forwarded-proto`,
//! `x-request-id`).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), and
/// so must not be forwarded. Names, not strings: a lookup by `&str` parses and hashes
/// the name each time.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `upgrade` goes too: an upgrade is per hop, and `upgrade.rs` offers it to the next
/// hop itself.
///
/// `te: trailers` survives on requests: it is how a gRPC client says it understands
/// trailers, and HTTP/2 allows exactly that value end to end.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    // Most messages carry none of them: one pass over the names (and `Connection` is
    // one of them) is cheaper than a removal per hop-by-hop name.
    let any = headers
        .keys()
        .any(|n| *n == header::UPGRADE || HOP_BY_HOP.contains(n));
    if !any {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(header::UPGRADE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Adds the forwarding headers (the rule is in docs/security.md):
/// - `x-forwarded-for`: with `trusted_hops` 0, the peer address alone (whatever the
///   client sent is dropped); with N > 0, the client sent list is trusted from its Nth
///   address from the right (what the N proxies in front of us appended) onwards, the
///   addresses left of it are dropped, and the peer address is appended. Returns the
///   client address that results (the peer, or that Nth address);
/// - `x-forwarded-proto`: the scheme the client used with us, unless a trusted proxy is
///   in front (N > 0) and said which one the client used;
/// - `forwarded` (RFC 7239): removed unless N > 0; the proxy does not write it;
/// - `x-request-id`: kept when the client sent a plausible one, so that a trace crosses
///   hops, else a new UUID v4.
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    trusted_hops: u32,
) -> Forwarded {
    let peer = peer.to_canonical();
    let (client, xff) = if trusted_hops == 0 {
        // The common case: the peer alone, written without a String in between.
        (peer, ip_value(peer))
    } else {
        let (client, mut xff) = trusted_chain(headers, peer, trusted_hops);
        if !xff.is_empty() {
            xff.push_str(", ");
        }
        xff.push_str(&peer.to_string());
        (client, HeaderValue::from_str(&xff).ok())
    };
    // `insert` replaces every value the client sent.
    match xff {
        Some(v) => {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        None => {
            headers.remove(&X_FORWARDED_FOR);
        }
    }
    let trusted_proto = trusted_hops > 0
        && headers
            .get(&X_FORWARDED_PROTO)
            .is_some_and(|v| matches!(v.as_bytes(), b"http" | b"https"));
    if !trusted_proto {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if trusted_hops == 0 {
        headers.remove(header::FORWARDED);
    }
    let request_id = request_id(headers);
    Forwarded { client, request_id }
}

/// What `add_forwarding` decided.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// The client's address: the peer, or the one the trusted hops reported.
    pub(crate) client: IpAddr,
    /// The request id, for logs.
    pub(crate) request_id: String,
}

/// The client address and the trusted part of the client sent `x-forwarded-for` (the
/// addresses from the client's on, comma separated), before the peer is appended.
fn trusted_chain(headers: &HeaderMap, peer: IpAddr, trusted_hops: u32) -> (IpAddr, String) {
    if trusted_hops == 0 {
        return (peer, String::new());
    }
    let list: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
    // Fewer addresses than trusted hops: the first one is the client's.
    let from = list.len().saturating_sub(hops);
    match list.get(from).and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(client) => (client.to_canonical(), list[from..].join(", ")),
        // Nothing usable where the client's address should be: trust nothing.
        None => (peer, String::new()),
    }
}

/// The `x-request-id` to forward (set in `headers`) and log.
fn request_id(headers: &mut HeaderMap) -> String {
    let incoming = headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned);
    match incoming {
        Some(id) => id,
        None => {
            // A UUID v4 from the thread's fast generator: an id that must be unique, not
            // unguessable, so no getrandom(2) call per request.
            let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
            let mut buf = uuid::Uuid::encode_buffer();
            let id = id.hyphenated().encode_lower(&mut buf);
            // A UUID is always a valid header value.
            if let Ok(v) = HeaderValue::from_str(id) {
                headers.insert(X_REQUEST_ID.clone(), v);
            }
            id.to_owned()
        }
    }
}

/// An address as a header value (IPv4 written by hand: this runs per request).
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = match octet {
                    100.. => 0,
                    10.. => 1,
                    _ => 2,
                };
                for d in &digits[skip..] {
                    buf[len] = b'0' + d;
                    len += 1;
                }
            }
            HeaderValue::from_bytes(&buf[..len]).ok()
        }
        IpAddr::V6(_) => HeaderValue::from_str(&ip.to_string()).ok(),
    }
}

/// A request id worth keeping: short, and made of characters that are safe to put in a
/// log line or another system's id field.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut m = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "basic x"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut m, false);
        let names: Vec<_> = m.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn te_trailers_survives_on_requests() {
        let mut m = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut m, true);
        assert_eq!(m.get("te").unwrap(), "trailers");
        let mut m = map(&[("te", "gzip")]);
        strip_hop_by_hop(&mut m, true);
        assert!(m.get("te").is_none());
    }

    #[test]
    fn forwarding_headers() {
        let mut m = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let id = add_forwarding(&mut m, "10.0.0.9".parse().unwrap(), "http", 0).request_id;
        assert_eq!(m.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(m.get("x-forwarded-proto").unwrap(), "http");
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_eq!(m.get("x-request-id").unwrap(), id.as_str());
    }

    #[test]
    fn trusted_hops_take_the_client_from_the_list() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        for (hops, sent, client, xff) in [
            (1, "6.6.6.6, 1.2.3.4", "1.2.3.4", "1.2.3.4, 10.0.0.9"),
            (
                2,
                "6.6.6.6, 1.2.3.4, 10.0.0.1",
                "1.2.3.4",
                "1.2.3.4, 10.0.0.1, 10.0.0.9",
            ),
            (3, "1.2.3.4", "1.2.3.4", "1.2.3.4, 10.0.0.9"),
            (1, "not-an-ip", "10.0.0.9", "10.0.0.9"),
            (1, "", "10.0.0.9", "10.0.0.9"),
        ] {
            let mut m = map(&[("x-forwarded-for", sent), ("x-forwarded-proto", "https")]);
            let forwarded = add_forwarding(&mut m, peer, "http", hops);
            assert_eq!(forwarded.client.to_string(), client, "{hops} {sent}");
            assert_eq!(m.get("x-forwarded-for").unwrap(), xff, "{hops} {sent}");
            assert_eq!(m.get("x-forwarded-proto").unwrap(), "https");
        }
    }

    #[test]
    fn untrusted_forwarded_goes() {
        let mut m = map(&[("forwarded", "for=6.6.6.6;proto=https")]);
        add_forwarding(&mut m, [10, 0, 0, 9].into(), "http", 0);
        assert!(m.get("forwarded").is_none());
        let mut m = map(&[("forwarded", "for=1.2.3.4")]);
        add_forwarding(&mut m, [10, 0, 0, 9].into(), "http", 1);
        assert!(m.get("forwarded").is_some());
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.99.100",
            "255.255.255.255",
            "::1",
            "fe80::1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(parsed).unwrap(), parsed.to_string().as_str());
        }
    }

    #[test]
    fn ipv4_mapped_client_is_shown_as_ipv4() {
        let mut m = HeaderMap::new();
        add_forwarding(&mut m, "::ffff:10.0.0.9".parse().unwrap(), "http", 0);
        assert_eq!(m.get("x-forwarded-for").unwrap(), "10.0.0.9");
    }

    #[test]
    fn request_id_kept_when_valid_replaced_otherwise() {
        let mut m = map(&[("x-request-id", "abc-123")]);
        assert_eq!(
            add_forwarding(&mut m, [127, 0, 0, 1].into(), "http", 0).request_id,
            "abc-123"
        );
        assert_eq!(m.get("x-request-id").unwrap(), "abc-123");

        for bad in ["has space", "", &"x".repeat(129)] {
            let mut m = map(&[("x-request-id", bad)]);
            let id = add_forwarding(&mut m, [127, 0, 0, 1].into(), "http", 0).request_id;
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?}");
            assert_eq!(m.get_all("x-request-id").iter().count(), 1);
        }
    }
}
