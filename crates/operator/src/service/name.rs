//! The name of a Gateway's Service, and the value of its gateway-name label.
//!
//! A Service name must be an RFC 1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63
//! characters), while a Gateway name is an RFC 1123 subdomain (dots allowed, up to 253
//! characters). `portico-gateway-<gateway>` is used as is when it is a valid label;
//! otherwise the name is made safe (dots and other characters become `-`), cut to fit,
//! and suffixed with a hash of the Gateway's real name, so that two Gateways whose
//! names only differ past the cut (or by `.` against `-`) still get distinct Services.

use sha2::{Digest, Sha256};

/// Every generated Service's name starts with this.
pub const SERVICE_PREFIX: &str = "portico-gateway-";

/// The longest DNS label, and the longest label value.
const MAX_LABEL: usize = 63;

/// Hex digits of the hash suffix.
const HASH_LEN: usize = 8;

/// The name of the Service for the Gateway named `gateway`.
pub fn service_name(gateway: &str) -> String {
    let name = format!("{SERVICE_PREFIX}{gateway}");
    if name.len() <= MAX_LABEL && is_dns_label(&name) {
        return name;
    }
    let safe: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    hashed(&safe, gateway)
}

/// The value of the `gateway.networking.k8s.io/gateway-name` label for `gateway`: the
/// name itself when it is a valid label value (up to 63 characters), else a hashed cut.
pub fn gateway_label_value(gateway: &str) -> String {
    if gateway.len() <= MAX_LABEL {
        // A DNS subdomain is always a valid label value once short enough.
        return gateway.to_owned();
    }
    hashed(gateway, gateway)
}

/// `base` cut so that `-<hash of full>` fits in a label, without a trailing `-` or `.`.
fn hashed(base: &str, full: &str) -> String {
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Every character is ASCII here (a subdomain, or made safe above), so byte indexes
    // are character boundaries.
    let keep = MAX_LABEL - HASH_LEN - 1;
    let cut = base.get(..keep.min(base.len())).unwrap_or(base);
    let cut = cut.trim_end_matches(['-', '.']);
    format!("{cut}-{hash}")
}

/// Whether `s` is an RFC 1035 label (without the length check).
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(service_name("echo"), "portico-gateway-echo");
        assert_eq!(service_name("my-gw-2"), "portico-gateway-my-gw-2");
        assert_eq!(gateway_label_value("a.b"), "a.b");
    }

    #[test]
    fn long_names_are_cut_and_hashed_into_a_valid_label() {
        let long = "g".repeat(100);
        let name = service_name(&long);
        assert_eq!(name.len(), MAX_LABEL);
        assert!(is_dns_label(&name), "{name}");
        assert!(name.starts_with(SERVICE_PREFIX));
        // Deterministic: the same Gateway always gets the same Service.
        assert_eq!(service_name(&long), name);
        // Names differing only past the cut still differ.
        let other = format!("{}h", "g".repeat(99));
        assert_ne!(service_name(&other), name);
    }

    #[test]
    fn exactly_at_the_limit_is_not_hashed() {
        let gw = "a".repeat(MAX_LABEL - SERVICE_PREFIX.len());
        assert_eq!(service_name(&gw), format!("{SERVICE_PREFIX}{gw}"));
        let gw = "a".repeat(MAX_LABEL - SERVICE_PREFIX.len() + 1);
        let name = service_name(&gw);
        assert_eq!(name.len(), MAX_LABEL);
        assert!(is_dns_label(&name));
    }

    #[test]
    fn dots_are_replaced_and_distinguished_by_the_hash() {
        let dotted = service_name("web.example");
        let dashed = service_name("web-example");
        assert!(is_dns_label(&dotted), "{dotted}");
        assert!(dotted.starts_with("portico-gateway-web-example-"));
        assert_eq!(dashed, "portico-gateway-web-example");
        assert_ne!(dotted, dashed);
    }

    #[test]
    fn no_trailing_dash_before_the_hash() {
        // The cut falls right after a '-': it must not give "--<hash>" or end in '-'.
        let gw = format!("{}-{}", "a".repeat(37), "b".repeat(40));
        let name = service_name(&gw);
        assert!(is_dns_label(&name), "{name}");
        assert!(!name.contains("--"), "{name}");
    }

    #[test]
    fn long_label_values_are_cut() {
        let long = format!("{}.x", "n".repeat(80));
        let value = gateway_label_value(&long);
        assert_eq!(value.len(), MAX_LABEL);
        assert!(
            value
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        );
    }
}
