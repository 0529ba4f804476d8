//! Data-plane scenarios: the same client against every peer, interleaved, repeated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config::{self, Target, Tls};
use crate::load::{self, Plan};
use crate::peers::{self, Kind, Peer};
use crate::tools::Tool;
use crate::{progress, stats};

/// Everything the scenarios share.
#[derive(Debug)]
pub(crate) struct Lab {
    pub(crate) dir: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) tls: Tls,
    pub(crate) ticks: u64,
    pub(crate) reps: usize,
    pub(crate) warmup_secs: u32,
    pub(crate) peers: Vec<Peer>,
    pub(crate) routes: usize,
    /// Peers that did not start, and why.
    pub(crate) start_errors: Vec<String>,
}

/// One measurement of one peer.
#[derive(Debug, Clone)]
struct Sample {
    rps: f64,
    requests: u64,
    errors: u64,
    cpu_us_per_req: Option<f64>,
}

impl Lab {
    pub(crate) async fn start_peers(&mut self, routes: usize) -> anyhow::Result<()> {
        self.peers.clear();
        let target = config::target(routes - 1);
        // A peer that does not start is reported and left out; its cells stay empty.
        for kind in [Kind::Direct, Kind::Portico, Kind::Nginx, Kind::Haproxy] {
            match peers::start(kind, &self.dir, &self.bin_dir, routes, &self.tls, &target).await {
                Ok(peer) => self.peers.push(peer),
                Err(e) if kind == Kind::Direct => return Err(e),
                Err(e) => {
                    progress!(
                        "   {} with {routes} routes did not start: {e:#}",
                        kind.name()
                    );
                    self.start_errors
                        .push(format!("{} with {routes} routes: {e:#}", kind.name()));
                }
            }
        }
        self.routes = routes;
        Ok(())
    }

    pub(crate) fn target(&self) -> Target {
        config::target(self.routes - 1)
    }

    fn peer(&self, kind: Kind) -> Option<&Peer> {
        self.peers.iter().find(|p| p.kind == kind)
    }

    /// Runs `tool` against each of `kinds` (and the direct path, the noise reference),
    /// `reps` times after a warm-up, rotating the order each time.
    pub(crate) fn scenario(&self, name: &str, tool: &Tool, kinds: &[Kind]) -> Value {
        let target = self.target();
        let mut order: Vec<Kind> = std::iter::once(Kind::Direct)
            .chain(kinds.iter().copied())
            .collect();
        progress!("== {name}");
        for &kind in &order {
            if let Err(e) = self.measure(kind, &tool.with_secs(self.warmup_secs), &target) {
                progress!("   warm-up {}: {e:#}", kind.name());
            }
        }
        let mut samples: Vec<Vec<(Kind, Option<Sample>)>> = Vec::new();
        for rep in 0..self.reps {
            order.rotate_left(usize::from(rep > 0));
            let mut round = Vec::new();
            for &kind in &order {
                let sample = match self.measure(kind, tool, &target) {
                    Ok(s) => {
                        progress!(
                            "   rep {rep} {:8} {:>10.0} req/s  cpu {:>7} us/req  errors {}",
                            kind.name(),
                            s.rps,
                            s.cpu_us_per_req
                                .map_or("-".to_owned(), |c| format!("{c:.1}")),
                            s.errors
                        );
                        Some(s)
                    }
                    Err(e) => {
                        progress!("   rep {rep} {}: {e:#}", kind.name());
                        None
                    }
                };
                round.push((kind, sample));
            }
            samples.push(round);
        }
        summarize(tool, &order, &samples)
    }

    fn measure(&self, kind: Kind, tool: &Tool, target: &Target) -> anyhow::Result<Sample> {
        let peer = self
            .peer(kind)
            .ok_or_else(|| anyhow::anyhow!("{} is not running", kind.name()))?;
        let (addr, tool) = address(kind, tool);
        let pid = peer.pid();
        let before = pid.and_then(|p| peers::cpu_us(p, self.ticks));
        let run = tool.run(addr, target)?;
        let after = pid.and_then(|p| peers::cpu_us(p, self.ticks));
        let cpu_us_per_req = match (before, after) {
            (Some(b), Some(a)) if run.requests > 0 => {
                Some(a.saturating_sub(b) as f64 / run.requests as f64)
            }
            _ => None,
        };
        Ok(Sample {
            rps: run.rps,
            requests: run.requests,
            errors: run.errors,
            cpu_us_per_req,
        })
    }

    /// p50 and p99 at a fixed open-loop rate, and RSS, for every peer.
    pub(crate) async fn fixed_rate(&self, rate: f64, secs: u32) -> Value {
        let target = self.target();
        let mut out = Map::new();
        progress!("== fixed rate {rate:.0} req/s for {secs}s");
        for peer in &self.peers {
            let plan = Plan {
                addr: peer.addr(),
                host: target.host.clone(),
                path: target.path.clone(),
                headers: target.headers.clone(),
                rate: Some(rate),
                count: (rate * f64::from(secs)) as u64,
                connections: 64,
                deadline: Duration::from_secs(u64::from(secs) + 10),
                stop: None,
            };
            let o = load::run(plan).await;
            let ms = |p: f64| stats::percentile(&o.latencies_us, p).map(|us| us as f64 / 1000.0);
            let rss = peer.pid().and_then(|p| peers::status_kib(p, "VmRSS"));
            progress!(
                "   {:8} p50 {:?} ms  p99 {:?} ms  non-2xx {}  socket errors {}  rss {:?} KiB",
                peer.kind.name(),
                ms(50.0),
                ms(99.0),
                o.non_2xx,
                o.socket_errors,
                rss
            );
            out.insert(
                peer.kind.name().to_owned(),
                json!({
                    "p50_ms": ms(50.0),
                    "p99_ms": ms(99.0),
                    "ok": o.ok,
                    "non_2xx": o.non_2xx,
                    "socket_errors": o.socket_errors,
                    "rss_kib": rss,
                }),
            );
        }
        json!({ "rate": rate, "secs": secs, "peers": out })
    }

    /// `count` requests to the split host through each proxy; the share each backend got.
    pub(crate) async fn split(&self, count: u64) -> Value {
        let mut out = Map::new();
        progress!("== weighted split 80/15/5 over {count} requests");
        for kind in Kind::PROXIES {
            let Some(peer) = self.peer(kind) else {
                continue;
            };
            let before = backend_counts().await;
            let plan = Plan {
                addr: peer.addr(),
                host: config::SPLIT_HOST.to_owned(),
                path: "/".to_owned(),
                headers: Vec::new(),
                rate: None,
                count,
                connections: 32,
                deadline: Duration::from_secs(300),
                stop: None,
            };
            let o = load::run(plan).await;
            let after = backend_counts().await;
            let counts: Vec<u64> = match (before, after) {
                (Some(b), Some(a)) => a.iter().zip(b).map(|(a, b)| a.saturating_sub(b)).collect(),
                _ => Vec::new(),
            };
            let deviation = stats::split_deviation(&counts, &config::SPLIT_WEIGHTS);
            progress!(
                "   {:8} counts {counts:?} deviation {deviation:?} pp, non-2xx {} errors {}",
                kind.name(),
                o.non_2xx,
                o.socket_errors
            );
            out.insert(
                kind.name().to_owned(),
                json!({
                    "counts": counts,
                    "max_deviation_pct_points": deviation,
                    "non_2xx": o.non_2xx,
                    "socket_errors": o.socket_errors,
                    "rps": o.ok as f64 / o.elapsed.as_secs_f64().max(1e-9),
                }),
            );
        }
        json!({ "weights": config::SPLIT_WEIGHTS, "requests": count, "peers": out })
    }

    /// Resident memory of every peer now.
    pub(crate) fn rss(&self) -> Value {
        let mut out = Map::new();
        for peer in &self.peers {
            if let Some(pid) = peer.pid() {
                out.insert(
                    peer.kind.name().to_owned(),
                    json!(peers::status_kib(pid, "VmRSS")),
                );
            }
        }
        Value::Object(out)
    }
}

/// The port a peer serves `tool` on; the direct peer has no TLS, so it is measured in
/// clear text (it only tells how noisy the machine was).
fn address(kind: Kind, tool: &Tool) -> (SocketAddr, Tool) {
    let ports = kind.ports();
    let mut tool = tool.clone();
    let port = match &mut tool {
        Tool::Wrk { tls, .. } => match ports.https {
            Some(p) if *tls => p,
            _ => {
                *tls = false;
                ports.http
            }
        },
        Tool::H2load { tls, .. } => match ports.https {
            Some(p) if *tls => p,
            _ => {
                *tls = false;
                ports.h2c
            }
        },
    };
    (SocketAddr::from(([127, 0, 0, 1], port)), tool)
}

async fn backend_counts() -> Option<Vec<u64>> {
    let mut counts = Vec::new();
    for port in config::split_ports() {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let text = load::get_text(addr, "/__count").await?;
        counts.push(text.trim().parse().ok()?);
    }
    Some(counts)
}

fn describe(tool: &Tool) -> String {
    match tool {
        Tool::Wrk {
            connections,
            secs,
            close,
            tls,
            path_suffix,
        } => format!(
            "wrk -t1 -c{connections} -d{secs}s{}{}{}",
            if *close { " Connection: close" } else { "" },
            if *tls { " https" } else { "" },
            if path_suffix.is_empty() {
                String::new()
            } else {
                format!(" path …{path_suffix}")
            }
        ),
        Tool::H2load {
            connections,
            streams,
            secs,
            tls,
        } => format!(
            "h2load -t1 -c{connections} -m{streams} -D{secs}{}",
            if *tls { " https (ALPN h2)" } else { " h2c" }
        ),
    }
}

fn summarize(tool: &Tool, order: &[Kind], samples: &[Vec<(Kind, Option<Sample>)>]) -> Value {
    let get = |round: &Vec<(Kind, Option<Sample>)>, kind: Kind| {
        round
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, s)| s.clone())
    };
    let direct: Vec<f64> = samples
        .iter()
        .map(|r| get(r, Kind::Direct).map_or(0.0, |s| s.rps))
        .collect();
    let keep = stats::keep_repetitions(&direct, 2.0);
    let mut peers_out = Map::new();
    let mut medians = std::collections::BTreeMap::new();
    let mut kinds = order.to_vec();
    kinds.sort();
    for kind in kinds {
        let mut rps = Vec::new();
        let mut cpu = Vec::new();
        let mut reps = Vec::new();
        let mut errors = 0;
        let mut requests = 0;
        for (round, &kept) in samples.iter().zip(&keep) {
            let Some(s) = get(round, kind) else {
                reps.push(json!({ "failed": true, "kept": kept }));
                continue;
            };
            reps.push(json!({
                "rps": s.rps, "cpu_us_per_req": s.cpu_us_per_req, "errors": s.errors, "kept": kept,
            }));
            if kept {
                rps.push(s.rps);
                cpu.extend(s.cpu_us_per_req);
                errors += s.errors;
                requests += s.requests;
            }
        }
        let m_rps = stats::median(&rps);
        let m_cpu = stats::median(&cpu);
        medians.insert(kind, (m_rps, m_cpu));
        peers_out.insert(
            kind.name().to_owned(),
            json!({
                "rps": m_rps,
                "cpu_us_per_req": m_cpu,
                "requests": requests,
                "errors": errors,
                "reps": reps,
            }),
        );
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let m = |k: Kind| medians.get(&k).copied().unwrap_or((None, None));
    let (p_rps, p_cpu) = m(Kind::Portico);
    let (n_rps, n_cpu) = m(Kind::Nginx);
    let (h_rps, h_cpu) = m(Kind::Haproxy);
    json!({
        "tool": describe(tool),
        "discarded_reps": keep.iter().filter(|k| !**k).count(),
        "peers": peers_out,
        "ratios": {
            "portico_vs_nginx": ratio(p_rps, n_rps),
            "portico_vs_haproxy": ratio(p_rps, h_rps),
            "cpu_per_req_vs_nginx": ratio(p_cpu, n_cpu),
            "cpu_per_req_vs_haproxy": ratio(p_cpu, h_cpu),
        },
    })
}
