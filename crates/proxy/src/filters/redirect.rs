//! The RequestRedirect filter: answers with a redirect instead of forwarding.
//!
//! Gateway API (HTTPRequestRedirectFilter):
//! - scheme: "When empty, the scheme of the request is used."
//! - hostname: "When empty, the hostname in the `Host` header of the request is used."
//! - path: "The modified path is then used to construct the `Location` header. When
//!   empty, the request path is used as-is." (The query string is kept too.)
//! - port: "If no port is specified, the redirect port MUST be derived using the
//!   following rules: If redirect scheme is not-empty, the redirect port MUST be the
//!   well-known port associated with the redirect scheme. Specifically "http" to port 80
//!   and "https" to port 443. ... If redirect scheme is empty, the redirect port MUST be
//!   the Gateway Listener port." and "Implementations SHOULD NOT add the port number in
//!   the 'Location' header in the following cases: A Location header that will use HTTP
//!   (whether that is determined via the Listener protocol or the Scheme field) _and_ use
//!   port 80. A Location header that will use HTTPS (...) _and_ use port 443."
//! - statusCode: 301, 302, 303, 307 or 308 (the translator fills in the default, 302).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Empty};
use portico_api::config::v1 as pb;

use super::{Downstream, path::PathModifier};
use crate::{error::ConfigError, table::host_of, upstream::ProxyBody};

#[derive(Debug)]
pub(crate) struct Redirect {
    scheme: Option<&'static str>,
    hostname: Option<String>,
    port: Option<u16>,
    path: Option<PathModifier>,
    status: StatusCode,
}

impl Redirect {
    pub(crate) fn compile(r: &pb::RequestRedirect) -> Result<Self, ConfigError> {
        let invalid = |what, value: String| ConfigError::InvalidFilterValue { what, value };
        let scheme = match r.scheme.as_str() {
            "" => None,
            "http" => Some("http"),
            "https" => Some("https"),
            other => return Err(invalid("redirect scheme", other.to_owned())),
        };
        let status = match r.status_code {
            301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(r.status_code as u16)
                .map_err(|_| invalid("redirect status", r.status_code.to_string()))?,
            other => return Err(invalid("redirect status", other.to_string())),
        };
        let port = match r.port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| invalid("redirect port", p.to_string()))?),
        };
        let hostname = if r.hostname.is_empty() {
            None
        } else {
            http::uri::Authority::try_from(r.hostname.as_str())
                .map_err(|_| invalid("redirect hostname", r.hostname.clone()))?;
            Some(r.hostname.clone())
        };
        let path = r.path.as_ref().map(PathModifier::compile).transpose()?;
        Ok(Self {
            scheme,
            hostname,
            port,
            path,
            status,
        })
    }

    /// The `Location` for a request that came in on `downstream`.
    pub(crate) fn location(&self, parts: &Parts, downstream: &Downstream) -> String {
        let scheme = self.scheme.unwrap_or(downstream.scheme);
        let host = match &self.hostname {
            Some(h) => h.clone(),
            None => host_of(&parts.uri, &parts.headers),
        };
        let port = match (self.port, self.scheme) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, Some(_)) => 80,
            (None, None) => downstream.port,
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = match &self.path {
            Some(m) => m.apply(parts.uri.path()),
            None => parts.uri.path().to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if !default_port {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(&path);
        if let Some(query) = parts.uri.query() {
            location.push('?');
            location.push_str(query);
        }
        location
    }

    pub(crate) fn respond(&self, parts: &Parts, downstream: &Downstream) -> Response<ProxyBody> {
        let location = self.location(parts, downstream);
        let mut response = Response::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status;
        // Built from a validated config and a request that parsed: a valid value.
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Request;

    use super::*;

    fn redirect(scheme: &str, hostname: &str, port: u32, status: u32) -> Redirect {
        Redirect::compile(&pb::RequestRedirect {
            scheme: scheme.to_owned(),
            hostname: hostname.to_owned(),
            port,
            path: None,
            status_code: status,
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

    const HTTP_80: Downstream = Downstream {
        scheme: "http",
        port: 80,
    };
    const HTTP_8080: Downstream = Downstream {
        scheme: "http",
        port: 8080,
    };
    const HTTPS_443: Downstream = Downstream {
        scheme: "https",
        port: 443,
    };

    /// httproute-redirect-port-and-scheme, row by row: (listener, scheme, port, Location).
    #[test]
    fn port_and_scheme_rules() {
        let rows = [
            (HTTP_80, "", 0, "http://example.org/p"),
            (HTTP_80, "", 80, "http://example.org/p"),
            (HTTP_80, "", 8080, "http://example.org:8080/p"),
            (HTTP_80, "https", 0, "https://example.org/p"),
            (HTTP_80, "https", 443, "https://example.org/p"),
            (HTTP_80, "https", 8443, "https://example.org:8443/p"),
            (HTTP_8080, "", 0, "http://example.org:8080/p"),
            (HTTP_8080, "", 80, "http://example.org/p"),
            (HTTP_8080, "https", 0, "https://example.org/p"),
            (HTTPS_443, "", 0, "https://example.org/p"),
            (HTTPS_443, "", 443, "https://example.org/p"),
            (HTTPS_443, "", 8443, "https://example.org:8443/p"),
            (HTTPS_443, "http", 0, "http://example.org/p"),
            (HTTPS_443, "http", 80, "http://example.org/p"),
            (HTTPS_443, "http", 8080, "http://example.org:8080/p"),
        ];
        for (down, scheme, port, want) in rows {
            let r = redirect(scheme, "example.org", port, 302);
            assert_eq!(
                r.location(&parts("/p", "gateway:80"), &down),
                want,
                "{} {}: {scheme:?} {port}",
                down.scheme,
                down.port
            );
        }
    }

    #[test]
    fn host_comes_from_the_request_without_its_port() {
        let r = redirect("https", "", 0, 301);
        let response = r.respond(&parts("/scheme?x=1", "Gateway.Example:8080"), &HTTP_8080);
        assert_eq!(response.status(), 301);
        assert_eq!(
            response.headers()["location"],
            "https://gateway.example/scheme?x=1"
        );
        // The port rule also applies to a host taken from the request.
        let r = redirect("", "", 8083, 302);
        assert_eq!(
            r.location(&parts("/port", "1.2.3.4:80"), &HTTP_80),
            "http://1.2.3.4:8083/port"
        );
    }

    #[test]
    fn path_modifiers() {
        let r = Redirect::compile(&pb::RequestRedirect {
            path: Some(pb::PathModifier {
                kind: Some(pb::path_modifier::Kind::ReplacePrefixMatch(
                    pb::PrefixReplacement {
                        prefix: "/original-prefix".to_owned(),
                        replacement: "/replacement-prefix".to_owned(),
                    },
                )),
            }),
            status_code: 302,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.location(&parts("/original-prefix/lemon", "gw"), &HTTP_80),
            "http://gw/replacement-prefix/lemon"
        );
    }

    #[test]
    fn every_status_the_api_allows_and_no_other() {
        for code in [301, 302, 303, 307, 308] {
            assert_eq!(redirect("", "", 0, code).status.as_u16() as u32, code);
        }
        for bad in [0, 200, 304, 999] {
            assert!(
                Redirect::compile(&pb::RequestRedirect {
                    status_code: bad,
                    ..Default::default()
                })
                .is_err(),
                "{bad}"
            );
        }
    }
}
