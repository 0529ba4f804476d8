//! The one rule for hostname patterns, shared by the translator (which rejects a route
//! carrying a bad one) and the proxy (which refuses such a config): whatever the
//! translator emits, the proxy accepts.

/// Whether `pattern` is a hostname pattern the proxy serves: `""` (any host), an exact
/// name, or `*.` followed by a name. A name is labels of ASCII letters, digits, '-' and
/// '_' (the latter shows up in real service names) joined by dots, no empty label, no
/// further '*'. Case does not matter.
pub fn is_valid_pattern(pattern: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::is_valid_pattern;

    #[test]
    fn names_and_wildcards_pass_everything_else_fails() {
        for good in [
            "",
            "example.com",
            "*.example.com",
            "Foo-1.example.COM",
            "my_svc",
        ] {
            assert!(is_valid_pattern(good), "{good:?}");
        }
        // The last one is what the route_match fuzz target found: the translator passed
        // it, the proxy refused the whole config.
        for bad in ["*", "*.", ".", "a..b", "a.*.b", "**.a", "a b", "a/b", "|"] {
            assert!(!is_valid_pattern(bad), "{bad:?}");
        }
    }
}
