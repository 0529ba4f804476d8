//! `portico-echo`: flags in, [`portico_echo::serve`] called, stopped on Ctrl-C or
//! SIGTERM. The first line on stdout is `listening on ADDR`, so scripts and tests can ask
//! for port 0 and read the port back. With `--log-requests` every later stdout line is
//! one request as JSON (`{"method":"GET","path":"/a?b","host":"h"}`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portico_echo::{DEFAULT_LISTEN, EchoConfig, Identity};

/// echo-basic's HTTPS_PORT default.
const DEFAULT_HTTPS_PORT: u16 = 8443;
use portico_api::logging::{self, LogFormat, LogStream};
use tokio::signal::unix::{Signal, SignalKind, signal};

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

    /// Serve echo-basic's TCP line protocol (welcome line, PING, IS_TLS, TEST) instead
    /// of HTTP: on --tcp-port, and with --tls-cert/--tls-key also over TLS on
    /// --tls-port. The first stdout line is then `listening on ADDR` of the plain
    /// socket, the second `tls listening on ADDR`.
    #[arg(long, env = "TCP_ECHO_SERVER", value_parser = clap::builder::BoolishValueParser::new())]
    tcp_echo: bool,

    /// Serve echo-basic's UDP echo (a JSON answer per datagram) instead of HTTP, on
    /// --udp-port; `udp listening on ADDR` on stdout (the first line, `listening on`,
    /// when --tcp-echo is not given).
    #[arg(long, env = "UDP_ECHO_SERVER", value_parser = clap::builder::BoolishValueParser::new())]
    udp_echo: bool,

    /// The line protocol's plain port (reported as `tcpport`).
    #[arg(long, env = "TCP_PORT", default_value_t = 3000)]
    tcp_port: u16,

    /// The line protocol's TLS port (reported as `tlsport`).
    #[arg(long, env = "TLS_PORT", default_value_t = 8443)]
    tls_port: u16,

    /// The UDP echo's port.
    #[arg(long, env = "UDP_PORT", default_value_t = 8080)]
    udp_port: u16,

    /// Bind the plain line protocol here instead of 0.0.0.0:--tcp-port (the reported
    /// `tcpport` stays --tcp-port: the container port a stand-in plays).
    #[arg(long)]
    tcp_listen: Option<SocketAddr>,

    /// Bind the TLS line protocol here instead of 0.0.0.0:--tls-port.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,

    /// Bind the UDP echo here instead of 0.0.0.0:--udp-port.
    #[arg(long)]
    udp_listen: Option<SocketAddr>,

    /// PEM certificate chain to also serve the HTTP echo over TLS with (echo-basic's
    /// HTTPS server, given TLS_SERVER_CERT and TLS_SERVER_PRIVKEY); the second stdout
    /// line is then `https listening on ADDR`.
    #[arg(long, requires = "https_key")]
    https_cert: Option<std::path::PathBuf>,

    /// PEM private key of --https-cert.
    #[arg(long, requires = "https_cert")]
    https_key: Option<std::path::PathBuf>,

    /// Where to serve HTTPS; default 0.0.0.0:8443 (echo-basic's HTTPS_PORT).
    #[arg(long)]
    https_listen: Option<SocketAddr>,

    /// PEM certificate chain of the TLS line protocol (see `upstream_tls_env` for
    /// echo-basic's variables).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of the TLS line protocol.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,

    /// Log line format on stderr: text or json. The filter comes from RUST_LOG
    /// (default info).
    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// The L4 servers asked for (`--tcp-echo`, `--udp-echo`), echo-basic's other modes.
#[derive(Debug)]
struct L4Plan {
    tcp: Option<(SocketAddr, u16)>,
    tls: Option<(SocketAddr, u16, std::path::PathBuf, std::path::PathBuf)>,
    udp: Option<SocketAddr>,
}

impl Args {
    fn l4_plan(&self) -> Option<L4Plan> {
        if !self.tcp_echo && !self.udp_echo {
            return None;
        }
        let any = |port: u16| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let tcp = self
            .tcp_echo
            .then(|| (self.tcp_listen.unwrap_or(any(self.tcp_port)), self.tcp_port));
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) if self.tcp_echo => Some((
                self.tls_listen.unwrap_or(any(self.tls_port)),
                self.tls_port,
                cert.clone(),
                key.clone(),
            )),
            _ => None,
        };
        let udp = self
            .udp_echo
            .then(|| self.udp_listen.unwrap_or(any(self.udp_port)));
        Some(L4Plan { tcp, tls, udp })
    }
}

impl L4Plan {
    /// Starts the servers, prints their addresses, serves until a stop signal.
    async fn run(self, identity: Identity, stop: StopSignals) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        let mut servers: (Vec<portico_echo::LineServer>, Vec<portico_echo::UdpServer>) =
            (Vec::new(), Vec::new());
        if let Some((listen, port)) = self.tcp {
            let server = portico_echo::serve_line(portico_echo::LineConfig {
                listen,
                identity: identity.clone(),
                tls: None,
                tcp_port: port,
                tls_port: self.tls.as_ref().map(|t| t.1),
            })
            .await?;
            lines.push(format!("listening on {}", server.local_addr()));
            servers.0.push(server);
        }
        if let Some((listen, port, cert, key)) = &self.tls {
            let tls = portico_echo::LineTls {
                cert_chain_pem: std::fs::read(cert)
                    .with_context(|| format!("reading {}", cert.display()))?,
                private_key_pem: std::fs::read(key)
                    .with_context(|| format!("reading {}", key.display()))?,
            };
            let server = portico_echo::serve_line(portico_echo::LineConfig {
                listen: *listen,
                identity: identity.clone(),
                tls: Some(tls),
                tcp_port: self.tcp.map_or(3000, |t| t.1),
                tls_port: Some(*port),
            })
            .await?;
            lines.push(format!("tls listening on {}", server.local_addr()));
            servers.0.push(server);
        }
        if let Some(listen) = self.udp {
            let server = portico_echo::serve_udp(listen, identity.clone()).await?;
            let prefix = if lines.is_empty() { "" } else { "udp " };
            lines.push(format!("{prefix}listening on {}", server.local_addr()));
            servers.1.push(server);
        }
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            writeln!(stdout, "{line}").context("writing the bound addresses to stdout")?;
        }
        stdout
            .flush()
            .context("writing the bound addresses to stdout")?;
        drop(stdout);
        stop.wait().await;
        tracing::info!("shutting down");
        drop(servers);
        Ok(())
    }
}

impl Args {
    /// echo-basic's certificate variables, which name two modes: with TCP_ECHO_SERVER,
    /// TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY serve the TLS line protocol; without it,
    /// TLS_SERVER_CERT and TLS_SERVER_PRIVKEY serve HTTPS beside HTTP on HTTPS_PORT (the
    /// base manifests' tls-backend Deployments). Flags win over the environment.
    fn upstream_tls_env(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let path = |name: &str| {
            var(name)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
        };
        let Some(cert) = path("TLS_SERVER_CERT") else {
            return self;
        };
        if self.tcp_echo {
            if let (None, None, Some(key)) =
                (&self.tls_cert, &self.tls_key, path("TLS_SERVER_PRIV_KEY"))
            {
                self.tls_cert = Some(cert);
                self.tls_key = Some(key);
            }
        } else if let (None, None, Some(key)) = (
            &self.https_cert,
            &self.https_key,
            path("TLS_SERVER_PRIVKEY"),
        ) {
            self.https_cert = Some(cert);
            self.https_key = Some(key);
            if self.https_listen.is_none() {
                let port = var("HTTPS_PORT").and_then(|p| p.parse().ok());
                self.https_listen =
                    port.map(|port: u16| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
            }
        }
        self
    }

    /// Where and with what certificate to serve HTTPS, when --https-cert is given.
    fn https_plan(&self) -> anyhow::Result<Option<(SocketAddr, portico_echo::LineTls)>> {
        let (Some(cert), Some(key)) = (&self.https_cert, &self.https_key) else {
            return Ok(None);
        };
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let tls = portico_echo::LineTls {
            cert_chain_pem: read(cert)?,
            private_key_pem: read(key)?,
        };
        let listen = self.https_listen.unwrap_or(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            DEFAULT_HTTPS_PORT,
        )));
        Ok(Some((listen, tls)))
    }

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
    let args = Args::parse().upstream_tls_env(|name| std::env::var(name).ok());
    let log_requests = args.log_requests;
    let log_format = args.log_format;
    let l4 = args.l4_plan();
    let https = args.https_plan()?;
    let config = args.into_config();
    // Stdout carries the `listening on` line and the request log: logs go to stderr.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    logging::init(&filter, log_format, LogStream::Stderr, false).context("RUST_LOG")?;

    // Handlers first: whoever reads the `listening on` line may signal at once, and a
    // signal before the handler exists would kill the process uncleanly.
    let stop = StopSignals::install()?;
    if let Some(plan) = l4 {
        return plan.run(config.identity, stop).await;
    }
    let https_server = match https {
        Some((listen, tls)) => {
            let config = EchoConfig {
                listen,
                ..config.clone()
            };
            Some(portico_echo::serve_https(config, &tls).await?)
        }
        None => None,
    };
    let server = portico_echo::serve(config).await?;
    // Subscribed before the address is out: no request can come earlier.
    let requests = log_requests.then(|| server.subscribe_requests());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .context("writing the bound address to stdout")?;
    if let Some(https) = &https_server {
        writeln!(stdout, "https listening on {}", https.local_addr())
            .and_then(|()| stdout.flush())
            .context("writing the bound address to stdout")?;
    }
    drop(stdout);
    if let Some(requests) = requests {
        tokio::spawn(print_requests(requests));
    }

    stop.wait().await;
    tracing::info!("shutting down");
    if let Some(https) = https_server {
        https.shutdown().await;
    }
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
    #![allow(clippy::unwrap_used)]
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
            log_format: LogFormat::Text,
            tcp_echo: false,
            udp_echo: false,
            tcp_port: 3000,
            tls_port: 8443,
            udp_port: 8080,
            tcp_listen: None,
            tls_listen: None,
            udp_listen: None,
            tls_cert: None,
            tls_key: None,
            https_cert: None,
            https_key: None,
            https_listen: None,
        }
    }

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn echo_basics_certificate_variables_pick_https_or_the_tls_line_protocol() {
        let https = args(None, None).upstream_tls_env(env(&[
            ("TLS_SERVER_CERT", "/s/crt"),
            ("TLS_SERVER_PRIVKEY", "/s/key"),
            ("HTTPS_PORT", "9443"),
        ]));
        assert_eq!(https.https_cert, Some("/s/crt".into()));
        assert_eq!(https.https_key, Some("/s/key".into()));
        assert_eq!(https.https_listen, Some("0.0.0.0:9443".parse().unwrap()));
        assert_eq!((https.tls_cert, https.tls_key), (None, None));

        let mut tcp = args(None, None);
        tcp.tcp_echo = true;
        let tcp = tcp.upstream_tls_env(env(&[
            ("TLS_SERVER_CERT", "/s/crt"),
            ("TLS_SERVER_PRIV_KEY", "/s/key"),
        ]));
        assert_eq!(tcp.tls_cert, Some("/s/crt".into()));
        assert_eq!(tcp.tls_key, Some("/s/key".into()));
        assert_eq!(tcp.https_cert, None);

        // A certificate without its key's variable starts plain HTTP, as echo-basic does.
        let lone = args(None, None).upstream_tls_env(env(&[("TLS_SERVER_CERT", "/s/crt")]));
        assert_eq!((lone.https_cert, lone.tls_cert), (None, None));
    }

    #[test]
    fn https_needs_a_certificate_and_a_key() {
        assert!(args(None, None).https_plan().unwrap().is_none());
        assert!(Args::try_parse_from(["portico-echo", "--https-cert", "c.pem"]).is_err());
        let parsed = Args::try_parse_from([
            "portico-echo",
            "--https-cert",
            "/nonexistent/c.pem",
            "--https-key",
            "/nonexistent/k.pem",
        ])
        .unwrap();
        // Unreadable files are an error, not a silent cleartext-only start.
        assert!(parsed.https_plan().is_err());
    }

    #[test]
    fn l4_modes_follow_echo_basics_variables() {
        assert!(args(None, None).l4_plan().is_none(), "HTTP by default");
        let parsed = Args::try_parse_from([
            "portico-echo",
            "--tcp-echo",
            "--tcp-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .unwrap();
        let plan = parsed.l4_plan().unwrap();
        assert_eq!(plan.tcp, Some(("127.0.0.1:0".parse().unwrap(), 3000)));
        let tls = plan.tls.unwrap();
        assert_eq!((tls.0, tls.1), ("0.0.0.0:8443".parse().unwrap(), 8443));
        assert!(plan.udp.is_none());

        let parsed =
            Args::try_parse_from(["portico-echo", "--udp-echo", "--udp-port", "53"]).unwrap();
        let plan = parsed.l4_plan().unwrap();
        assert_eq!(plan.udp, Some("0.0.0.0:53".parse().unwrap()));
        assert!(plan.tcp.is_none() && plan.tls.is_none());
        // A certificate without a key is refused.
        assert!(Args::try_parse_from(["portico-echo", "--tls-cert", "c.pem"]).is_err());
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
