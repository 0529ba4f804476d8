//! The URLRewrite filter: rewrites the host and path of the request before it is
//! forwarded.
//!
//! Gateway API (HTTPURLRewriteFilter): "URLRewrite defines a schema for a filter that
//! modifies a request during forwarding." hostname: "Hostname is the value to be used to
//! replace the Host header value during forwarding." path: see [`super::path`]. The
//! query string is kept.
//!
//! The host a request is for lives in the Host header (HTTP/1.1) or in the URI
//! authority (HTTP/2 `:authority`, absolute-form HTTP/1.1): both are rewritten, so that
//! the upstream side, which prefers the URI authority, forwards the new host.

use http::{HeaderValue, Uri, header, request::Parts, uri::PathAndQuery};
use portico_api::config::v1 as pb;

use super::path::PathModifier;
use crate::error::{ConfigError, RequestError};

#[derive(Debug)]
pub(crate) struct UrlRewrite {
    hostname: Option<HeaderValue>,
    path: Option<PathModifier>,
}

impl UrlRewrite {
    pub(crate) fn compile(r: &pb::UrlRewrite) -> Result<Self, ConfigError> {
        let hostname = if r.hostname.is_empty() {
            None
        } else {
            // A name for the Host header and the URI authority alike.
            http::uri::Authority::try_from(r.hostname.as_str()).map_err(|_| {
                ConfigError::InvalidFilterValue {
                    what: "rewrite hostname",
                    value: r.hostname.clone(),
                }
            })?;
            Some(HeaderValue::from_str(&r.hostname).map_err(|_| {
                ConfigError::InvalidFilterValue {
                    what: "rewrite hostname",
                    value: r.hostname.clone(),
                }
            })?)
        };
        let path = r.path.as_ref().map(PathModifier::compile).transpose()?;
        Ok(Self { hostname, path })
    }

    pub(crate) fn apply(&self, parts: &mut Parts) -> Result<(), RequestError> {
        let mut uri = parts.uri.clone().into_parts();
        if let Some(host) = &self.hostname {
            parts.headers.insert(header::HOST, host.clone());
            if uri.authority.is_some() {
                uri.authority = Some(
                    host.to_str()
                        .ok()
                        .and_then(|h| h.parse().ok())
                        .ok_or_else(|| RequestError::BadRequest("rewritten host".to_owned()))?,
                );
            }
        }
        if let Some(modifier) = &self.path {
            let path = parts.uri.path();
            let mut rewritten = modifier.apply(path);
            if let Some(query) = parts.uri.query() {
                rewritten.push('?');
                rewritten.push_str(query);
            }
            uri.path_and_query = Some(
                PathAndQuery::try_from(rewritten)
                    .map_err(|e| RequestError::BadRequest(format!("rewritten path: {e}")))?,
            );
        }
        parts.uri =
            Uri::from_parts(uri).map_err(|e| RequestError::BadRequest(format!("rewrite: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Request;

    use super::*;

    fn rewrite(hostname: &str, path: Option<pb::path_modifier::Kind>) -> UrlRewrite {
        UrlRewrite::compile(&pb::UrlRewrite {
            hostname: hostname.to_owned(),
            path: path.map(|kind| pb::PathModifier { kind: Some(kind) }),
        })
        .unwrap()
    }

    fn parts(uri: &str, host: &str) -> Parts {
        Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn host_and_prefix_keep_the_query() {
        let r = rewrite(
            "one.example.org",
            Some(pb::path_modifier::Kind::ReplacePrefixMatch(
                pb::PrefixReplacement {
                    prefix: "/prefix/one".to_owned(),
                    replacement: "/one".to_owned(),
                },
            )),
        );
        let mut p = parts("/prefix/one/two?x=1&y", "rewrite.example");
        r.apply(&mut p).unwrap();
        assert_eq!(p.uri, "/one/two?x=1&y");
        assert_eq!(p.headers["host"], "one.example.org");
    }

    #[test]
    fn an_http2_authority_is_rewritten_too() {
        let r = rewrite("example.org", None);
        let mut p = parts("http://rewrite.example:8080/path", "rewrite.example:8080");
        r.apply(&mut p).unwrap();
        assert_eq!(p.uri, "http://example.org/path");
        assert_eq!(p.headers["host"], "example.org");
    }

    #[test]
    fn full_path() {
        let r = rewrite(
            "",
            Some(pb::path_modifier::Kind::ReplaceFullPath("/test".to_owned())),
        );
        let mut p = parts("/full/rewrite-path-and-modify-headers/test", "h");
        r.apply(&mut p).unwrap();
        assert_eq!(p.uri, "/test");
        assert_eq!(p.headers["host"], "h");
    }

    #[test]
    fn bad_hostname_is_rejected() {
        let bad = pb::UrlRewrite {
            hostname: "bad host".to_owned(),
            path: None,
        };
        assert!(UrlRewrite::compile(&bad).is_err());
    }
}
