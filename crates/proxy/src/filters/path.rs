//! HTTPPathModifier, shared by URLRewrite and RequestRedirect.
//!
//! Gateway API (HTTPPathModifier replacePrefixMatch): "ReplacePrefixMatch specifies the
//! value with which to replace the prefix match of a request during a rewrite or
//! redirect. For example, a request to "/foo/bar" with a prefix match of "/foo" and a
//! ReplacePrefixMatch of "/xyz" would be modified to "/xyz/bar". Note that this matches
//! the behavior of the PathPrefix match type. This matches full path elements. ... When
//! specified, a trailing `/` is ignored." Its table, which the tests below restate:
//!
//! ```text
//! Request Path | Prefix Match | Replace Prefix | Modified Path
//! /foo/bar     | /foo         | /xyz           | /xyz/bar
//! /foo/bar     | /foo         | /xyz/          | /xyz/bar
//! /foo/bar     | /foo/        | /xyz           | /xyz/bar
//! /foo/bar     | /foo/        | /xyz/          | /xyz/bar
//! /foo         | /foo         | /xyz           | /xyz
//! /foo/        | /foo         | /xyz           | /xyz/
//! /foo/bar     | /foo         | <empty string> | /bar
//! /foo/        | /foo         | <empty string> | /
//! /foo         | /foo         | <empty string> | /
//! /foo/        | /foo         | /              | /
//! /foo         | /foo         | /              | /
//! ```
//!
//! So: both the prefix and the replacement lose their trailing '/', the matched prefix
//! is swapped for the replacement, and an empty result is "/".

use portico_api::config::v1 as pb;

use crate::error::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathModifier {
    Full(String),
    Prefix {
        /// The route's PathPrefix without its trailing '/'.
        prefix: String,
        /// The replacement without its trailing '/'.
        replacement: String,
    },
}

impl PathModifier {
    pub(crate) fn compile(m: &pb::PathModifier) -> Result<Self, ConfigError> {
        match &m.kind {
            Some(pb::path_modifier::Kind::ReplaceFullPath(path)) => {
                check(path, "replaceFullPath")?;
                Ok(Self::Full(path.clone()))
            }
            Some(pb::path_modifier::Kind::ReplacePrefixMatch(p)) => {
                if !p.replacement.is_empty() {
                    check(&p.replacement, "replacePrefixMatch")?;
                }
                check(&p.prefix, "path prefix")?;
                Ok(Self::Prefix {
                    prefix: p.prefix.trim_end_matches('/').to_owned(),
                    replacement: p.replacement.trim_end_matches('/').to_owned(),
                })
            }
            None => Err(ConfigError::UnspecifiedKind("path modifier")),
        }
    }

    /// The new path for `path` (without its query). A path that does not start with the
    /// prefix (the route matched it, so it does) is left as it is.
    pub(crate) fn apply(&self, path: &str) -> String {
        match self {
            Self::Full(full) => full.clone(),
            Self::Prefix {
                prefix,
                replacement,
            } => {
                let Some(rest) = path.strip_prefix(prefix.as_str()) else {
                    return path.to_owned();
                };
                // `rest` is "" or starts with '/': PathPrefix matches whole segments.
                let out = format!("{replacement}{rest}");
                if out.is_empty() { "/".to_owned() } else { out }
            }
        }
    }
}

/// A path that can go into a request target: starts with '/', no query, fragment,
/// whitespace or control characters (the translator checks the same).
fn check(path: &str, what: &'static str) -> Result<(), ConfigError> {
    let valid = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidFilterValue {
            what,
            value: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn prefix(prefix: &str, replacement: &str) -> PathModifier {
        PathModifier::compile(&pb::PathModifier {
            kind: Some(pb::path_modifier::Kind::ReplacePrefixMatch(
                pb::PrefixReplacement {
                    prefix: prefix.to_owned(),
                    replacement: replacement.to_owned(),
                },
            )),
        })
        .unwrap()
    }

    #[test]
    fn the_spec_table() {
        // (request path, prefix match, replace prefix, modified path)
        let rows = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
        ];
        for (path, p, r, want) in rows {
            assert_eq!(prefix(p, r).apply(path), want, "{path} {p} {r}");
        }
    }

    #[test]
    fn the_conformance_cases() {
        // httproute-rewrite-path and httproute-redirect-path.
        let rows = [
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/strip-prefix", "/strip-prefix", "/", "/"),
            (
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                "/prefix",
                "/prefix/one",
            ),
            (
                "/original-prefix/lemon",
                "/original-prefix",
                "/replacement-prefix",
                "/replacement-prefix/lemon",
            ),
            (
                "/path-and-host",
                "/path-and-host",
                "/replacement-prefix",
                "/replacement-prefix",
            ),
            ("/anything", "/", "/api", "/api/anything"),
        ];
        for (path, p, r, want) in rows {
            assert_eq!(prefix(p, r).apply(path), want, "{path} {p} {r}");
        }
    }

    #[test]
    fn full_path_replaces_everything() {
        let m = PathModifier::compile(&pb::PathModifier {
            kind: Some(pb::path_modifier::Kind::ReplaceFullPath("/one".to_owned())),
        })
        .unwrap();
        assert_eq!(m.apply("/full/one/two"), "/one");
    }

    #[test]
    fn unusable_paths_are_rejected() {
        for bad in ["relative", "/with space", "/q?x=1", "/frag#x"] {
            let m = pb::PathModifier {
                kind: Some(pb::path_modifier::Kind::ReplaceFullPath(bad.to_owned())),
            };
            assert!(PathModifier::compile(&m).is_err(), "{bad}");
        }
        assert!(
            PathModifier::compile(&pb::PathModifier { kind: None }).is_err(),
            "no kind"
        );
    }
}
