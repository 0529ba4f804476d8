//! `portico-agent`: the node agent. Flags in, `portico_agent::run` out.

use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use portico_agent::Protocol;
use portico_agent::agent::{self, AgentConfig, L2Setup, SharedStatus};
use portico_agent::kube_client::KubeClientConfig;
use portico_agent::l2_election::ElectionConfig;
use portico_agent::probe::{self, ProbeConfig};
use portico_agent::run::{self, RunConfig};
use portico_agent::{status_server, watch_dir, watch_kube};
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

// Parsed once at start-up and matched away at once: the size of `Run` costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Answer ARP for LoadBalancer IPs on this interface when this node wins the IP's
        /// Lease (repeatable; needs the Kubernetes source and --node-name).
        #[arg(
            long = "l2-interface",
            env = "PORTICO_AGENT_L2_INTERFACES",
            value_delimiter = ',',
            requires = "node_name"
        )]
        l2_interfaces: Vec<String>,
        /// The namespace of the L2 announcement Leases.
        #[arg(
            long,
            env = "PORTICO_AGENT_L2_LEASE_NAMESPACE",
            default_value = "kube-system"
        )]
        l2_lease_namespace: String,
        /// Serve the agent's status (GET /status, JSON), health (GET /healthz) and metrics
        /// (GET /metrics, Prometheus text) here.
        #[arg(long, env = "PORTICO_AGENT_STATUS_ADDR")]
        status_addr: Option<SocketAddr>,
        /// How long an L2 Lease is valid without renewal (the longest hand-over when a
        /// node dies), in seconds.
        #[arg(long, env = "PORTICO_AGENT_L2_LEASE_SECONDS", default_value_t = 15)]
        l2_lease_seconds: u64,
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
fn daemon(
    cfg: AgentConfig,
    source: Source,
    l2: Option<(ElectionConfig, Vec<String>)>,
    status_addr: Option<SocketAddr>,
) -> anyhow::Result<()> {
    // kube's rustls needs a process-wide crypto provider; ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let (snapshots, source_task, client) = match source {
            Source::Dir(dir) => {
                let (s, t) = watch_dir::spawn(dir, watch_dir::DEFAULT_DEBOUNCE, shutdown.clone())
                    .context("--from-dir")?;
                (s, t, None)
            }
            Source::Kube(k) => {
                let client = k.client().await.context("kubernetes client")?;
                let (s, t) = watch_kube::spawn(client.clone(), shutdown.clone());
                (s, t, Some(client))
            }
        };
        let l2 = match (l2, client) {
            (None, _) => None,
            (Some((election, interfaces)), Some(client)) => Some(L2Setup {
                client,
                election,
                interfaces,
            }),
            (Some(_), None) => anyhow::bail!("--l2-interface needs the Kubernetes source (Leases)"),
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
        if let Some(addr) = status_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--status-addr {addr}"))?;
            // Tests and scripts read the bound port from here (`:0` picks one), in the
            // form every portico binary prints.
            println!("listening on {} (status)", listener.local_addr()?);
            status_server::spawn(listener, status.clone(), shutdown.clone());
        }
        let result = agent::run(&cfg, snapshots, l2, status, shutdown.clone()).await;
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
            l2_interfaces,
            l2_lease_namespace,
            l2_lease_seconds,
            status_addr,
        } => {
            let l2 = (!l2_interfaces.is_empty()).then(|| {
                let mut election =
                    ElectionConfig::new(l2_lease_namespace, node_name.clone().unwrap_or_default());
                election.lease_duration = Duration::from_secs(l2_lease_seconds);
                election.renew_before = Duration::from_secs((l2_lease_seconds / 3).max(1));
                (election, l2_interfaces)
            });
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
                daemon(cfg, source, l2, status_addr)?;
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
