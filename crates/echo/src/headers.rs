//! Header spellings: Go's canonical form (what echo-basic reports) and the
//! `X-Echo-Set-Header` instruction.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Go's `textproto.CanonicalMIMEHeaderKey`, which is how echo-basic spells header names:
/// the first letter and every letter after a hyphen upper case, the rest lower case
/// (`x-forwarded-for` -> `X-Forwarded-For`). Like Go, a name holding a byte that is not
/// a token character is returned unchanged. hyper only hands us valid lowercase names,
/// so that branch is for completeness.
pub(crate) fn canonical_name(name: &str) -> String {
    if !name.bytes().all(is_token_byte) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The response headers a request asks for with `X-Echo-Set-Header`.
///
/// echo-basic's rule: every `X-Echo-Set-Header` value is a comma-separated list of
/// `Name:value` pairs; each pair sets that response header, and a name given twice
/// gets its values joined with `,`. Pairs that are not a valid header are skipped: the
/// client sees their absence, which is the useful signal for a test backend.
pub(crate) fn requested_response_headers(request: &HeaderMap, set_header: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for list in request.get_all(set_header) {
        let Ok(list) = list.to_str() else {
            tracing::debug!("ignoring a non-ASCII {set_header} value");
            continue;
        };
        for pair in list.split(',') {
            let Some((name, value)) = pair.trim().split_once(':') else {
                continue;
            };
            let Ok(name) = HeaderName::try_from(name.trim()) else {
                tracing::debug!(pair, "ignoring an invalid header name in {set_header}");
                continue;
            };
            let value = value.trim();
            let joined = match out.get(&name).map(HeaderValue::to_str) {
                Some(Ok(previous)) => format!("{previous},{value}"),
                _ => value.to_owned(),
            };
            match HeaderValue::try_from(joined) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(_) => tracing::debug!(pair, "ignoring an invalid header value in {set_header}"),
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_match_go() {
        for (input, want) in [
            ("x-forwarded-for", "X-Forwarded-For"),
            ("accept", "Accept"),
            ("user-agent", "User-Agent"),
            ("x-request-id", "X-Request-Id"),
            ("foo", "Foo"),
            ("te", "Te"),
            ("a--b", "A--B"),
            ("-x", "-X"),
            ("www-authenticate", "Www-Authenticate"),
            ("has space", "has space"),
        ] {
            assert_eq!(canonical_name(input), want, "{input}");
        }
    }

    fn request(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-echo-set-header", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn set_header_pairs_become_response_headers() {
        let got = requested_response_headers(
            &request(&["X-Foo: value1, Other-Header:Remove"]),
            "x-echo-set-header",
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got["x-foo"], "value1");
        assert_eq!(got["other-header"], "Remove");
    }

    #[test]
    fn repeated_names_are_joined_across_values() {
        let got = requested_response_headers(
            &request(&["X-Foo:a,x-foo:b", "X-Foo: c"]),
            "x-echo-set-header",
        );
        assert_eq!(got["x-foo"], "a,b,c");
        assert_eq!(got.get_all("x-foo").iter().count(), 1);
    }

    #[test]
    fn malformed_pairs_are_skipped() {
        let got = requested_response_headers(
            &request(&["no-colon, bad name:x, :empty-name, Ok:1, Empty:"]),
            "x-echo-set-header",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["ok"], "1");
        assert_eq!(got["empty"], "");
    }

    #[test]
    fn no_instruction_no_headers() {
        assert!(requested_response_headers(&HeaderMap::new(), "x-echo-set-header").is_empty());
    }
}
