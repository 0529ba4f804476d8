//! W3C Trace Context (https://www.w3.org/TR/trace-context/) across the proxy's hop.
//!
//! ```text
//! traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>
//!
//! client sent a valid one ──> same trace-id and flags, parent-id = a new span id (the
//!                             proxy's hop); tracestate passed through unchanged
//! none, or invalid ────────> a new trace-id and span id; flags 01 for the share
//!                             `--trace-sample-ratio` of them (their spans are
//!                             exported), else 00 (the proxy records nothing, so it
//!                             does not claim the trace was sampled); tracestate
//!                             dropped: it belongs to the trace we could not read ("If
//!                             the vendor failed to parse traceparent, it MUST NOT
//!                             attempt to parse tracestate")
//! ```
//!
//! Valid means, per the spec: lowercase hex, a trace-id and a parent-id that are not
//! all zeros, and a version other than `ff`. A higher version than 00 is read by its
//! first four fields ("If a higher version is detected, the implementation SHOULD try
//! to parse it by trying the following: ... if the size of the header is shorter than
//! 55 characters, the vendor should not parse the header and should restart the
//! trace"), and forwarded as version 00, the one we speak.
//!
//! Both headers are set before the route's filters run, like the proxy's other
//! forwarding headers: a RequestHeaderModifier may still override them.

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace of one request, as forwarded to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub(crate) trace_id: u128,
    /// The proxy's own span: the parent-id the backend sees.
    pub(crate) span_id: u64,
    /// The client's span (its traceparent's parent-id); `None` when the trace started
    /// here.
    pub(crate) parent_id: Option<u64>,
    pub(crate) flags: u8,
}

impl TraceContext {
    /// The 32-hex-digit trace id, as the access log prints it.
    pub(crate) fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// Whether the trace is sampled (flag 01): its spans are exported (otlp.rs).
    pub(crate) fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// `traceparent`, written by hand: this runs for every request.
    fn header(&self) -> HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&mut out[3..35], self.trace_id);
        out[35] = b'-';
        hex_into(&mut out[36..52], u128::from(self.span_id));
        out[52] = b'-';
        hex_into(&mut out[53..55], u128::from(self.flags));
        // Hex digits and dashes only: always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Writes the low `out.len()` hex digits of `n`, lowercase, most significant first.
fn hex_into(out: &mut [u8], mut n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// Continues the client's trace or starts one, sampled with probability `sample_ratio`,
/// and sets `traceparent` (and drops `tracestate` when the trace restarts) on the
/// request going to the backend.
pub(crate) fn propagate(headers: &mut HeaderMap, sample_ratio: f64) -> TraceContext {
    let incoming = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse);
    let context = match incoming {
        Some((trace_id, parent_id, flags)) => TraceContext {
            trace_id,
            span_id: span_id(),
            parent_id: Some(parent_id),
            flags,
        },
        None => {
            headers.remove(&TRACESTATE);
            TraceContext {
                // Zero is the invalid id: a random u128 is that with probability 2^-128,
                // and `max(1)` rules it out anyway.
                trace_id: fastrand::u128(..).max(1),
                span_id: span_id(),
                parent_id: None,
                flags: u8::from(sampled(sample_ratio)),
            }
        }
    };
    headers.insert(TRACEPARENT.clone(), context.header());
    context
}

/// A head-sampling decision: true with probability `ratio`.
fn sampled(ratio: f64) -> bool {
    ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio)
}

fn span_id() -> u64 {
    fastrand::u64(1..)
}

/// The trace id, parent id and flags of a valid `traceparent`.
fn parse(value: &str) -> Option<(u128, u64, u8)> {
    let value = value.trim_matches([' ', '\t']);
    let mut fields = value.splitn(5, '-');
    let version = fields.next()?;
    let trace = fields.next()?;
    let parent = fields.next()?;
    let flags = fields.next()?;
    let rest = fields.next();
    if version.len() != 2 || !lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; a later version may append more, after a dash.
    if version == "00" && rest.is_some() {
        return None;
    }
    if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    if !(lower_hex(trace) && lower_hex(parent) && lower_hex(flags)) {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some((trace_id, parent_id, u8::from_str_radix(flags, 16).ok()?))
}

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn forwarded(headers: &HeaderMap) -> (&str, &str, &str, &str) {
        let value = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut f = value.split('-');
        (
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
        )
    }

    #[test]
    fn the_header_is_written_as_the_format_would() {
        for (trace_id, span_id, flags) in
            [(1, 1, 0), (u128::MAX, u64::MAX, 0xff), (0x4bf9, 0xf067, 1)]
        {
            let context = TraceContext {
                trace_id,
                span_id,
                parent_id: None,
                flags,
            };
            let expected = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
            assert_eq!(context.header(), expected.as_str());
        }
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=abc"));
        let context = propagate(&mut headers, 0.0);
        let (version, trace, parent, flags) = forwarded(&headers);
        assert_eq!(version, "00");
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.trace_id_hex(), trace);
        assert_ne!(parent, "00f067aa0ba902b7");
        assert_eq!(parent.len(), 16);
        assert_eq!(flags, "01");
        assert_eq!(
            headers.get(&TRACESTATE).map(|v| v.as_bytes()),
            Some(&b"vendor=abc"[..])
        );
    }

    #[test]
    fn invalid_or_missing_traceparents_start_a_new_trace() {
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in invalid {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(&TRACEPARENT, v);
            }
            headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=abc"));
            let context = propagate(&mut headers, 0.0);
            let (version, trace, parent, flags) = forwarded(&headers);
            assert_eq!(version, "00", "{value}");
            assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{value}");
            assert_eq!(trace, context.trace_id_hex(), "{value}");
            assert!(parse(headers[&TRACEPARENT].to_str().unwrap_or_default()).is_some());
            assert_eq!((parent.len(), flags), (16, "00"), "{value}");
            assert!(headers.get(&TRACESTATE).is_none(), "{value}");
        }
    }

    #[test]
    fn new_traces_are_sampled_by_the_ratio_and_client_traces_by_the_client() {
        for (ratio, flags) in [(0.0, "00"), (1.0, "01")] {
            let mut headers = HeaderMap::new();
            let context = propagate(&mut headers, ratio);
            assert_eq!(forwarded(&headers).3, flags, "ratio {ratio}");
            assert_eq!(context.sampled(), flags == "01");
        }
        // The client decided: its flag stands whatever the ratio.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        for (sent, ratio, flags) in [(unsampled, 1.0, "00"), (VALID, 0.0, "01")] {
            let mut headers = HeaderMap::new();
            headers.insert(&TRACEPARENT, HeaderValue::from_static(sent));
            propagate(&mut headers, ratio);
            assert_eq!(forwarded(&headers).3, flags, "{sent} at {ratio}");
        }
        // A ratio in between samples some and not others (bounded: 2^-200 to fail).
        let sampled = (0..200)
            .filter(|_| propagate(&mut HeaderMap::new(), 0.5).sampled())
            .count();
        assert!(0 < sampled && sampled < 200, "{sampled} of 200");
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert_eq!(
            parse(value),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1))
        );
    }
}
