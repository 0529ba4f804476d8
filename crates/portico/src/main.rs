//! `portico`: the user's command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portico::standalone::{Standalone, StandaloneConfig};
use portico_proxy::ProxyOptions;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: a Kubernetes Gateway API implementation"
)]
struct Cli {
    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(
        long,
        env = "PORTICO_LOG",
        default_value = "warn,portico=info",
        global = true
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Command::Standalone {
            dir,
            default_address,
            debounce,
        } => {
            let config = StandaloneConfig {
                dir,
                default_address,
                debounce,
                proxy: ProxyOptions::default(),
            };
            let out: portico::standalone::Output = Arc::new(|text: &str| println!("{text}"));
            let standalone = Standalone::start(config, out).await?;
            shutdown_signal().await?;
            println!("shutting down");
            standalone.shutdown().await;
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
