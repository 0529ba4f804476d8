//! `portico-cert-sync`: parses flags, installs the TLS crypto provider, sets up logging
//! and the Kubernetes client, and runs [`portico_cert_sync::run`] until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use portico_cert_sync::{Config, LogFormat, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.validate()?;
    // The client's TLS uses the process-wide provider; ring is the one the workspace
    // builds rustls with. Failing means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = EnvFilter::try_new(&config.log).context("--log")?;
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }

    let client = portico_operator::client(config.kubeconfig.as_deref()).await?;
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
