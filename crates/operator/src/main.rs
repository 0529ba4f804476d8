//! `portico-operator`: parses flags, installs the TLS crypto provider, sets up logging and
//! the Kubernetes client, and runs [`portico_operator::run`] until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use portico_api::logging::{self, LogFormat, LogStream};
use portico_api::otlp::{self, Exporter, SpanLayer};
use portico_operator::{Config, client, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;

/// The operator's flags plus how it logs (which is the binary's business, not `run`'s).
#[derive(Debug, Parser)]
#[command(
    name = "portico-operator",
    version,
    about = "Portico's operator: watches Gateway API objects and writes their status and Services"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Log line format: text or json.
    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config, log_format } = Cli::parse();
    // The client's TLS uses the process-wide provider; ring is the one the workspace
    // builds rustls with. Failing means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // --otlp-endpoint: the spans of target portico::otlp (reconcile, config push, status
    // write) go to the collector, whatever --log says.
    let mut layers = Vec::new();
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = Exporter::start(endpoint, "portico-operator", otlp::system_roots())
            .context("--otlp-endpoint")?;
        layers.push(SpanLayer::new(exporter).boxed());
    }
    logging::init_with(&config.log, log_format, LogStream::Stdout, false, layers)
        .context("--log")?;

    let client = client(config.kubeconfig.as_deref()).await?;
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    run(client, config, shutdown).await?;
    Ok(())
}
