//! `portico connectivity test`: end-to-end checks of a cluster running Portico, like
//! `cilium connectivity test`, and `portico connectivity probe`, what its client pods run.
//!
//! ```text
//!   test ──> namespace portico-test:
//!            Secret connectivity-tls (a CA and a certificate made here, rcgen)
//!            Deployments echo-same-node, echo-other-node (portico/echo; nodeName on two
//!              different nodes when there are two)
//!            Services echo-same-node, echo-other-node (ClusterIP), echo-nodeport (NodePort)
//!            Gateway connectivity (HTTP :80, HTTPS :443 terminating connectivity-tls)
//!            HTTPRoutes: / and /header (RequestHeaderModifier) -> echo-same-node,
//!                        /split -> echo-same-node 3 : echo-other-node 1
//!        ──> waits: Deployments ready, Gateway Programmed with an address
//!        ──> client pods (portico/cli, restartPolicy Never):
//!              `connectivity probe --url http://<ClusterIP>/ ...`      pod -> ClusterIP
//!              hostNetwork, `--url http://<node IP>:<nodePort>/`        node -> NodePort
//!            each prints one JSON Tally and exits; the result is read from
//!            status.containerStatuses[0].state.terminated.message (no exec, no logs)
//!        ──> from this host to the Gateway's status.addresses: HTTP, HTTPS (verified
//!            with the CA), split (within tolerance), header filter (the echo reports it)
//!        ──> summary; namespace deleted unless --keep; exit 1 on any failure
//! ```
//!
//! Checks that need two nodes are skipped, with a message, on a cluster of one. Nothing
//! here assumes where the proxy runs: a Deployment or a DaemonSet serve the Gateway's
//! address alike.

mod checks;
mod cluster;
mod plan;
mod probe;
mod test;

use std::path::PathBuf;
use std::time::Duration;

pub use checks::{Outcome, Summary};
pub use probe::ProbeArgs;

/// `portico connectivity ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectivityCommand {
    /// Create a test namespace with echo backends, client pods and a Gateway, check
    /// pod -> ClusterIP, node -> NodePort and outside -> Gateway (HTTP, HTTPS, split,
    /// header filter), print a summary, clean up; exit 1 on any failure.
    Test(TestArgs),
    /// What the test's client pods run: send requests to --url, print one JSON line
    /// (requests counted by backend) and exit (1 when a request failed).
    Probe(ProbeArgs),
}

/// `portico connectivity test`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The cluster [default: $KUBECONFIG, ~/.kube/config, or in-cluster].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace the test creates (and deletes).
    #[arg(long, default_value = "portico-test")]
    pub namespace: String,
    /// Leave the namespace and everything in it.
    #[arg(long)]
    pub keep: bool,
    /// How long the whole test may take.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The GatewayClass of the test's Gateway.
    #[arg(long, default_value = "portico")]
    pub gateway_class: String,
    /// The echo backends' image.
    #[arg(long, default_value = concat!("portico/echo:", env!("CARGO_PKG_VERSION")))]
    pub echo_image: String,
    /// The client pods' image (runs `portico connectivity probe`).
    #[arg(long, default_value = concat!("portico/cli:", env!("CARGO_PKG_VERSION")))]
    pub cli_image: String,
}

/// What stops the connectivity test itself (failed checks are in the [`Summary`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectivityError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("Kubernetes client: {0}")]
    Client(String),
    #[error(transparent)]
    Split(#[from] crate::check_split::SplitError),
}

/// Runs a `connectivity` subcommand; `Ok(false)` when a check or a probe failed.
pub async fn run(command: ConnectivityCommand) -> Result<bool, ConnectivityError> {
    match command {
        ConnectivityCommand::Probe(args) => probe::run(args).await,
        ConnectivityCommand::Test(args) => {
            let out = |line: &str| println!("{line}");
            let summary = test::run(&args, &out).await?;
            Ok(summary.success())
        }
    }
}
