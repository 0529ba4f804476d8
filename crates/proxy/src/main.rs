//! `portico-proxy`: parses flags, installs the TLS crypto provider, sets up logging, and
//! runs [`portico_proxy::client::run`] until SIGINT or SIGTERM, on a runtime sized for the
//! CPUs it is given ([`portico_proxy::client::runtime`]).

use anyhow::Context;
use clap::Parser;
use portico_api::logging::{self, LogStream};
use portico_proxy::client::{Args, run, runtime};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    runtime::build()
        .context("tokio runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // tonic's TLS uses the process-wide provider; ring is the one the workspace builds
    // rustls with. Failing means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The access log is on: one JSON line per request on stdout (portico::access).
    logging::init(&args.log, args.log_format, LogStream::Stdout, true).context("--log")?;

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
