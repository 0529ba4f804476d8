//! `portico-echo`: flags in, [`portico_echo::serve`] called, stopped on Ctrl-C or
//! SIGTERM. The first line on stdout is `listening on ADDR`, so scripts and tests can ask
//! for port 0 and read the port back. With `--log-requests` every later stdout line is
//! one request as JSON (`{"method":"GET","path":"/a?b","host":"h"}`).

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portico_echo::{DEFAULT_LISTEN, EchoConfig, Identity};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Echo backend: answers every request with JSON describing the request it saw.
#[derive(Debug, Parser)]
#[command(name = "portico-echo", version, about)]
struct Args {
    /// Address to listen on (HTTP/1.1 and h2c). Default 0.0.0.0:3000.
    #[arg(long, env = "ECHO_LISTEN")]
    listen: Option<SocketAddr>,

    /// Port to listen on, on all IPv4 addresses: echo-basic's variable, used when
    /// --listen is not given.
    #[arg(long, env = "HTTP_PORT")]
    http_port: Option<u16>,

    /// Pod name reported in answers. Falls back to $HOSTNAME, then the host name.
    #[arg(long, env = "POD_NAME")]
    pod: Option<String>,

    /// Namespace reported in answers.
    #[arg(long, env = "NAMESPACE", default_value = "")]
    namespace: String,

    /// Service name reported in answers.
    #[arg(long, env = "SERVICE_NAME", default_value = "")]
    service: String,

    /// echo-basic's `ingress` field.
    #[arg(long, env = "INGRESS_NAME", default_value = "")]
    ingress: String,

    /// How long shutdown lets open connections finish.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Print one JSON line per request on stdout, after the `listening on` line: the
    /// record a test reads to learn that a request it got no answer to (a mirrored one)
    /// reached this backend.
    #[arg(long)]
    log_requests: bool,
}

impl Args {
    fn into_config(self) -> EchoConfig {
        // `log_requests` is not part of the server's config: the binary subscribes.
        let listen = match (self.listen, self.http_port) {
            (Some(listen), _) => listen,
            (None, Some(port)) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            (None, None) => DEFAULT_LISTEN,
        };
        EchoConfig {
            listen,
            identity: Identity {
                pod: self.pod.unwrap_or_else(pod_name_fallback),
                namespace: self.namespace,
                service: self.service,
                ingress: self.ingress,
            },
            drain_timeout: self.drain_timeout,
        }
    }
}

/// In a pod, HOSTNAME (and the kernel host name) is the pod name.
fn pod_name_fallback() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let log_requests = args.log_requests;
    let config = args.into_config();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // Handlers first: whoever reads the `listening on` line may signal at once, and a
    // signal before the handler exists would kill the process uncleanly.
    let stop = StopSignals::install()?;
    let server = portico_echo::serve(config).await?;
    // Subscribed before the address is out: no request can come earlier.
    let requests = log_requests.then(|| server.subscribe_requests());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .context("writing the bound address to stdout")?;
    drop(stdout);
    if let Some(requests) = requests {
        tokio::spawn(print_requests(requests));
    }

    stop.wait().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Prints the request log as JSON lines until the server stops.
async fn print_requests(mut requests: tokio::sync::broadcast::Receiver<portico_echo::SeenRequest>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match requests.recv().await {
            Ok(seen) => match serde_json::to_string(&seen) {
                Ok(line) => {
                    let mut stdout = std::io::stdout().lock();
                    if writeln!(stdout, "{line}")
                        .and_then(|()| stdout.flush())
                        .is_err()
                    {
                        // Nobody reads stdout any more: stop logging, keep serving.
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot serialize a request log line"),
            },
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "request log reader fell behind, lines lost");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (Kubernetes stopping the pod) both mean: drain and exit 0.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<SocketAddr>, http_port: Option<u16>) -> Args {
        Args {
            listen,
            http_port,
            pod: Some("p".into()),
            namespace: "n".into(),
            service: "s".into(),
            ingress: String::new(),
            drain_timeout: Duration::from_secs(1),
            log_requests: false,
        }
    }

    #[test]
    fn listen_wins_over_http_port_which_wins_over_the_default() {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 9081));
        assert_eq!(args(Some(listen), Some(1)).into_config().listen, listen);
        assert_eq!(
            args(None, Some(8080)).into_config().listen,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080))
        );
        assert_eq!(args(None, None).into_config().listen, DEFAULT_LISTEN);
    }

    #[test]
    fn flags_become_the_identity() {
        let config = args(None, None).into_config();
        assert_eq!(config.identity, Identity::new("p", "n", "s"));
        assert_eq!(config.drain_timeout, Duration::from_secs(1));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
