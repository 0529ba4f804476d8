//! The load tools from Debian (wrk, h2load) and what their output says.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::config::Target;

/// How a scenario drives a peer.
#[derive(Debug, Clone)]
pub(crate) enum Tool {
    /// wrk over HTTP/1.1 (or HTTPS): `connections`, for `secs`; `close` sends
    /// `Connection: close` so that every request opens a connection.
    Wrk {
        connections: u32,
        secs: u32,
        close: bool,
        tls: bool,
        path_suffix: &'static str,
    },
    /// h2load: `connections` with `streams` concurrent streams each, for `secs`.
    H2load {
        connections: u32,
        streams: u32,
        secs: u32,
        tls: bool,
    },
}

/// One run's totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) errors: u64,
}

impl Tool {
    pub(crate) fn secs(&self) -> u32 {
        match self {
            Tool::Wrk { secs, .. } | Tool::H2load { secs, .. } => *secs,
        }
    }

    pub(crate) fn with_secs(&self, s: u32) -> Tool {
        let mut t = self.clone();
        match &mut t {
            Tool::Wrk { secs, .. } | Tool::H2load { secs, .. } => *secs = s,
        }
        t
    }

    pub(crate) fn run(&self, addr: SocketAddr, target: &Target) -> anyhow::Result<Run> {
        match self {
            Tool::Wrk {
                connections,
                secs,
                close,
                tls,
                path_suffix,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                let mut c = Command::new("wrk");
                c.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
                    .args(["--timeout", "10s"])
                    .args(["-H", &format!("Host: {}", target.host)]);
                for (name, value) in &target.headers {
                    c.args(["-H", &format!("{name}: {value}")]);
                }
                if *close {
                    c.args(["-H", "Connection: close"]);
                }
                c.arg(format!("{scheme}://{addr}{}{path_suffix}", target.path));
                parse_wrk(&output(c)?)
            }
            Tool::H2load {
                connections,
                streams,
                secs,
                tls,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                let mut c = Command::new("h2load");
                c.args([
                    "-t1",
                    &format!("-c{connections}"),
                    &format!("-m{streams}"),
                    &format!("-D{secs}"),
                ])
                .args(["-H", &format!(":authority: {}", target.host)]);
                for (name, value) in &target.headers {
                    c.args(["-H", &format!("{name}: {value}")]);
                }
                c.arg(format!("{scheme}://{addr}{}", target.path));
                parse_h2load(&output(c)?)
            }
        }
    }
}

fn output(mut c: Command) -> anyhow::Result<String> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{c:?} failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// `N requests in 5.00s, ...`, `Requests/sec: X`, `Non-2xx or 3xx responses: N`,
/// `Socket errors: connect A, read B, write C, timeout D`.
pub(crate) fn parse_wrk(text: &str) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            run.requests = n.trim().parse().context("wrk request count")?;
            seen = true;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().context("wrk Requests/sec")?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            run.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if !seen {
        bail!("no request count in wrk's output:\n{text}");
    }
    run.requests = run.requests.saturating_sub(run.errors);
    Ok(run)
}

/// `finished in 5.00s, 12345.67 req/s, ...` and
/// `requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, 0 errored, ...`
/// (h2load counts 4xx and 5xx answers as failed).
pub(crate) fn parse_h2load(text: &str) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            run.rps = rest
                .split(", ")
                .nth(1)
                .and_then(|v| v.strip_suffix(" req/s"))
                .context("h2load req/s")?
                .parse()?;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "succeeded" => {
                        run.requests = n;
                        seen = true;
                    }
                    "failed" | "errored" | "timeout" => run.errors += n,
                    _ => {}
                }
            }
        }
    }
    if !seen {
        bail!("no request count in h2load's output:\n{text}");
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let text = "Running 5s test @ http://127.0.0.1:18080/p9/x
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  300.00us   5.00ms   90.00%
  51234 requests in 5.00s, 6.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 6
Requests/sec:  10246.80
Transfer/sec:      1.20MB
";
        let run = parse_wrk(text).unwrap_or_default();
        assert_eq!(run.requests, 51234 - 10);
        assert_eq!(run.errors, 10);
        assert!((run.rps - 10246.8).abs() < 1e-6);
    }

    #[test]
    fn h2load_output() {
        let text = "finished in 5.00s, 20000.40 req/s, 1.00MB/s
requests: 100002 total, 100162 started, 100002 done, 99990 succeeded, 12 failed, 0 errored, 0 timeout
status codes: 99990 2xx, 0 3xx, 2 4xx, 0 5xx
";
        let run = parse_h2load(text).unwrap_or_default();
        assert_eq!(run.requests, 99990);
        assert_eq!(run.errors, 12);
        assert!((run.rps - 20000.4).abs() < 1e-6);
    }
}
