//! The answer: what the echo server saw, in the shapes its readers expect (see the crate
//! docs for the picture). Building it is a pure function of the request head, a summary
//! of the body, the peer address and the server's [`Identity`], so it is tested without
//! sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::request::Parts;
use http::{HeaderMap, Version, header};
use serde::{Deserialize, Serialize};

use crate::config::Identity;
use crate::headers::canonical_name;

/// The request header that asks for response headers (echo-basic's name for it).
pub const SET_HEADER: &str = "x-echo-set-header";

/// Bodies up to this size that are valid UTF-8 are echoed in `request.body`; larger ones
/// are only counted, so answers stay small whatever the client sends.
pub(crate) const MAX_ECHOED_BODY: usize = 4096;

/// One answer. Serialized as the response body; clients may deserialize it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReport {
    /// Request URI as received, query included (echo-basic's `RequestURI`).
    pub path: String,
    /// Host header on HTTP/1, `:authority` on HTTP/2.
    pub host: String,
    pub method: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`, spelled as Go does.
    pub proto: String,
    /// Canonical header name -> every value received, in order; without `Host`, as Go
    /// moves it out of the header map.
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    /// TLS server name; always empty because this server speaks no TLS. Kept so readers
    /// written for echo-basic find the field.
    #[serde(default)]
    pub sni: String,
    /// Peer of the TCP connection: the proxy when there is one.
    pub remote_addr: String,
    pub environment: Environment,
    pub request: RequestView,
    pub http: HttpView,
}

/// echo-server's `environment`: that image dumps its whole process environment; this
/// one reports only the names, so nothing secret leaks into answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Environment {
    /// The pod name, as in a pod's own environment.
    pub hostname: String,
    pub pod_name: String,
    pub namespace: String,
    pub service_name: String,
}

/// echo-server's `request` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// Path without the query.
    pub path: String,
    pub method: String,
    /// Decoded query parameters; a name given several times maps to a list.
    pub query: BTreeMap<String, QueryValue>,
    /// Lowercase header name -> values joined with `", "`, `host` included.
    pub headers: BTreeMap<String, String>,
    /// Bytes of request body received.
    pub body_length: u64,
    /// The body itself when it is at most 4 KiB of UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A query parameter seen once or several times (`?a=1&a=2` gives `["1", "2"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    One(String),
    Many(Vec<String>),
}

/// echo-server's `http` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpView {
    pub method: String,
    pub base_url: String,
    pub original_url: String,
    /// `http`: this server has no TLS.
    pub protocol: String,
}

/// What was read of the request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BodySummary {
    pub(crate) length: u64,
    /// The first [`MAX_ECHOED_BODY`] bytes.
    pub(crate) head: Vec<u8>,
}

impl BodySummary {
    pub(crate) fn add(&mut self, chunk: &[u8]) {
        self.length += chunk.len() as u64;
        let room = MAX_ECHOED_BODY.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    fn echoed(&self) -> Option<String> {
        let complete = self.length == self.head.len() as u64;
        (complete && !self.head.is_empty())
            .then(|| String::from_utf8(self.head.clone()).ok())
            .flatten()
    }
}

impl EchoReport {
    pub(crate) fn describe(
        head: &Parts,
        body: &BodySummary,
        remote: SocketAddr,
        identity: &Identity,
    ) -> Self {
        let uri = &head.uri;
        let request_uri = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let host = host_of(head);
        let method = head.method.as_str().to_owned();
        Self {
            path: request_uri.clone(),
            host: host.clone(),
            method: method.clone(),
            proto: proto(head.version).to_owned(),
            headers: canonical_headers(&head.headers),
            namespace: identity.namespace.clone(),
            ingress: identity.ingress.clone(),
            service: identity.service.clone(),
            pod: identity.pod.clone(),
            sni: String::new(),
            remote_addr: remote.to_string(),
            environment: Environment {
                hostname: identity.pod.clone(),
                pod_name: identity.pod.clone(),
                namespace: identity.namespace.clone(),
                service_name: identity.service.clone(),
            },
            request: RequestView {
                path: uri.path().to_owned(),
                method: method.clone(),
                query: query(uri.query().unwrap_or("")),
                headers: joined_headers(&head.headers, &host),
                body_length: body.length,
                body: body.echoed(),
            },
            http: HttpView {
                method,
                base_url: String::new(),
                original_url: request_uri,
                protocol: "http".to_owned(),
            },
        }
    }
}

/// The host the client asked for. HTTP/2 carries it in `:authority` (hyper puts it in
/// the URI) and a Host header there is only a fallback; HTTP/1 the other way round.
fn host_of(head: &Parts) -> String {
    let header = head
        .headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let authority = head.uri.authority().map(|a| a.as_str().to_owned());
    let (first, second) = if head.version == Version::HTTP_2 {
        (authority, header)
    } else {
        (header, authority)
    };
    first.or(second).unwrap_or_default()
}

fn proto(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn canonical_headers(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if name == header::HOST {
            continue;
        }
        out.entry(canonical_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// Lowercase names with values joined by `", "` (how Node reports repeated headers).
/// `host` is always there, taken from `:authority` on HTTP/2, so
/// `jq .request.headers.host` works for both protocols.
fn joined_headers(headers: &HeaderMap, host: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    if !host.is_empty() {
        out.entry(header::HOST.as_str().to_owned())
            .or_insert_with(|| host.to_owned());
    }
    out
}

fn query(raw: &str) -> BTreeMap<String, QueryValue> {
    let mut out: BTreeMap<String, QueryValue> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let value = value.into_owned();
        match out.remove(name.as_ref()) {
            None => out.insert(name.into_owned(), QueryValue::One(value)),
            Some(QueryValue::One(first)) => {
                out.insert(name.into_owned(), QueryValue::Many(vec![first, value]))
            }
            Some(QueryValue::Many(mut all)) => {
                all.push(value);
                out.insert(name.into_owned(), QueryValue::Many(all))
            }
        };
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            pod: "echo-1-echo-server-fd88497d-w6sgn".into(),
            namespace: "echo".into(),
            service: "echo-1-echo-server".into(),
            ingress: String::new(),
        }
    }

    fn remote() -> SocketAddr {
        "10.0.0.7:41000".parse().unwrap()
    }

    fn head(request: http::Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn http1_request_in_both_shapes() {
        let head = head(
            http::Request::get("/req-header-add?x=1&y=a%20b&x=2")
                .header("host", "echo.example.com")
                .header("foo", "bar")
                .header("x-forwarded-for", "81.220.234.254")
                .header("accept", "text/html")
                .header("accept", "*/*")
                .body(())
                .unwrap(),
        );
        let report = EchoReport::describe(&head, &BodySummary::default(), remote(), &identity());

        assert_eq!(report.path, "/req-header-add?x=1&y=a%20b&x=2");
        assert_eq!(report.host, "echo.example.com");
        assert_eq!(report.method, "GET");
        assert_eq!(report.proto, "HTTP/1.1");
        assert_eq!(report.headers["X-Forwarded-For"], ["81.220.234.254"]);
        assert_eq!(report.headers["Accept"], ["text/html", "*/*"]);
        assert!(
            !report.headers.contains_key("Host"),
            "Go moves Host out of the map"
        );
        assert_eq!(report.pod, "echo-1-echo-server-fd88497d-w6sgn");
        assert_eq!(report.service, "echo-1-echo-server");
        assert_eq!(report.namespace, "echo");
        assert_eq!(report.remote_addr, "10.0.0.7:41000");

        assert_eq!(report.environment.hostname, report.pod);
        assert_eq!(report.request.path, "/req-header-add");
        assert_eq!(report.request.headers["host"], "echo.example.com");
        assert_eq!(report.request.headers["foo"], "bar");
        assert_eq!(report.request.headers["accept"], "text/html, */*");
        assert_eq!(
            report.request.query["x"],
            QueryValue::Many(vec!["1".into(), "2".into()])
        );
        assert_eq!(report.request.query["y"], QueryValue::One("a b".into()));
        assert_eq!(report.http.original_url, report.path);
    }

    #[test]
    fn json_keys_are_the_ones_readers_use() {
        let head = head(
            http::Request::post("/")
                .header("host", "h")
                .body(())
                .unwrap(),
        );
        let mut body = BodySummary::default();
        body.add(b"{\"a\":1}");
        let json = serde_json::to_value(EchoReport::describe(&head, &body, remote(), &identity()))
            .unwrap();

        // `jq -r .environment.HOSTNAME` in the reference scenario's check-split.sh.
        assert_eq!(
            json["environment"]["HOSTNAME"],
            "echo-1-echo-server-fd88497d-w6sgn"
        );
        assert_eq!(json["environment"]["SERVICE_NAME"], "echo-1-echo-server");
        assert_eq!(json["request"]["headers"]["host"], "h");
        assert_eq!(json["request"]["bodyLength"], 7);
        assert_eq!(json["request"]["body"], "{\"a\":1}");
        assert_eq!(json["http"]["originalUrl"], "/");
        for key in [
            "path",
            "host",
            "method",
            "proto",
            "headers",
            "namespace",
            "ingress",
            "service",
            "pod",
            "sni",
        ] {
            assert!(json.get(key).is_some(), "echo-basic field {key} missing");
        }
    }

    #[test]
    fn http2_host_comes_from_authority() {
        let mut head = head(
            http::Request::get("http://foo.example.com/a?b")
                .header("host", "ignored.example.com")
                .body(())
                .unwrap(),
        );
        head.version = Version::HTTP_2;
        let report = EchoReport::describe(&head, &BodySummary::default(), remote(), &identity());
        assert_eq!(report.host, "foo.example.com");
        assert_eq!(report.proto, "HTTP/2.0");
        assert_eq!(report.path, "/a?b");

        head.headers.clear();
        let report = EchoReport::describe(&head, &BodySummary::default(), remote(), &identity());
        assert_eq!(report.request.headers["host"], "foo.example.com");
    }

    #[test]
    fn large_or_binary_bodies_are_counted_not_echoed() {
        let mut body = BodySummary::default();
        for _ in 0..3 {
            body.add(&[b'x'; MAX_ECHOED_BODY / 2]);
        }
        assert_eq!(body.length, 3 * (MAX_ECHOED_BODY as u64 / 2));
        assert_eq!(body.head.len(), MAX_ECHOED_BODY);
        assert_eq!(body.echoed(), None);

        let mut binary = BodySummary::default();
        binary.add(&[0xff, 0xfe]);
        assert_eq!(binary.echoed(), None);

        let mut exact = BodySummary::default();
        exact.add(&[b'y'; MAX_ECHOED_BODY]);
        assert_eq!(exact.echoed().map(|s| s.len()), Some(MAX_ECHOED_BODY));
    }

    #[test]
    fn report_round_trips_through_json() {
        let head = head(http::Request::get("/").body(()).unwrap());
        let report = EchoReport::describe(&head, &BodySummary::default(), remote(), &identity());
        let back: EchoReport =
            serde_json::from_slice(&serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }
}
