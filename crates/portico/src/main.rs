//! `portico`: the user's command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use portico::conformance::{self, EchoMode, RunConfig};
use portico::standalone::{AddressPool, Standalone, StandaloneConfig};
use portico_proxy::ProxyOptions;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: a Kubernetes Gateway API implementation"
)]
struct Cli {
    /// Log filter, in tracing-subscriber's EnvFilter syntax [default: warn,portico=info;
    /// warn for `conformance`, whose output is its report].
    #[arg(long, env = "PORTICO_LOG", global = true)]
    log: Option<String>,
    /// Log line format on stderr: text or json. `standalone` also prints the proxy's
    /// access log, JSON lines on stdout (`--log 'warn,portico::access=off'` stops it).
    #[arg(
        long,
        env = "PORTICO_LOG_FORMAT",
        global = true,
        default_value = "text"
    )]
    log_format: portico_api::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the conformance variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a folder of Kubernetes YAML (Gateways, HTTPRoutes, Services, EndpointSlices)
    /// with no cluster: provider, translator and proxy in one process. The folder is
    /// watched and changes go live without a restart.
    Standalone {
        /// The folder to serve (read recursively: *.yaml, *.yml).
        dir: PathBuf,
        /// Where listeners bind when their Gateway sets no `spec.addresses`.
        #[arg(long, env = "PORTICO_DEFAULT_ADDRESS", default_value = "127.0.0.1")]
        default_address: IpAddr,
        /// How long the folder must be quiet before a change is applied.
        #[arg(long, env = "PORTICO_DEBOUNCE", default_value = "200ms", value_parser = humantime::parse_duration)]
        debounce: Duration,
        /// Give each Gateway without spec.addresses a loopback address of its own from
        /// this block (e.g. 127.0.10.0/24), so that several can listen on port 80.
        #[arg(long, env = "PORTICO_ADDRESS_POOL")]
        address_pool: Option<AddressPool>,
        /// The proxy's limits, the flags of portico-proxy (docs/security.md).
        #[command(flatten)]
        limits: portico_proxy::LimitArgs,
    },
    /// Gateway API conformance.
    Conformance {
        #[command(subcommand)]
        command: ConformanceCommand,
    },
    /// A long-running local cluster (API server, Portico's components as processes, a
    /// kubelet for echo and cli images in a pod network); needs root. Ctrl-C stops it.
    DevCluster(DevClusterArgs),
    /// The health of a Portico installation (components, workloads, images, chart,
    /// Gateways, proxies and their config versions); exits 1 on errors.
    Status(StatusArgs),
    /// The installation's configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Send N requests to URL and count answers by echo backend (Deployment), like the
    /// scenario's check-split.sh; exits 1 when any request fails.
    CheckSplit(portico::check_split::CheckSplitArgs),
    /// End-to-end checks of a cluster (`connectivity test`), and the client pods' probe.
    Connectivity {
        #[command(subcommand)]
        command: portico::connectivity::ConnectivityCommand,
    },
    /// The node agent's eBPF load balancer on this node.
    Lb {
        #[command(subcommand)]
        command: LbCommand,
    },
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Wait until healthy (progress on stderr); exit 1 on timeout.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Where Portico is installed.
    #[arg(long, short = 'n', default_value = "portico-system")]
    namespace: String,
    /// Report a local standalone process instead: its admin URL (/healthz, /metrics).
    #[arg(long)]
    standalone: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the keys of the portico-config ConfigMap, sorted.
    View {
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        #[arg(long, short = 'n', default_value = "portico-system")]
        namespace: String,
    },
}

#[derive(Debug, clap::Args)]
struct DevClusterArgs {
    /// A real API server instead of an in-memory one.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Write the in-memory API server's kubeconfig here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Write this file (JSON: kubeconfig, node and proxy addresses, pids) once ready.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Gateway API CRDs to install.
    #[arg(long, default_value = "../shared/gateway-api/crds/experimental")]
    crds: PathBuf,
}

#[derive(Debug, Subcommand)]
enum LbCommand {
    /// Print the service map the agent pinned (frontend, backends, weights, flags), like
    /// `cilium bpf lb list`. Needs root on the node.
    List {
        /// Where portico-agent pins its maps (its --pin-dir).
        #[arg(long, env = "PORTICO_AGENT_PIN_DIR", default_value = portico::lb::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConformanceCommand {
    /// Run conformance cases (the format of ../shared/CASES.md) against a target. Prints
    /// one line per case, then `N passed, N failed, N skipped`; exits 1 on any failure.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetKind {
    /// `portico standalone` in this process, backends as local processes.
    Standalone,
    /// `portico-operator` and `portico-proxy` as processes behind a Kubernetes API
    /// server (an in-memory one, or --kubeconfig), backends in a pod network namespace
    /// (needs root).
    LocalCluster,
    /// A cluster where Portico is installed (kind, EKS, `portico dev-cluster`), through
    /// --kubeconfig (else KUBECONFIG, else ~/.kube/config); the cluster runs the
    /// backends (--echo-image).
    Kube,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EchoKind {
    /// One `portico-echo` process per pod (the binary next to `portico`).
    Process,
    /// Echo servers inside the runner (no binary needed).
    InProcess,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    target: TargetKind,
    /// With --target local-cluster: the cluster to use instead of an in-memory API
    /// server (the runner still runs operator, proxy and backends on this host). With
    /// --target kube: the cluster's kubeconfig [default: KUBECONFIG, ~/.kube/config].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// With --target kube: the kubeconfig context [default: the current one].
    #[arg(long)]
    context: Option<String>,
    /// With --target kube: the image of the backends (replaces the upstream echo
    /// servers' images in the cases' Deployments and Pods).
    #[arg(long, default_value = conformance::DEFAULT_ECHO_IMAGE)]
    echo_image: String,
    /// Folder of case files (*.yaml).
    #[arg(long)]
    cases: PathBuf,
    /// Write a ConformanceReport (YAML) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The Gateway API data folder: manifests and conformance/setup.yaml.
    #[arg(long, default_value = "../shared/gateway-api")]
    data: PathBuf,
    /// CRDs the API server gets [default: <data>/crds/standard; <data>/crds/experimental
    /// for --target local-cluster, whose API server prunes fields its CRDs lack].
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Claimed features, comma-separated [default: what Portico claims].
    #[arg(long, value_delimiter = ',')]
    supported_features: Option<Vec<String>>,
    /// Features implemented in part: their written cases run and must pass, but they are
    /// not claimed (the report and GatewayClass status leave them out), comma-separated.
    #[arg(long, value_delimiter = ',')]
    preview_features: Vec<String>,
    /// Cases to skip (known failures), comma-separated.
    #[arg(long, value_delimiter = ',')]
    skip_tests: Vec<String>,
    /// Run only this case.
    #[arg(long)]
    run_test: Option<String>,
    /// Keep each case's objects, and the folder standalone serves.
    #[arg(long)]
    keep: bool,
    /// The GatewayClass under test ({GATEWAY_CLASS_NAME} in manifests).
    #[arg(long, default_value = "portico")]
    gateway_class: String,
    /// Addresses for the Gateways (each needs its own: they all listen on port 80).
    #[arg(long, default_value = "127.0.10.0/24")]
    address_pool: AddressPool,
    /// How backend pods run.
    #[arg(long, value_enum, default_value = "process")]
    echo: EchoKind,
    /// How long standalone waits for the folder to be quiet before reloading.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    debounce: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `standalone` serves traffic: the proxy's runtime, sized for the CPUs it is given (a
    // current-thread one on one CPU). The other commands keep tokio's multi-thread default.
    let runtime = match cli.command {
        Command::Standalone { .. } => portico_proxy::client::runtime::build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let log = cli.log.as_deref().unwrap_or(match cli.command {
        Command::Conformance { .. } => "warn",
        _ => "warn,portico=info",
    });
    // Only `standalone` serves traffic; the other commands' stdout is their output.
    let access_log = matches!(cli.command, Command::Standalone { .. });
    portico_api::logging::init(
        log,
        cli.log_format,
        portico_api::logging::LogStream::Stderr,
        access_log,
    )
    .context("--log")?;

    match cli.command {
        Command::Standalone {
            dir,
            default_address,
            debounce,
            address_pool,
            limits,
        } => {
            let config = StandaloneConfig {
                dir,
                default_address,
                debounce,
                address_pool,
                proxy: limits.apply(ProxyOptions::default()),
            };
            let out: portico::standalone::Output = Arc::new(|text: &str| println!("{text}"));
            let standalone = Standalone::start(config, out).await?;
            shutdown_signal().await?;
            println!("shutting down");
            standalone.shutdown().await;
        }
        Command::Status(args) => {
            let mut out = String::new();
            let healthy = match &args.standalone {
                Some(url) => portico::status::standalone(url, &mut out).await?,
                None => {
                    let config = portico::status::StatusConfig {
                        kubeconfig: args.kubeconfig,
                        namespace: args.namespace,
                        wait: args.wait.then_some(args.timeout),
                    };
                    portico::status::run(&config, &mut out).await?
                }
            };
            print!("{out}");
            if !healthy {
                std::process::exit(1);
            }
        }
        Command::Config {
            command:
                ConfigCommand::View {
                    kubeconfig,
                    namespace,
                },
        } => {
            print!(
                "{}",
                portico::config_view::run(kubeconfig.as_deref(), &namespace).await?
            );
        }
        Command::DevCluster(args) => {
            let config = portico::dev_cluster::DevClusterConfig {
                kubeconfig: args.kubeconfig,
                kubeconfig_out: args.kubeconfig_out,
                ready_file: args.ready_file,
                crds: Some(args.crds),
            };
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                if shutdown_signal().await.is_ok() {
                    stop.cancel();
                }
            });
            portico::dev_cluster::run(config, cancel).await?;
        }
        Command::CheckSplit(args) => {
            if !portico::check_split::run(args).await? {
                std::process::exit(1);
            }
        }
        Command::Connectivity { command } => {
            if !portico::connectivity::run(command).await? {
                std::process::exit(1);
            }
        }
        Command::Lb {
            command: LbCommand::List { pin_dir },
        } => {
            portico::lb::list(&pin_dir, &mut std::io::stdout().lock())?;
        }
        Command::Conformance {
            command: ConformanceCommand::Run(args),
        } => {
            if args.context.is_some() && !matches!(args.target, TargetKind::Kube) {
                anyhow::bail!("--context goes with --target kube");
            }
            let target = match args.target {
                TargetKind::Standalone => {
                    if args.kubeconfig.is_some() {
                        anyhow::bail!("--kubeconfig goes with --target local-cluster or kube");
                    }
                    conformance::TargetChoice::Standalone
                }
                TargetKind::LocalCluster => conformance::TargetChoice::LocalCluster {
                    kubeconfig: args.kubeconfig,
                },
                TargetKind::Kube => conformance::TargetChoice::Kube(conformance::KubeConfig {
                    kubeconfig: args.kubeconfig,
                    context: args.context,
                    echo_image: args.echo_image,
                }),
            };
            let echo = match args.echo {
                // The cluster runs the backends: no echo binary is needed here.
                _ if matches!(target, conformance::TargetChoice::Kube(_)) => EchoMode::InProcess,
                EchoKind::Process => {
                    EchoMode::process_next_to_current_exe().map_err(|e| anyhow::anyhow!(e))?
                }
                EchoKind::InProcess => EchoMode::InProcess,
            };
            let config = RunConfig {
                cases: args.cases,
                data: args.data,
                crds: args.crds,
                report: args.report,
                supported_features: args.supported_features,
                preview_features: args.preview_features,
                skip_tests: args.skip_tests,
                run_test: args.run_test,
                keep: args.keep,
                class_name: args.gateway_class,
                address_pool: args.address_pool,
                echo,
                debounce: args.debounce,
                target,
            };
            let out: conformance::Output = Arc::new(|text: &str| println!("{text}"));
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                if shutdown_signal().await.is_ok() {
                    eprintln!("interrupted: stopping backends and standalone");
                    stop.cancel();
                }
            });
            let summary = conformance::run(config, out, cancel).await?;
            if !summary.success() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
