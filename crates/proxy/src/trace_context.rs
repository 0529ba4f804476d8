//! W3C Trace Context (https://www.w3.org/TR/trace-context/) across the proxy's hop.
//!
//! ```text
//! traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>
//!
//! client sent a valid one ──> same trace-id and flags, parent-id = a new span id (the
//!                             proxy's hop); tracestate passed through unchanged
//! none, or invalid ────────> a new trace-id and span id, flags 00 (the proxy records
//!                             nothing, so it does not claim the trace was sampled);
//!                             tracestate dropped: it belongs to the trace we could not
//!                             read ("If the vendor failed to parse traceparent, it MUST
//!                             NOT attempt to parse tracestate")
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

    fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Continues the client's trace or starts one, and sets `traceparent` (and drops
/// `tracestate` when the trace restarts) on the request going to the backend.
pub(crate) fn propagate(headers: &mut HeaderMap) -> TraceContext {
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
                flags: 0,
            }
        }
    };
    // Hex digits and dashes only: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&context.header()) {
        headers.insert(TRACEPARENT.clone(), value);
    }
    context
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
    fn a_valid_traceparent_is_continued_with_a_new_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=abc"));
        let context = propagate(&mut headers);
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
            let context = propagate(&mut headers);
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
    fn a_later_version_is_read_by_its_first_fields() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert_eq!(
            parse(value),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1))
        );
    }
}
