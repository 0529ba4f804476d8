//! Path normalisation: the one form of a request path that routes match and backends
//! receive, so that `/public/../admin` cannot match `PathPrefix /public` and then be
//! served as `/admin` by a backend that resolves dot segments itself.
//!
//! The rule (docs/security.md), in order, on the path of an origin-form target (the
//! query is left alone):
//! 1. percent-encoded *unreserved* characters (RFC 3986 section 2.3: `A-Z a-z 0-9 - . _
//!    ~`) are decoded and every other escape's hex digits are upper-cased (section
//!    6.2.2); so `%2e%2e` is `..` from here on, while `%2F` (and `%5C`, `%00`, ...)
//!    stay encoded and are never a path separator;
//! 2. runs of `/` are merged into one (Envoy's `merge_slashes`);
//! 3. dot segments are removed (RFC 3986 section 5.2.4, Envoy's `normalize_path`): `.`
//!    goes, `..` removes the segment before it and never climbs above the root.
//!
//! A path that is not origin form (`*`, or a CONNECT authority) is left as it is.

use std::borrow::Cow;

/// The normalised form of `path`, borrowed when it is already normal.
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || is_normal(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    // Whether the path ends in a directory (a trailing `/`, `.` or `..`).
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            // An empty segment is a doubled `/` (merged) or the final one (kept).
            "" => trailing_slash = i == last,
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || normal.is_empty() {
        normal.push('/');
    }
    Cow::Owned(normal)
}

/// Fast path: no escape, no doubled slash, no dot segment.
fn is_normal(path: &str) -> bool {
    !path.contains('%')
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        // The path of a parsed `Uri` is ASCII; a stray byte is copied as it is.
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "*"] {
            assert!(matches!(normalize(p), std::borrow::Cow::Borrowed(_)), "{p}");
            assert_eq!(normalize(p), p);
        }
    }

    #[test]
    fn the_rule() {
        for (given, want) in [
            ("//admin", "/admin"),
            ("/public//x///y", "/public/x/y"),
            ("/./admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/%61dmin", "/admin"),
            ("/public%2F..%2Fadmin", "/public%2F..%2Fadmin"),
            ("/public/%2f", "/public/%2F"),
            ("/a%20b", "/a%20b"),
            ("/a%3a", "/a%3A"),
            ("/x/%7e", "/x/~"),
            ("/bad%zz/..", "/"),
        ] {
            assert_eq!(normalize(given), want, "{given}");
        }
    }
}
