//! `portico-cert-sync`'s flags: every one has a `PORTICO_*` environment variable as
//! fallback (the Helm chart's Deployment sets them), typed and checked before anything
//! binds or connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use portico_api::names;
use portico_operator::kube::LeaseConfig;
use portico_operator::kube::lease::{DEFAULT_LEASE_DURATION, DEFAULT_RETRY_PERIOD};

/// The default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "portico-cert-sync";
/// The default Lease namespace (the one the Helm chart installs into).
pub const DEFAULT_LEASE_NAMESPACE: &str = "portico-system";
/// The default metrics and health address.
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";
/// How long before a certificate's notAfter it is warned about, by default.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often everything is checked again when nothing changes: certificates expire
/// without any watch event.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
/// Changes arriving within this long are handled in one pass, by default.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The configuration of cert-sync.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portico-cert-sync",
    version,
    about = "Copies the TLS Secrets that Portico's Gateways refer to into the secrets namespace"
)]
pub struct Config {
    /// Kubeconfig file to use; without it, the in-cluster service account, or
    /// $KUBECONFIG / ~/.kube/config outside a cluster.
    #[arg(long, env = "PORTICO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The namespace certificates are copied into; proxies read them from there only.
    #[arg(long, env = "PORTICO_SECRETS_NAMESPACE", default_value = names::DEFAULT_SECRETS_NAMESPACE)]
    pub secrets_namespace: String,

    /// GatewayClasses whose spec.controllerName is this are ours.
    #[arg(long, env = "PORTICO_CONTROLLER_NAME", default_value = names::CONTROLLER_NAME)]
    pub controller_name: String,

    /// Serve /metrics (Prometheus) and /healthz on this address.
    #[arg(long, env = "PORTICO_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,

    /// Name of the coordination.k8s.io Lease electing the replica that writes.
    #[arg(long, env = "PORTICO_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// Namespace of the Lease (cert-sync's own namespace).
    #[arg(long, env = "PORTICO_LEASE_NAMESPACE", default_value = DEFAULT_LEASE_NAMESPACE)]
    pub lease_namespace: String,

    /// This replica's identity in the Lease, unique among replicas; the pod name
    /// (HOSTNAME) when unset.
    #[arg(long, env = "PORTICO_IDENTITY")]
    pub identity: Option<String>,

    /// How long the Lease stays valid without renewal.
    #[arg(long, env = "PORTICO_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews the Lease and the others check it.
    #[arg(long, env = "PORTICO_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: Duration,

    /// Log filter (tracing-subscriber EnvFilter syntax, e.g. "info,portico_cert_sync=debug").
    #[arg(long, env = "PORTICO_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Warn (log and Event on the Gateway) this long before a certificate expires.
    #[arg(long, env = "PORTICO_EXPIRY_WARNING", default_value = "14d", value_parser = humantime::parse_duration)]
    pub expiry_warning: Duration,

    /// Check everything again this often even when nothing changes (expiry moves with
    /// the clock, not with watch events).
    #[arg(long, env = "PORTICO_RESYNC", default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: Duration,

    /// How long changes are collected before they are handled together.
    #[arg(long, env = "PORTICO_DEBOUNCE", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
}

impl Config {
    /// The defaults, as `portico-cert-sync` with no flags and no environment gives them,
    /// with an explicit identity.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            kubeconfig: None,
            secrets_namespace: names::DEFAULT_SECRETS_NAMESPACE.to_owned(),
            controller_name: names::CONTROLLER_NAME.to_owned(),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            lease_namespace: DEFAULT_LEASE_NAMESPACE.to_owned(),
            identity: Some(identity.into()),
            lease_duration: DEFAULT_LEASE_DURATION,
            lease_retry_period: DEFAULT_RETRY_PERIOD,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            expiry_warning: DEFAULT_EXPIRY_WARNING,
            resync: DEFAULT_RESYNC,
            debounce: DEFAULT_DEBOUNCE,
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_label(&self.secrets_namespace) {
            return Err(ConfigError::SecretsNamespace(
                self.secrets_namespace.clone(),
            ));
        }
        if self.controller_name.is_empty() {
            return Err(ConfigError::EmptyControllerName);
        }
        if self.lease_name.is_empty() || self.lease_namespace.is_empty() {
            return Err(ConfigError::EmptyLease);
        }
        if self.lease_duration.as_secs() == 0
            || self.lease_retry_period.is_zero()
            || self.lease_retry_period >= self.lease_duration
        {
            return Err(ConfigError::LeaseTiming {
                duration: self.lease_duration,
                retry_period: self.lease_retry_period,
            });
        }
        if self.resync.is_zero() {
            return Err(ConfigError::Resync);
        }
        Ok(())
    }

    /// The identity to hold the Lease as: the configured one, else the host (pod) name,
    /// else one made from the process id.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("portico-cert-sync-{}", std::process::id()))
    }

    pub(crate) fn lease(&self) -> LeaseConfig {
        LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity: self.identity(),
            lease_duration: self.lease_duration,
            retry_period: self.lease_retry_period,
        }
    }
}

/// A namespace name: an RFC 1123 label.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--secrets-namespace {0:?} is not a namespace name (RFC 1123 label)")]
    SecretsNamespace(String),
    #[error("--controller-name must not be empty")]
    EmptyControllerName,
    #[error("--lease-name and --lease-namespace must not be empty")]
    EmptyLease,
    #[error(
        "--lease-retry-period ({retry_period:?}) must be above zero and below --lease-duration ({duration:?}, at least 1s)"
    )]
    LeaseTiming {
        duration: Duration,
        retry_period: Duration,
    },
    #[error("--resync must be above zero")]
    Resync,
    #[error("metrics port {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_documented_flags() {
        let parsed = Config::try_parse_from(["portico-cert-sync", "--identity", "me"]).unwrap();
        let new = Config::new("me");
        assert_eq!(parsed.secrets_namespace, "portico-secrets");
        assert_eq!(parsed.secrets_namespace, new.secrets_namespace);
        assert_eq!(parsed.metrics_listen, new.metrics_listen);
        assert_eq!(parsed.expiry_warning, new.expiry_warning);
        assert_eq!(parsed.lease_name, new.lease_name);
        assert_eq!(parsed.lease_duration, new.lease_duration);
        assert_eq!(parsed.resync, new.resync);
        assert_eq!(parsed.log_format, LogFormat::Text);
        parsed.validate().unwrap();
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut c = Config::new("me");
        c.secrets_namespace = "Portico_Secrets".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SecretsNamespace(_))
        ));
        let mut c = Config::new("me");
        c.lease_retry_period = c.lease_duration;
        assert!(matches!(c.validate(), Err(ConfigError::LeaseTiming { .. })));
        let parsed = Config::try_parse_from(["portico-cert-sync", "--expiry-warning", "30d"]);
        assert_eq!(
            parsed.unwrap().expiry_warning,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert!(Config::try_parse_from(["portico-cert-sync", "--log-format", "xml"]).is_err());
    }
}
