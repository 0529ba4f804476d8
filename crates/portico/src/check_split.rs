//! `portico check-split URL -n N`: what the reference scenario's `check-split.sh` does
//! (and hack/check-split.sh), without curl and jq. N requests, one connection each so
//! the proxy picks a backend per request; each answer is attributed to the backend the
//! echo server names (`environment.HOSTNAME`, else `pod`), grouped by Deployment.
//!
//! ```text
//!   URL ──(--resolve host:port:addr, else DNS)──> address
//!   N × GET on a new connection (HTTPS: verified against --cacert, SNI = URL host)
//!        answer ──> echo JSON ──> pod echo-1-echo-server-fd88497d-w6sgn
//!                                 ──> backend echo-1-echo-server (Deployment name)
//!        no answer, not 2xx, not echo JSON ──> failed (first errors kept)
//!   Tally ──> table: backend, requests, share; exit 1 on any failure
//! ```
//!
//! The same [`Tally`] is what `portico connectivity probe` prints as its JSON result
//! line, so the connectivity test reads client pods' results with the same type.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conformance::http::{Outgoing, send};
use crate::conformance::tls::TlsClient;

/// Distinct errors a [`Tally`] keeps (they go into a 4 KiB termination message).
const KEPT_ERRORS: usize = 3;

/// Characters kept of one error message.
const ERROR_CHARS: usize = 240;

/// `portico check-split`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckSplitArgs {
    /// The URL to send requests to (http:// or https://; no scheme means http).
    pub url: String,
    /// How many requests.
    #[arg(short = 'n', long = "requests", default_value_t = 100)]
    pub requests: u32,
    /// A request header, Name:value (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Connect to ADDRESS for HOST:PORT, as curl --resolve (the Host header and the TLS
    /// server name stay the URL's). Repeatable.
    #[arg(long)]
    pub resolve: Vec<Resolve>,
    /// PEM CA certificate(s) an https URL's certificate must chain to.
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// How long one request may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs `check-split`: prints the table; `Ok(false)` when a request failed.
pub async fn run(args: CheckSplitArgs) -> Result<bool, SplitError> {
    let spec = TargetSpec {
        url: args.url,
        headers: args.headers,
        resolve: args.resolve,
        ca_pem: None,
    }
    .with_cacert_file(args.cacert.as_deref())?;
    let target = Target::new(&spec).await?;
    let tally = target.tally(args.requests, args.timeout).await;
    println!("{}", tally.table());
    Ok(tally.success())
}

/// What can stop a check before any request is sent.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("--resolve {0:?}: expected host:port:address")]
    Resolve(String),
    #[error("--header {0:?}: expected Name:value")]
    Header(String),
    #[error("resolving {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("--cacert {path}: {reason}")]
    CaCert { path: String, reason: String },
    #[error("TLS client: {0}")]
    Tls(String),
}

/// `--resolve host:port:address`, as curl has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for Resolve {
    type Err = SplitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SplitError::Resolve(text.to_owned());
        let (host, rest) = text.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        Ok(Self {
            host: host.to_owned(),
            port: port.parse().map_err(|_| bad())?,
            addr: addr.parse().map_err(|_| bad())?,
        })
    }
}

/// A `Name:value` request header.
pub fn parse_header(text: &str) -> Result<(String, String), SplitError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| SplitError::Header(text.to_owned()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(SplitError::Header(text.to_owned()));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Where and how to send the requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for messages.
    pub url: String,
    addr: SocketAddr,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    tls: Option<TlsClient>,
}

/// What a [`Target`] is made from (the command line's flags).
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub resolve: Vec<Resolve>,
    /// PEM CA certificates HTTPS answers must chain to (`--cacert`).
    pub ca_pem: Option<Vec<u8>>,
}

impl TargetSpec {
    /// Reads `--cacert` into [`TargetSpec::ca_pem`].
    pub fn with_cacert_file(mut self, path: Option<&Path>) -> Result<Self, SplitError> {
        if let Some(path) = path {
            let pem = std::fs::read(path).map_err(|e| SplitError::CaCert {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            self.ca_pem = Some(pem);
        }
        Ok(self)
    }
}

impl Target {
    /// Parses the URL and finds the address to connect to.
    pub async fn new(spec: &TargetSpec) -> Result<Self, SplitError> {
        let url = if spec.url.contains("://") {
            spec.url.clone()
        } else {
            format!("http://{}", spec.url)
        };
        let bad = |reason: String| SplitError::Url {
            url: spec.url.clone(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => return Err(bad(format!("scheme {other:?}: http or https"))),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host".to_owned()))?;
        let host = authority.host().to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addr = match spec
            .resolve
            .iter()
            .find(|r| r.host.eq_ignore_ascii_case(&bare_host) && r.port == port)
        {
            Some(resolve) => SocketAddr::new(resolve.addr, port),
            None => lookup(&bare_host, port).await?,
        };
        let tls = if https {
            Some(tls_client(spec.ca_pem.as_deref(), &bare_host)?)
        } else {
            None
        };
        let host_header = match authority.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self {
            url: spec.url.clone(),
            addr,
            host: host_header,
            path,
            headers: spec.headers.clone(),
            tls,
        })
    }

    /// One request on a new connection; the echo's answer as JSON.
    pub async fn fetch(&self, timeout: Duration) -> Result<Value, String> {
        let request = Outgoing {
            addr: self.addr,
            method: "GET".to_owned(),
            host: self.host.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            tls: self.tls.clone(),
        };
        let response = send(&request, timeout).await?;
        if !response.status.is_success() {
            return Err(format!(
                "status {}: {}",
                response.status,
                response.body_excerpt()
            ));
        }
        serde_json::from_slice(&response.body).map_err(|_| {
            format!(
                "the answer is not an echo server's JSON: {}",
                response.body_excerpt()
            )
        })
    }

    /// The backend that answered one request.
    pub async fn backend(&self, timeout: Duration) -> Result<String, String> {
        let report = self.fetch(timeout).await?;
        let pod = answering_pod(&report)
            .ok_or_else(|| "the answer names no pod (environment.HOSTNAME, pod)".to_owned())?;
        Ok(backend_of(pod).to_owned())
    }

    /// Sends `count` requests one after the other and counts them by backend.
    pub async fn tally(&self, count: u32, timeout: Duration) -> Tally {
        let mut tally = Tally {
            url: self.url.clone(),
            ..Tally::default()
        };
        for _ in 0..count {
            let outcome = self.backend(timeout).await;
            tally.add(outcome);
        }
        tally
    }
}

/// The pod an echo answer names.
pub fn answering_pod(report: &Value) -> Option<&str> {
    [report.pointer("/environment/HOSTNAME"), report.get("pod")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|pod| is_pod_name(pod))
}

/// Pod names are DNS labels (or subdomains).
fn is_pod_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The Deployment of a pod: `<deployment>-<replicaset hash>-<pod hash>` loses its last
/// two parts; a name with fewer parts is its own backend.
pub fn backend_of(pod: &str) -> &str {
    let mut cut = pod;
    for _ in 0..2 {
        match cut.rsplit_once('-') {
            Some((head, _)) if !head.is_empty() => cut = head,
            _ => return pod,
        }
    }
    cut
}

/// Requests counted by backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub url: String,
    pub sent: u32,
    /// Backend (Deployment) -> answers.
    pub backends: BTreeMap<String, u32>,
    pub failed: u32,
    /// The first distinct errors.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl Tally {
    /// Counts one outcome.
    pub fn add(&mut self, outcome: Result<String, String>) {
        self.sent += 1;
        match outcome {
            Ok(backend) => *self.backends.entry(backend).or_default() += 1,
            Err(error) => {
                self.failed += 1;
                let error: String = error.chars().take(ERROR_CHARS).collect();
                if self.errors.len() < KEPT_ERRORS && !self.errors.contains(&error) {
                    self.errors.push(error);
                }
            }
        }
    }

    /// Adds another tally of the same URL.
    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.failed += other.failed;
        for (backend, n) in other.backends {
            *self.backends.entry(backend).or_default() += n;
        }
        for error in other.errors {
            if self.errors.len() < KEPT_ERRORS && !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
    }

    pub fn answered(&self) -> u32 {
        self.sent - self.failed
    }

    pub fn success(&self) -> bool {
        self.sent > 0 && self.failed == 0
    }

    /// The table `check-split` prints: one row per backend, then failures.
    pub fn table(&self) -> String {
        let width = self
            .backends
            .keys()
            .map(String::len)
            .chain(["BACKEND".len(), "failed".len()])
            .max()
            .unwrap_or(0);
        let share = |n: u32| {
            if self.sent == 0 {
                0.0
            } else {
                f64::from(n) * 100.0 / f64::from(self.sent)
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>6}",
            "BACKEND", "REQUESTS", "SHARE"
        );
        for (backend, n) in &self.backends {
            let _ = writeln!(out, "{backend:width$}  {n:>8}  {:>5.1}%", share(*n));
        }
        if self.failed > 0 {
            let _ = writeln!(
                out,
                "{:width$}  {:>8}  {:>5.1}%",
                "failed",
                self.failed,
                share(self.failed)
            );
            for error in &self.errors {
                let _ = writeln!(out, "  error: {error}");
            }
        }
        let _ = write!(
            out,
            "{} requests to {}: {} answered, {} failed",
            self.sent,
            self.url,
            self.answered(),
            self.failed
        );
        out
    }
}

/// The first address of `host`.
async fn lookup(host: &str, port: u16) -> Result<SocketAddr, SplitError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let fail = |reason: String| SplitError::Lookup {
        host: host.to_owned(),
        reason,
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| fail(format!("{e} (use --resolve {host}:{port}:ADDRESS)")))?
        .next()
        .ok_or_else(|| fail("no address".to_owned()))
}

/// A TLS client that trusts the PEM certificates of `ca_pem` (else the system's roots
/// are not consulted: HTTPS needs --cacert) and sends `host` as SNI.
pub(crate) fn tls_client(ca_pem: Option<&[u8]>, host: &str) -> Result<TlsClient, SplitError> {
    let pem = ca_pem.ok_or_else(|| SplitError::Tls("an https URL needs --cacert".to_owned()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| SplitError::Tls(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| SplitError::Tls(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(SplitError::Tls(
            "no PEM certificate in the CA file".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SplitError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|e| SplitError::Tls(format!("server name {host:?}: {e}")))?;
    Ok(TlsClient {
        config: Arc::new(config),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn backends_are_deployments() {
        assert_eq!(
            backend_of("echo-1-echo-server-fd88497d-w6sgn"),
            "echo-1-echo-server"
        );
        assert_eq!(backend_of("alpha-7d4f9-abcde"), "alpha");
        assert_eq!(backend_of("solo"), "solo");
        assert_eq!(backend_of("a-b"), "a-b");
    }

    #[test]
    fn the_pod_comes_from_hostname_then_pod() {
        let both = json!({"environment": {"HOSTNAME": "a-1-2"}, "pod": "b-1-2"});
        assert_eq!(answering_pod(&both), Some("a-1-2"));
        let pod_only = json!({"pod": "b-1-2"});
        assert_eq!(answering_pod(&pod_only), Some("b-1-2"));
        let junk = json!({"environment": {"HOSTNAME": "<html>"}});
        assert_eq!(answering_pod(&junk), None);
    }

    #[test]
    fn resolve_and_header_flags() {
        let r: Resolve = "split.example.com:443:127.0.0.1".parse().unwrap();
        assert_eq!(r.host, "split.example.com");
        assert_eq!(r.port, 443);
        assert_eq!(r.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        let v6: Resolve = "h:80:[::1]".parse().unwrap();
        assert_eq!(v6.addr, "::1".parse::<IpAddr>().unwrap());
        assert!("h:80".parse::<Resolve>().is_err());
        assert!("h:x:127.0.0.1".parse::<Resolve>().is_err());
        assert_eq!(
            parse_header("version: 2").unwrap(),
            ("version".to_owned(), "2".to_owned())
        );
        assert!(parse_header("novalue").is_err());
    }

    #[test]
    fn the_table_has_counts_shares_and_failures() {
        let mut tally = Tally {
            url: "http://x/".into(),
            ..Tally::default()
        };
        for _ in 0..3 {
            tally.add(Ok("echo-1".into()));
        }
        tally.add(Err("connecting: refused".into()));
        tally.add(Err("connecting: refused".into()));
        assert_eq!((tally.sent, tally.failed, tally.answered()), (5, 2, 3));
        assert_eq!(tally.errors, vec!["connecting: refused".to_owned()]);
        assert!(!tally.success());
        let table = tally.table();
        assert!(
            table.contains("echo-1") && table.contains("60.0%"),
            "{table}"
        );
        assert!(
            table.contains("failed") && table.contains("40.0%"),
            "{table}"
        );
        assert!(table.ends_with("5 requests to http://x/: 3 answered, 2 failed"));
        let back: Tally = serde_json::from_str(&serde_json::to_string(&tally).unwrap()).unwrap();
        assert_eq!(back, tally);
    }

    #[tokio::test]
    async fn https_needs_a_ca() {
        let spec = TargetSpec {
            url: "https://127.0.0.1:1/".into(),
            ..TargetSpec::default()
        };
        let error = Target::new(&spec).await.unwrap_err();
        assert!(error.to_string().contains("--cacert"), "{error}");
    }
}
