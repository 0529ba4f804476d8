//! `portico-proxy`'s flags, each with an environment variable (the DaemonSet sets those).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use portico_api::logging::LogFormat;

use crate::client::stream::{StreamConfig, StreamTls};
use crate::options::{LimitArgs, ProxyOptions};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "portico-proxy",
    version,
    about = "Portico's data plane: serves the config the operator streams to it"
)]
pub struct Args {
    /// The operator's config server: https://HOST:PORT (http:// only with --insecure).
    #[arg(long, env = "PORTICO_OPERATOR")]
    pub operator: String,

    /// This proxy's name in the operator's records (the node or pod name); HOSTNAME
    /// when unset.
    #[arg(long, env = "PORTICO_NODE")]
    pub node: Option<String>,

    /// A Gateway to serve, "<namespace>/<name>"; repeat the flag (or separate with
    /// commas) for several. Every Gateway of Portico's classes when unset.
    #[arg(long = "gateway", env = "PORTICO_GATEWAYS", value_delimiter = ',')]
    pub gateways: Vec<String>,

    /// PEM file of the CA that signed the operator's certificate.
    #[arg(long, env = "PORTICO_CA")]
    pub ca: Option<PathBuf>,

    /// PEM certificate chain to present to the operator (mTLS), with --key.
    #[arg(long, env = "PORTICO_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, env = "PORTICO_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// The name the operator's certificate must carry, when it is not the URL's host.
    #[arg(long, env = "PORTICO_SERVER_NAME")]
    pub server_name: Option<String>,

    /// Talk to the operator in plaintext (http://). For local runs only.
    #[arg(long, env = "PORTICO_INSECURE")]
    pub insecure: bool,

    /// Health and readiness endpoint (/healthz, /readyz).
    #[arg(long, env = "PORTICO_ADMIN", default_value = "0.0.0.0:9902")]
    pub admin: SocketAddr,

    /// Export the spans of sampled requests (the client's traceparent has the sampled
    /// flag) to this OpenTelemetry collector, OTLP over HTTP with JSON, at
    /// `<endpoint>/v1/traces` (e.g. `http://otel-collector:4318`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,

    /// The share of requests without a valid `traceparent` whose new trace the proxy
    /// samples (flag 01, span exported to --otlp-endpoint), from 0 (none) to 1 (all).
    /// Requests with one keep the client's decision. No effect without --otlp-endpoint.
    #[arg(long, env = "PORTICO_TRACE_SAMPLE_RATIO", default_value_t = 0.0, value_parser = sample_ratio)]
    pub trace_sample_ratio: f64,

    /// Bind every listener on an ephemeral port instead of the configured one (local
    /// runs where ports 80/443 are taken or privileged).
    #[arg(long, env = "PORTICO_EPHEMERAL_PORTS")]
    pub ephemeral_ports: bool,

    /// How long connecting to the operator may take.
    #[arg(long, env = "PORTICO_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// The longest wait between two attempts to reach the operator (the first waits
    /// 200ms, then it doubles, with jitter).
    #[arg(long, env = "PORTICO_RECONNECT_MAX", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reconnect_max: Duration,

    /// How long requests in flight may run after SIGTERM or a listener's removal.
    #[arg(long, env = "PORTICO_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Limits on what clients may send and hold (docs/security.md); `portico standalone`
    /// takes the same flags.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "PORTICO_LOG", default_value = "info")]
    pub log: String,

    /// Log line format: text or json. The access log (target portico::access) is JSON
    /// lines on stdout either way; `--log 'info,portico::access=off'` turns it off.
    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// The first reconnect delay.
const RECONNECT_INITIAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("--operator {0:?}: https:// needs --ca; plaintext http:// needs --insecure")]
    Scheme(String),
    #[error("--operator {0:?} must start with https:// or http://")]
    NoScheme(String),
    #[error("--insecure with --ca/--cert: pick one")]
    InsecureWithTls,
    #[error("--gateway {0:?} is not \"<namespace>/<name>\"")]
    Gateway(String),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Args {
    /// The stream config, with the PEM files read: checked before any port is bound.
    pub fn stream_config(&self) -> Result<StreamConfig, ArgsError> {
        let https = self.operator.starts_with("https://");
        let http = self.operator.starts_with("http://");
        if !https && !http {
            return Err(ArgsError::NoScheme(self.operator.clone()));
        }
        if self.insecure && (self.ca.is_some() || self.cert.is_some()) {
            return Err(ArgsError::InsecureWithTls);
        }
        if (http && !self.insecure) || (https && self.ca.is_none()) {
            return Err(ArgsError::Scheme(self.operator.clone()));
        }
        for g in &self.gateways {
            let ok = g
                .split_once('/')
                .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'));
            if !ok {
                return Err(ArgsError::Gateway(g.clone()));
            }
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ArgsError::Read {
                path: path.clone(),
                source,
            })
        };
        let tls = match &self.ca {
            None => None,
            Some(ca) => Some(StreamTls {
                ca_pem: read(ca)?,
                identity: match (&self.cert, &self.key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
                server_name: self.server_name.clone(),
            }),
        };
        Ok(StreamConfig {
            operator: self.operator.clone(),
            node: self.node(),
            gateways: self.gateways.clone(),
            tls,
            connect_timeout: self.connect_timeout,
            reconnect_initial: RECONNECT_INITIAL.min(self.reconnect_max),
            reconnect_max: self.reconnect_max,
        })
    }

    /// The configured node name, else the host (pod) name, else one from the process id.
    pub fn node(&self) -> String {
        self.node
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("portico-proxy-{}", std::process::id()))
    }

    /// The data plane's options: a listener that cannot bind rejects the config (a NACK)
    /// rather than serving without it.
    pub fn proxy_options(&self) -> ProxyOptions {
        self.limits.apply(ProxyOptions {
            drain_timeout: self.drain_timeout,
            ephemeral_ports: self.ephemeral_ports,
            reject_unbindable: true,
            otlp_endpoint: self.otlp_endpoint.clone(),
            trace_sample_ratio: self.trace_sample_ratio,
            ..ProxyOptions::default()
        })
    }
}

/// A ratio from 0 to 1.
fn sample_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Args {
        Args::parse_from(std::iter::once("portico-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn plaintext_needs_insecure_and_tls_needs_a_ca() {
        let plain = parse(&["--operator", "http://op:18000", "--node", "n"]);
        assert!(matches!(plain.stream_config(), Err(ArgsError::Scheme(_))));
        let plain = parse(&["--operator", "http://op:18000", "--node", "n", "--insecure"]);
        let config = plain.stream_config().unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.node, "n");
        let tls = parse(&["--operator", "https://op:18000"]);
        assert!(matches!(tls.stream_config(), Err(ArgsError::Scheme(_))));
        let bare = parse(&["--operator", "op:18000", "--insecure"]);
        assert!(matches!(bare.stream_config(), Err(ArgsError::NoScheme(_))));
    }

    #[test]
    fn limit_flags_reach_the_proxy_options() {
        let defaults = parse(&["--operator", "http://op:1", "--insecure"]).proxy_options();
        assert_eq!(
            defaults.max_header_bytes,
            ProxyOptions::default().max_header_bytes
        );
        assert_eq!(defaults.xff_num_trusted_hops, 0);
        assert_eq!(defaults.max_request_body_bytes, None);
        let set = parse(&[
            "--operator",
            "http://op:1",
            "--insecure",
            "--max-header-bytes",
            "9000",
            "--max-uri-bytes",
            "100",
            "--max-request-body-bytes",
            "1000",
            "--max-connections",
            "7",
            "--request-header-timeout",
            "3s",
            "--xff-num-trusted-hops",
            "2",
        ])
        .proxy_options();
        assert_eq!(set.max_header_bytes, 9000);
        assert_eq!(set.max_uri_bytes, 100);
        assert_eq!(set.max_request_body_bytes, Some(1000));
        assert_eq!(set.max_connections, 7);
        assert_eq!(set.request_header_timeout, Duration::from_secs(3));
        assert_eq!(set.xff_num_trusted_hops, 2);
    }

    #[test]
    fn gateways_are_namespaced_names() {
        let args = parse(&[
            "--operator",
            "http://op:1",
            "--insecure",
            "--gateway",
            "a/gw,b/other",
            "--gateway",
            "c/third",
        ]);
        assert_eq!(
            args.stream_config().unwrap().gateways,
            ["a/gw", "b/other", "c/third"]
        );
        let bad = parse(&["--operator", "http://op:1", "--insecure", "--gateway", "gw"]);
        assert!(matches!(bad.stream_config(), Err(ArgsError::Gateway(_))));
    }

    #[test]
    fn help_documents_every_flag_with_its_env_variable() {
        let help = Args::command().render_long_help().to_string();
        for (flag, env) in [
            ("--operator", "PORTICO_OPERATOR"),
            ("--node", "PORTICO_NODE"),
            ("--gateway", "PORTICO_GATEWAYS"),
            ("--ca", "PORTICO_CA"),
            ("--cert", "PORTICO_CERT"),
            ("--key", "PORTICO_KEY"),
            ("--server-name", "PORTICO_SERVER_NAME"),
            ("--insecure", "PORTICO_INSECURE"),
            ("--admin", "PORTICO_ADMIN"),
            ("--ephemeral-ports", "PORTICO_EPHEMERAL_PORTS"),
            ("--connect-timeout", "PORTICO_CONNECT_TIMEOUT"),
            ("--reconnect-max", "PORTICO_RECONNECT_MAX"),
            ("--drain-timeout", "PORTICO_DRAIN_TIMEOUT"),
            ("--max-header-bytes", "PORTICO_MAX_HEADER_BYTES"),
            ("--max-uri-bytes", "PORTICO_MAX_URI_BYTES"),
            ("--max-request-body-bytes", "PORTICO_MAX_REQUEST_BODY_BYTES"),
            ("--max-connections", "PORTICO_MAX_CONNECTIONS"),
            ("--request-header-timeout", "PORTICO_REQUEST_HEADER_TIMEOUT"),
            ("--xff-num-trusted-hops", "PORTICO_XFF_NUM_TRUSTED_HOPS"),
            ("--log", "PORTICO_LOG"),
            ("--log-format", "PORTICO_LOG_FORMAT"),
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
            assert!(
                help.contains(&format!("env: {env}")),
                "{env} missing from --help"
            );
        }
    }
}
