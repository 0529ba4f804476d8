//! Names of the copies and of their source labels.
//!
//! A copy of Secret `<namespace>/<name>` is called `<namespace>-<name>` (as Cilium
//! names its copies, so that users find them). That name is a valid Secret name (a DNS
//! subdomain) whenever it fits in 253 characters, because both parts are. Two sources
//! can map to the same plain name (`a-b/c` and `a/b-c`), and a long one may not fit: the
//! copy is then `<prefix>-<hash>`, the hash taken over the source's `namespace/name` so
//! it is stable across restarts. Which source a copy belongs to is never read back from
//! its name: the `portico.dev/source` annotation says it.

use sha2::{Digest, Sha256};

/// Longest Secret name (DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest label value.
const MAX_LABEL_VALUE: usize = 63;
/// Hex digits of the hash suffix.
const HASH_LEN: usize = 10;

/// `<namespace>-<name>`, or `None` when that is too long for a Secret name.
pub fn plain_name(namespace: &str, name: &str) -> Option<String> {
    let plain = format!("{namespace}-{name}");
    (plain.len() <= MAX_NAME).then_some(plain)
}

/// `<namespace>-<name>` cut short to leave room for `-<hash of namespace/name>`: the name
/// used when the plain one is too long or taken.
pub fn hashed_name(namespace: &str, name: &str) -> String {
    shortened(&format!("{namespace}-{name}"), namespace, name, MAX_NAME)
}

/// The value of the source-name label: the name itself when it is a valid label value,
/// else shortened with a hash (the annotation holds it whole).
pub fn label_value(namespace: &str, name: &str) -> String {
    let valid = name.len() <= MAX_LABEL_VALUE
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if valid {
        name.to_owned()
    } else {
        shortened(name, namespace, name, MAX_LABEL_VALUE)
    }
}

/// `text` cut to `max - 1 - HASH_LEN` characters (without a trailing `-` or `.`, which
/// neither names nor label values may end with before the dash), then `-<hash>`.
fn shortened(text: &str, namespace: &str, name: &str, max: usize) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_LEN)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let keep = max - 1 - HASH_LEN;
    // Source names are ASCII (DNS subdomains); cutting on a char boundary anyway.
    let mut prefix: String = text.chars().take(keep).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_their_limit() {
        assert_eq!(
            plain_name("apps", "web-cert").as_deref(),
            Some("apps-web-cert")
        );
        let long = "a".repeat(250);
        assert_eq!(plain_name("apps", &long), None);
        let hashed = hashed_name("apps", &long);
        assert_eq!(hashed.len(), 253);
        assert!(hashed.starts_with("apps-aaa"));
        // Stable, and different for sources whose plain names collide.
        assert_eq!(hashed, hashed_name("apps", &long));
        assert_ne!(hashed_name("a-b", "c"), hashed_name("a", "b-c"));
        assert_eq!(plain_name("a-b", "c"), plain_name("a", "b-c"));
    }

    #[test]
    fn label_values_fit() {
        assert_eq!(label_value("apps", "web-cert"), "web-cert");
        let long = format!("{}.example.com", "x".repeat(70));
        let v = label_value("apps", &long);
        assert_eq!(v.len(), 63);
        assert!(v.starts_with("xxx"));
        assert_ne!(v, label_value("other", &long));
        // A prefix ending in '.' or '-' is trimmed before the hash.
        let dotted = format!("{}.{}", "y".repeat(51), "z".repeat(20));
        assert!(!label_value("apps", &dotted).contains(".-"));
    }
}
