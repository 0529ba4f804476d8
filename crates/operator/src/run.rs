//! The operator as one call: [`run`] with a [`Config`] and a `kube::Client`.
//!
//! ```text
//!   run(client, config, shutdown) = start(..) then wait for shutdown
//!     ├─ validate config
//!     ├─ wait_for_crds (names the missing ones, retries with backoff)
//!     ├─ KubeProvider::spawn ──snapshots──┬─> status writer   ─┐ gated on
//!     ├─ lease::spawn ──leader (bool)─────┼─> Service reconciler┘ the Lease
//!     ├─ ipam::run (--lb-ipam): LoadBalancerIPPool addresses for Services (leader only)
//!     ├─ xds::start ──config server (--config-listen), proxies' NACKs onto the
//!     │               snapshots the status writer gets, metrics port (--metrics-listen)
//!     └─ shutdown: every task stops, the Lease is released
//! ```
//!
//! `main.rs` only parses [`Config`] (flags with env fallbacks), sets up logging and the
//! client, and calls [`run`]; tests call [`run`] with a client of the test API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use portico_api::names;
use portico_translate::{Exposure, Options};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ipam::{self, IpamConfig, IpamCounters};
use crate::kube::lease::{self, DEFAULT_LEASE_DURATION, DEFAULT_RETRY_PERIOD, LeaseConfig};
use crate::kube::provider::{self, KubeProvider, ProviderConfig, SecretSource, Snapshots};
use crate::kube::wait_for_crds;
use crate::service;
use crate::status::metrics::StatusCollector;
use crate::status::{FIELD_MANAGER, StatusCounters, StatusWriter, writer};
use crate::xds::{ProxyRecords, ServerTls, XdsOptions};

/// How long the tasks get to finish after shutdown (releasing the Lease included).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The operator's configuration: every flag has an environment variable as fallback.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portico-operator",
    version,
    about = "Portico's operator: watches Gateway API objects and writes their status and Services"
)]
pub struct Config {
    /// Kubeconfig file to use; without it, the in-cluster service account, or
    /// $KUBECONFIG / ~/.kube/config outside a cluster.
    #[arg(long, env = "PORTICO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch namespaced objects (Gateways, routes, Services, ...) in this namespace
    /// only; every namespace when unset.
    #[arg(long, env = "PORTICO_NAMESPACE")]
    pub namespace: Option<String>,

    /// Read listeners' certificates only from portico-cert-sync's copies in this
    /// namespace (label app.kubernetes.io/managed-by=portico-cert-sync, annotation
    /// portico.dev/source=<namespace>/<name>), each standing in for its source Secret;
    /// other Secrets are never read. The Helm chart sets it to
    /// gatewayAPI.secretsNamespace, so the operator needs Secret access there only.
    /// Unset: kubernetes.io/tls Secrets in every watched namespace.
    #[arg(long, env = "PORTICO_SECRETS_NAMESPACE")]
    pub secrets_namespace: Option<String>,

    /// GatewayClasses whose spec.controllerName is this are handled.
    #[arg(long, env = "PORTICO_CONTROLLER_NAME", default_value = names::CONTROLLER_NAME)]
    pub controller_name: String,

    /// Name of the coordination.k8s.io Lease that elects the replica writing statuses
    /// and Services.
    #[arg(long, env = "PORTICO_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "PORTICO_LEASE_NAMESPACE", default_value = DEFAULT_LEASE_NAMESPACE)]
    pub lease_namespace: String,

    /// This replica's identity in the Lease, unique among replicas; the pod name
    /// (HOSTNAME) when unset.
    #[arg(long, env = "PORTICO_IDENTITY")]
    pub identity: Option<String>,

    /// How long the Lease stays valid without renewal: the longest a dead leader
    /// delays its successor.
    #[arg(long, env = "PORTICO_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews the Lease and the others check it.
    #[arg(long, env = "PORTICO_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: Duration,

    /// How long changes are collected before they are translated together.
    #[arg(long, env = "PORTICO_DEBOUNCE", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,

    /// Log filter (tracing-subscriber EnvFilter syntax, e.g. "info,portico_operator=debug").
    #[arg(long, env = "PORTICO_LOG", default_value = "info")]
    pub log: String,

    /// Assign addresses from LoadBalancerIPPools (LB-IPAM) to LoadBalancer Services whose
    /// loadBalancerClass is unset or portico.dev/lb. Leave off where another load
    /// balancer implementation (a cloud controller, MetalLB) serves those Services.
    #[arg(long, env = "PORTICO_LB_IPAM")]
    pub lb_ipam: bool,

    /// Serve proxies their config (gRPC) on this address, e.g. 0.0.0.0:18000; no config
    /// server when unset. Needs --config-cert and --config-key, or --insecure.
    #[arg(long, env = "PORTICO_CONFIG_LISTEN")]
    pub config_listen: Option<SocketAddr>,

    /// PEM certificate chain of the config server, signed by the CA the proxies trust.
    #[arg(long, env = "PORTICO_CONFIG_CERT", requires = "config_key")]
    pub config_cert: Option<PathBuf>,

    /// PEM private key of --config-cert.
    #[arg(long, env = "PORTICO_CONFIG_KEY", requires = "config_cert")]
    pub config_key: Option<PathBuf>,

    /// PEM CA file: proxies must present a client certificate it signed (mTLS).
    #[arg(long, env = "PORTICO_CONFIG_CLIENT_CA")]
    pub config_client_ca: Option<PathBuf>,

    /// Serve the config in plaintext (no TLS). For local runs only.
    #[arg(long, env = "PORTICO_INSECURE")]
    pub insecure: bool,

    /// Serve /metrics (Prometheus) and /healthz on this address, e.g. 0.0.0.0:9090.
    #[arg(long, env = "PORTICO_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Export spans to this OpenTelemetry collector, OTLP over HTTP with JSON, at
    /// `<endpoint>/v1/traces` (e.g. `http://otel-collector:4318`): one per translation
    /// ("reconcile"), per config push to a proxy until its ACK or NACK ("config push"),
    /// and per batch of status writes ("status write"). Set up by the binary with its
    /// logging (`portico_api::otlp::SpanLayer`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,
}

/// The default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "portico-operator";
/// The default Lease namespace (the one the Helm chart installs into).
pub const DEFAULT_LEASE_NAMESPACE: &str = "portico-system";

impl Config {
    /// The defaults, as `portico-operator` with no flags and no environment gives them.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            kubeconfig: None,
            namespace: None,
            secrets_namespace: None,
            controller_name: names::CONTROLLER_NAME.to_owned(),
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            lease_namespace: DEFAULT_LEASE_NAMESPACE.to_owned(),
            identity: Some(identity.into()),
            lease_duration: DEFAULT_LEASE_DURATION,
            lease_retry_period: DEFAULT_RETRY_PERIOD,
            debounce: provider::DEFAULT_DEBOUNCE,
            log: "info".to_owned(),
            lb_ipam: false,
            config_listen: None,
            config_cert: None,
            config_key: None,
            config_client_ca: None,
            insecure: false,
            metrics_listen: None,
            otlp_endpoint: None,
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.controller_name.is_empty() {
            return Err(ConfigError::EmptyControllerName);
        }
        if self.lease_name.is_empty() || self.lease_namespace.is_empty() {
            return Err(ConfigError::EmptyLease);
        }
        if self.lease_retry_period.is_zero() || self.lease_retry_period >= self.lease_duration {
            return Err(ConfigError::LeaseTiming {
                duration: self.lease_duration,
                retry_period: self.lease_retry_period,
            });
        }
        if self.lease_duration.as_secs() == 0 {
            return Err(ConfigError::LeaseTiming {
                duration: self.lease_duration,
                retry_period: self.lease_retry_period,
            });
        }
        let tls = self.config_cert.is_some() || self.config_client_ca.is_some();
        if self.config_listen.is_some() && self.insecure == tls {
            return Err(ConfigError::ConfigServerTls);
        }
        Ok(())
    }

    /// The config server's and metrics port's settings.
    pub fn xds(&self) -> XdsOptions {
        XdsOptions {
            listen: self.config_listen,
            tls: match (&self.config_cert, &self.config_key) {
                (Some(cert), Some(key)) if !self.insecure => Some(ServerTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.config_client_ca.clone(),
                }),
                _ => None,
            },
            metrics_listen: self.metrics_listen,
        }
    }

    /// The identity to hold the Lease as: the configured one, else the host (pod) name,
    /// else one made from the process id.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("portico-operator-{}", std::process::id()))
    }

    fn lease(&self) -> LeaseConfig {
        LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity: self.identity(),
            lease_duration: self.lease_duration,
            retry_period: self.lease_retry_period,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes client configuration: {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(
        "--config-listen needs either --config-cert and --config-key (TLS) or --insecure (plaintext), not both"
    )]
    ConfigServerTls,
    #[error("config server: {0}")]
    Xds(#[from] crate::xds::StartError),
}

/// A client for `kubeconfig`, or for the environment (in-cluster, then $KUBECONFIG)
/// when `None`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, ConfigError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| ConfigError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| ConfigError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(ConfigError::Infer)?,
    };
    Client::try_from(config).map_err(ConfigError::Client)
}

/// A running operator: its tasks, and handles to watch it (tests, metrics).
#[derive(Debug)]
pub struct Operator {
    /// Whether this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
    /// The translator's output, as the writers see it.
    pub snapshots: Snapshots,
    /// What the status writer did.
    pub status_counters: Arc<StatusCounters>,
    /// The config server's bound address (`--config-listen`).
    pub config_addr: Option<SocketAddr>,
    /// The metrics port's bound address (`--metrics-listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// Each proxy's last ACK and NACK.
    pub proxies: ProxyRecords,
    tasks: JoinSet<()>,
    lease_task: JoinHandle<()>,
}

impl Operator {
    /// Waits for every task after `shutdown` was cancelled (the Lease is released on the
    /// way), aborting those still running after a grace period.
    pub async fn wait(mut self) {
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
            let _ = (&mut self.lease_task).await;
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "portico-operator: tasks did not stop in time");
            self.abort();
        }
    }

    /// Stops every task at once, without releasing the Lease: what a crash looks like to
    /// the other replicas.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
        self.lease_task.abort();
    }
}

/// Starts the operator against `client`: checks the configuration, waits for the
/// Gateway API CRDs (logging which are missing), then starts the watches, the Lease, the
/// status writer and the Service reconciler. `Ok(None)` when `shutdown` came before the
/// CRDs did.
pub async fn start(
    client: Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<Option<Operator>, ConfigError> {
    config.validate()?;
    let lease = config.lease();
    info!(
        controller_name = %config.controller_name,
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        identity = %lease.identity,
        "portico-operator starting"
    );
    let Some(crds) = wait_for_crds(&client, &shutdown).await else {
        return Ok(None);
    };

    let options = Options {
        controller_name: config.controller_name.clone(),
        crd_bundle_version: crds.bundle_version,
        // Gateways are reached through their Services: addresses from the load balancer,
        // proxy listeners on the Services' targetPorts.
        exposure: Exposure::Service,
        ..Options::default()
    };
    let secrets = match &config.secrets_namespace {
        Some(namespace) => SecretSource::Copies {
            namespace: namespace.clone(),
        },
        None => SecretSource::Watched,
    };
    let provider = KubeProvider::spawn_with_secrets(
        client.clone(),
        ProviderConfig {
            namespace: config.namespace.clone(),
            debounce: config.debounce,
            listener_sets: crds.listener_sets,
            options,
        },
        secrets,
        shutdown.clone(),
    );
    let mut tasks = provider.tasks;
    let xds =
        crate::xds::start(&config.xds(), provider.snapshots.clone(), shutdown.clone()).await?;
    for task in xds.tasks {
        tasks.spawn(async move {
            let _ = task.await;
        });
    }
    // The leader publishes its proxies' records on the Lease (`portico status`).
    let records = xds.records.clone();
    let (leader, lease_task) = lease::spawn_annotated(
        client.clone(),
        lease,
        Box::new(move || {
            std::collections::BTreeMap::from([(
                crate::xds::records::PROXIES_ANNOTATION.to_owned(),
                records.report(),
            )])
        }),
        shutdown.clone(),
    );

    let status_writer = StatusWriter::new(
        client.clone(),
        FIELD_MANAGER.to_owned(),
        config.controller_name.clone(),
    );
    let status_counters = status_writer.counters();
    StatusCollector::new(status_counters.clone(), provider.snapshots.clone())
        .and_then(|collector| xds.registry.register(Box::new(collector)))
        .map_err(crate::xds::StartError::Register)?;
    tasks.spawn(writer::run(
        status_writer,
        // The proxies' NACKs make the Gateways they concern not programmed.
        xds.status_snapshots,
        leader.clone(),
        shutdown.clone(),
    ));
    if config.lb_ipam {
        tasks.spawn(ipam::run(
            client.clone(),
            IpamConfig {
                field_manager: FIELD_MANAGER.to_owned(),
                identity: config.identity(),
            },
            leader.clone(),
            Arc::new(IpamCounters::default()),
            shutdown.clone(),
        ));
    }
    tasks.spawn(service::reconcile::run(
        client,
        FIELD_MANAGER.to_owned(),
        provider.snapshots.clone(),
        provider.class_parameters.clone(),
        leader.clone(),
        shutdown,
    ));
    Ok(Some(Operator {
        leader,
        snapshots: provider.snapshots,
        status_counters,
        config_addr: xds.config_addr,
        metrics_addr: xds.metrics_addr,
        proxies: xds.records,
        tasks,
        lease_task,
    }))
}

/// Runs the operator against `client` until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ConfigError> {
    let Some(operator) = start(client, config, shutdown.clone()).await? else {
        return Ok(());
    };
    shutdown.cancelled().await;
    info!("portico-operator stopping");
    operator.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_flags() {
        let config = Config::new("me");
        assert!(config.validate().is_ok());
        // Parsing with no flags gives the same defaults, except where the test process's
        // environment sets the variables (it does not set these).
        let parsed = Config::parse_from(["portico-operator", "--identity", "me"]);
        assert_eq!(parsed.lease_duration, config.lease_duration);
        assert_eq!(parsed.lease_retry_period, config.lease_retry_period);
        assert_eq!(parsed.debounce, config.debounce);
        assert_eq!(parsed.lease_name, config.lease_name);
        assert_eq!(parsed.controller_name, config.controller_name);
    }

    #[test]
    fn config_server_needs_tls_or_insecure() {
        let mut config = Config::new("me");
        config.config_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ConfigServerTls)
        ));
        config.insecure = true;
        assert!(config.validate().is_ok());
        assert!(config.xds().tls.is_none());
        config.config_cert = Some("tls.crt".into());
        config.config_key = Some("tls.key".into());
        assert!(config.validate().is_err(), "--insecure with TLS files");
        config.insecure = false;
        assert!(config.validate().is_ok());
        assert!(config.xds().tls.is_some());
    }

    #[test]
    fn lease_timing_is_checked() {
        let mut config = Config::new("me");
        config.lease_retry_period = config.lease_duration;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::LeaseTiming { .. })
        ));
        config.lease_retry_period = Duration::ZERO;
        assert!(config.validate().is_err());
    }

    #[test]
    fn help_documents_every_flag_with_its_env_variable() {
        use clap::CommandFactory;
        let help = Config::command().render_long_help().to_string();
        for (flag, env) in [
            ("--kubeconfig", "PORTICO_KUBECONFIG"),
            ("--namespace", "PORTICO_NAMESPACE"),
            ("--secrets-namespace", "PORTICO_SECRETS_NAMESPACE"),
            ("--controller-name", "PORTICO_CONTROLLER_NAME"),
            ("--lease-name", "PORTICO_LEASE_NAME"),
            ("--lease-namespace", "PORTICO_LEASE_NAMESPACE"),
            ("--identity", "PORTICO_IDENTITY"),
            ("--lease-duration", "PORTICO_LEASE_DURATION"),
            ("--lease-retry-period", "PORTICO_LEASE_RETRY_PERIOD"),
            ("--debounce", "PORTICO_DEBOUNCE"),
            ("--log", "PORTICO_LOG"),
            ("--lb-ipam", "PORTICO_LB_IPAM"),
            ("--config-listen", "PORTICO_CONFIG_LISTEN"),
            ("--config-cert", "PORTICO_CONFIG_CERT"),
            ("--config-key", "PORTICO_CONFIG_KEY"),
            ("--config-client-ca", "PORTICO_CONFIG_CLIENT_CA"),
            ("--insecure", "PORTICO_INSECURE"),
            ("--metrics-listen", "PORTICO_METRICS_LISTEN"),
            ("--otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
            assert!(
                help.contains(&format!("env: {env}")),
                "{env} missing from --help"
            );
        }
        // And any flag added later: every one but --help and --version has a variable.
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str());
            assert!(
                env.is_some_and(|e| help.contains(&format!("env: {e}"))),
                "--{id} has no environment variable in --help"
            );
        }
    }
}
