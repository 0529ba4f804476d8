//! `portico-operator` and `portico-cert-sync` on the host and one `portico-proxy` as a pod
//! of the pod network, child processes whose output is kept for failure messages and the
//! run folder.
//!
//! ```text
//!   host: portico-cert-sync --kubeconfig K --secrets-namespace portico-secrets
//!           copies the Secrets our Gateways' listeners name into portico-secrets
//!   host: portico-operator --kubeconfig K --lb-ipam --insecure
//!           --secrets-namespace portico-secrets   (certificates only from those copies)
//!           --config-listen <pod network host address>:0   ──"config server listening addr=A"
//!   netns: portico-proxy --operator http://A --insecure --admin <proxy pod>:9902
//! ```
//!
//! As the Helm chart installs them: every TLS case goes through cert-sync's copies, the
//! operator never reads a Secret outside the secrets namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_testkit::{PodNetwork, Process};
use tokio::process::Command;

/// How long a binary may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxy's admin port inside its pod (the pod network is the run's own).
pub(crate) const PROXY_ADMIN_PORT: u16 = 9902;

/// The operator's Lease namespace (created by the runner, as an installation would).
pub(crate) const OPERATOR_NAMESPACE: &str = "portico-system";

/// Where cert-sync copies certificates and the operator reads them (created by the
/// runner, as the chart does).
pub(crate) const SECRETS_NAMESPACE: &str = portico_api::names::DEFAULT_SECRETS_NAMESPACE;

/// cert-sync's debounce: cases change Secrets and Gateways often.
const CERT_SYNC_DEBOUNCE: Duration = Duration::from_millis(50);

/// The name the proxy gives itself in the operator's records.
const PROXY_NODE: &str = "portico-conformance-proxy";

/// A sibling binary of the running executable (`target/debug/portico-operator` next
/// to `target/debug/portico`).
pub(crate) fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate the running executable: {e}"))?;
    let bin = exe
        .parent()
        .map(|dir| dir.join(name))
        .ok_or_else(|| format!("{} has no parent folder", exe.display()))?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: the local-cluster target runs it next to portico; build it with \
             `cargo build --bin {name}`",
            bin.display()
        ))
    }
}

/// Starts the operator; returns it and where its config server listens.
pub(crate) async fn start_operator(
    kubeconfig: &Path,
    config_listen: Ipv4Addr,
    debounce: Duration,
) -> Result<(Process, SocketAddr), String> {
    let bin = sibling("portico-operator")?;
    let mut command = Command::new(&bin);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--identity", "portico-conformance", "--lease-namespace"])
        .arg(OPERATOR_NAMESPACE)
        .arg("--lb-ipam")
        .arg("--secrets-namespace")
        .arg(SECRETS_NAMESPACE)
        .arg("--insecure")
        .arg("--config-listen")
        .arg(format!("{config_listen}:0"))
        .arg("--debounce")
        .arg(format!("{}ms", debounce.as_millis()))
        .args(["--log", "info"])
        .env("NO_COLOR", "1");
    let operator =
        Process::spawn_command(command).map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let line = operator
        .wait_for_line("config server listening", START_TIMEOUT)
        .await
        .map_err(|e| format!("portico-operator did not serve its config: {e}"))?;
    let addr = field(&line, "addr")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("portico-operator: no address in {line:?}"))?;
    Ok((operator, addr))
}

/// Starts cert-sync (its Lease beside the operator's, metrics on a free loopback port)
/// and waits until it has bound its port; it copies as soon as it leads.
pub(crate) async fn start_cert_sync(kubeconfig: &Path) -> Result<Process, String> {
    let bin = sibling("portico-cert-sync")?;
    let mut command = Command::new(&bin);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--identity", "portico-conformance", "--lease-namespace"])
        .arg(OPERATOR_NAMESPACE)
        .arg("--secrets-namespace")
        .arg(SECRETS_NAMESPACE)
        .args(["--metrics-listen", "127.0.0.1:0", "--debounce"])
        .arg(format!("{}ms", CERT_SYNC_DEBOUNCE.as_millis()))
        .args(["--log", "info"])
        .env("NO_COLOR", "1");
    spawn_until(command, &bin, "metrics and health listening").await
}

/// Starts the proxy inside the pod network on `ip`.
pub(crate) async fn start_proxy(
    network: &PodNetwork,
    ip: Ipv4Addr,
    operator: SocketAddr,
) -> Result<Process, String> {
    let bin = sibling("portico-proxy")?;
    let mut command = network.command(&bin);
    command
        .arg("--operator")
        .arg(format!("http://{operator}"))
        .arg("--insecure")
        .args(["--node", PROXY_NODE, "--admin"])
        .arg(SocketAddr::from((ip, PROXY_ADMIN_PORT)).to_string())
        .args(["--log", "info"])
        .env("NO_COLOR", "1");
    spawn_until(command, &bin, "admin endpoint listening").await
}

/// Spawns `command` (the binary `bin`) and waits until it prints `ready`.
async fn spawn_until(command: Command, bin: &Path, ready: &str) -> Result<Process, String> {
    let process =
        Process::spawn_command(command).map_err(|e| format!("starting {}: {e}", bin.display()))?;
    process
        .wait_for_line(ready, START_TIMEOUT)
        .await
        .map_err(|e| format!("{} did not start: {e}", bin.display()))?;
    Ok(process)
}

/// The value of `name=` in a tracing line (colours, if any, stripped).
fn field(line: &str, name: &str) -> Option<String> {
    let plain = strip_ansi(line);
    let start = plain.find(&format!("{name}="))? + name.len() + 1;
    plain[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"').to_owned())
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `lines` lines a process printed, indented, for a failure message.
pub(crate) fn tail(name: &str, process: &Process, lines: usize) -> String {
    let all = process.lines();
    let start = all.len().saturating_sub(lines);
    let mut out = format!("--- {name} (last {} lines)", all.len() - start);
    for line in &all[start..] {
        out.push_str("\n  ");
        out.push_str(&strip_ansi(&line.text));
    }
    out
}

/// Everything a process printed, for the run folder.
pub(crate) fn write_log(dir: &Path, name: &str, process: &Process) {
    let text: String = process
        .lines()
        .iter()
        .map(|l| format!("{}\n", strip_ansi(&l.text)))
        .collect();
    if let Err(error) = std::fs::write(dir.join(format!("{name}.log")), text) {
        tracing::warn!(%error, "cannot write the {name} log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_tracing_lines() {
        let plain = "2026-01-01T00:00:00Z  INFO portico_operator::xds::serve: config server listening addr=10.244.3.1:41000 tls=false";
        assert_eq!(field(plain, "addr").as_deref(), Some("10.244.3.1:41000"));
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m config server listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m10.244.3.1:41000 \u{1b}[3mtls\u{1b}[0m\u{1b}[2m=\u{1b}[0mfalse";
        assert_eq!(field(coloured, "addr").as_deref(), Some("10.244.3.1:41000"));
        assert_eq!(field(plain, "nothing"), None);
    }
}
