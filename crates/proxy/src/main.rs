//! `portico-proxy`: parses flags, installs the TLS crypto provider, sets up logging, and
//! runs [`portico_proxy::client::run`] until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use portico_proxy::client::{Args, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // tonic's TLS uses the process-wide provider; ring is the one the workspace builds
    // rustls with. Failing means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("--log")?)
        .init();

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
    run(args, shutdown).await?;
    Ok(())
}
