//! `portico-agent`: the node agent. Flags in, `portico_agent::run` out.

use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use portico_agent::Protocol;
use portico_agent::agent::{self, AgentConfig, SharedStatus};
use portico_agent::kube_client::KubeClientConfig;
use portico_agent::probe::{self, ProbeConfig};
use portico_agent::run::{self, RunConfig};
use portico_agent::{watch_dir, watch_kube};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "portico-agent",
    version,
    about = "Portico's node agent: eBPF socket load balancing for Services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach the socket load balancer and program the Services of a folder of manifests.
    Run {
        /// Where maps and links are pinned (a directory on bpffs).
        #[arg(
            long,
            env = "PORTICO_AGENT_PIN_DIR",
            default_value = "/sys/fs/bpf/portico"
        )]
        pin_dir: PathBuf,
        /// The cgroup v2 directory whose processes get load-balanced.
        #[arg(
            long,
            env = "PORTICO_AGENT_CGROUP",
            default_value = "/sys/fs/cgroup/unified"
        )]
        cgroup: PathBuf,
        /// Mount a bpffs here when none is mounted.
        #[arg(long, env = "PORTICO_AGENT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// Never mount a bpffs (the pin directory must already be on one).
        #[arg(long, env = "PORTICO_AGENT_NO_MOUNT_BPFFS")]
        no_mount_bpffs: bool,
        /// A folder of Service and EndpointSlice manifests, watched for changes.
        #[arg(long, env = "PORTICO_AGENT_FROM_DIR", conflicts_with_all = ["k8s_api_server", "kubeconfig"])]
        from_dir: Option<PathBuf>,
        /// The Kubernetes API server, `https://host:port` (Cilium's k8sServiceHost and
        /// k8sServicePort): reached directly, never through the `kubernetes` Service.
        #[arg(long, env = "PORTICO_AGENT_K8S_API_SERVER")]
        k8s_api_server: Option<String>,
        /// A kubeconfig to use instead of the pod's service account.
        #[arg(long, env = "PORTICO_AGENT_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Program the folder once, print the result and exit (no watching).
        #[arg(long, requires = "from_dir")]
        once: bool,
        /// This node's name (the downward API's spec.nodeName), for
        /// externalTrafficPolicy: Local.
        #[arg(long, env = "PORTICO_AGENT_NODE_NAME")]
        node_name: Option<String>,
        /// An interface where NodePort and LoadBalancer traffic arrives (repeatable).
        #[arg(
            long = "nodeport-interface",
            env = "PORTICO_AGENT_NODEPORT_INTERFACES",
            value_delimiter = ','
        )]
        nodeport_interfaces: Vec<String>,
        /// Steer Gateway Services to the node-local proxy (sk_lookup in this network
        /// namespace, local routes for the Gateway addresses).
        #[arg(long, env = "PORTICO_AGENT_GATEWAY_STEERING")]
        gateway_steering: bool,
    },
    /// Print the services programmed in the pinned maps.
    List {
        #[arg(
            long,
            env = "PORTICO_AGENT_PIN_DIR",
            default_value = "/sys/fs/bpf/portico"
        )]
        pin_dir: PathBuf,
    },
    /// Dial an address as an application would and report what answered.
    Probe {
        #[arg(value_enum)]
        protocol: Proto,
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// UDP: datagrams per socket.
        #[arg(long, default_value_t = 1)]
        per_socket: u32,
        /// TCP: keep the first connection and echo stdin lines over it.
        #[arg(long)]
        hold: bool,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
}

enum Source {
    Dir(PathBuf),
    Kube(KubeClientConfig),
}

/// Runs the agent until SIGTERM or SIGINT.
fn daemon(cfg: AgentConfig, source: Source) -> anyhow::Result<()> {
    // kube's rustls needs a process-wide crypto provider; ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let (snapshots, source_task) = match source {
            Source::Dir(dir) => {
                watch_dir::spawn(dir, watch_dir::DEFAULT_DEBOUNCE, shutdown.clone())
                    .context("--from-dir")?
            }
            Source::Kube(k) => {
                let client = k.client().await.context("kubernetes client")?;
                watch_kube::spawn(client, shutdown.clone())
            }
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.cancel();
        });
        let status = SharedStatus::default();
        let result = agent::run(&cfg, snapshots, status, shutdown.clone()).await;
        shutdown.cancel();
        let _ = source_task.await;
        result.context("portico-agent run")
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let mut out = io::stdout().lock();
    match Cli::parse().command {
        Command::Run {
            pin_dir,
            cgroup,
            bpffs,
            no_mount_bpffs,
            from_dir,
            k8s_api_server,
            kubeconfig,
            once,
            node_name,
            nodeport_interfaces,
            gateway_steering,
        } => {
            let bpffs_root = (!no_mount_bpffs).then_some(bpffs);
            if once {
                let cfg = RunConfig {
                    pin_dir,
                    cgroup,
                    bpffs_root,
                    from_dir: from_dir.context("--once needs --from-dir")?,
                    node_name,
                    nodeport_interfaces,
                    gateway_steering,
                };
                run::run(&cfg, &mut out).context("portico-agent run")?;
            } else {
                let cfg = AgentConfig {
                    pin_dir,
                    cgroup,
                    bpffs_root,
                    node_name,
                    nodeport_interfaces,
                    gateway_steering,
                };
                let source = match from_dir {
                    Some(dir) => Source::Dir(dir),
                    None => Source::Kube(KubeClientConfig {
                        api_server: k8s_api_server,
                        kubeconfig,
                        service_account_dir: None,
                    }),
                };
                daemon(cfg, source)?;
            }
        }
        Command::List { pin_dir } => run::list(&pin_dir, &mut out).context("portico-agent list")?,
        Command::Probe {
            protocol,
            addr,
            count,
            per_socket,
            hold,
            timeout_ms,
        } => {
            let cfg = ProbeConfig {
                protocol: match protocol {
                    Proto::Tcp => Protocol::Tcp,
                    Proto::Udp => Protocol::Udp,
                },
                addr,
                count,
                per_socket,
                hold,
                timeout: Duration::from_millis(timeout_ms),
            };
            probe::run(&cfg, BufReader::new(io::stdin().lock()), &mut out).context("probe")?;
        }
    }
    Ok(())
}
