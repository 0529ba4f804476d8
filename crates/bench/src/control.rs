//! Control-plane scenarios against `portico standalone DIR`: how long a new HTTPRoute
//! takes to answer 200 with N routes present (idle and under load), how long 1,000 routes
//! take to be reported attached, memory per route, and failed requests while routes and
//! weights change every 100 ms.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::config::{self, Ports, Target};
use crate::load::{self, Outcome};
use crate::peers::{self, Kind, Peer, Proc};
use crate::{progress, stats};

/// Where the control-plane lab's Portico listens.
pub(crate) fn port() -> u16 {
    config::port(18090)
}
/// Route numbers of the routes added while measuring (far above any size).
const NEW: usize = 1_000_000;

#[derive(Debug)]
pub(crate) struct ControlLab {
    pub(crate) dir: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) ticks: u64,
    /// New routes timed per size (idle, and again under load).
    pub(crate) probes: usize,
    /// Requests per second of the background load.
    pub(crate) load_rate: f64,
}

fn ports() -> Ports {
    Ports {
        http: port(),
        h2c: port(),
        https: None,
    }
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port()))
}

fn routes_yaml(n: usize) -> String {
    (0..n)
        .map(|i| config::portico_route(&format!("r{i}"), i))
        .collect()
}

/// A running `portico standalone` over `dir`.
struct Running {
    peer: Peer,
    started: Instant,
}

impl ControlLab {
    fn start(&self, dir: &Path) -> anyhow::Result<Running> {
        let mut command = peers::portico_command(&self.bin_dir, dir);
        command
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null());
        let started = Instant::now();
        let mut proc = Proc::spawn("portico", command)?;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        peers::drain(&mut proc, lines.clone());
        let peer = Peer {
            kind: Kind::Portico,
            proc: Some(proc),
            addr: addr(),
            lines,
        };
        Ok(Running { peer, started })
    }

    fn prepare(&self, name: &str, routes: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        peers::write(
            &dir.join("00-base.yaml"),
            &config::portico_base(ports(), None),
        )?;
        if !routes.is_empty() {
            peers::write(&dir.join("10-routes.yaml"), routes)?;
        }
        Ok(dir)
    }

    /// Time to the first 200 of new routes with `n` routes present; CPU and memory.
    pub(crate) async fn propagation(&self, n: usize) -> anyhow::Result<Value> {
        progress!("== propagation with {n} routes");
        let dir = self.prepare(&format!("cp-{n}"), &routes_yaml(n))?;
        let mut run = self.start(&dir)?;
        let startup = peers::wait_for(
            &mut run.peer,
            &config::target(n - 1),
            200,
            Duration::from_secs(300),
        )
        .await?;
        let startup = run.started.elapsed().max(startup);
        let pid = run.peer.pid().context("portico pid")?;
        let startup_cpu_us = peers::cpu_us(pid, self.ticks);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle = peers::status_kib(pid, "VmRSS");

        let mut idle_ms = Vec::new();
        for j in 0..self.probes {
            idle_ms.push(self.add_route(&dir, &mut run.peer, NEW + j).await?);
        }
        let cpu_before_load = peers::cpu_us(pid, self.ticks);
        let (stop, load) = self.background_load(config::target(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut load_ms = Vec::new();
        for j in 0..self.probes {
            load_ms.push(
                self.add_route(&dir, &mut run.peer, NEW + self.probes + j)
                    .await?,
            );
        }
        stop.store(true, Ordering::Relaxed);
        let outcome = load.await.unwrap_or_default();
        let cpu_end = peers::cpu_us(pid, self.ticks);
        let hwm = peers::status_kib(pid, "VmHWM");
        progress!(
            "   startup {startup:?}, new route idle {:?} ms, under load {:?} ms, rss {rss_idle:?} KiB, peak {hwm:?} KiB, load errors {}",
            stats::median(&idle_ms),
            stats::median(&load_ms),
            outcome.non_2xx + outcome.socket_errors
        );
        Ok(json!({
            "routes": n,
            "startup_s": startup.as_secs_f64(),
            "startup_cpu_s": startup_cpu_us.map(|us| us as f64 / 1e6),
            "new_route_idle": stats::summary_ms(&idle_ms),
            "new_route_under_load": stats::summary_ms(&load_ms),
            "load": load_json(self.load_rate, &outcome),
            "cpu_s_total": cpu_end.map(|us| us as f64 / 1e6),
            "cpu_s_during_load": match (cpu_before_load, cpu_end) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
                _ => None,
            },
            "rss_kib": rss_idle,
            "peak_rss_kib": hwm,
        }))
    }

    /// Writes route `i` in a file of its own and waits for its first 200; milliseconds.
    async fn add_route(&self, dir: &Path, peer: &mut Peer, i: usize) -> anyhow::Result<f64> {
        let target = config::target(i);
        let path = dir.join(format!("20-new-{i}.yaml"));
        let yaml = config::portico_route(&format!("new-{i}"), i);
        let start = Instant::now();
        peers::write(&path, &yaml)?;
        peers::wait_for(peer, &target, 200, Duration::from_secs(60)).await?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    }

    fn background_load(
        &self,
        target: Target,
    ) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Outcome>) {
        load::background(addr(), target, self.load_rate)
    }

    /// Starts with no route, then writes `n` at once: how long until the Gateway's
    /// listener reports `n` attached routes (standalone prints statuses), and until the
    /// last one answers.
    pub(crate) async fn attached(&self, n: usize) -> anyhow::Result<Value> {
        progress!("== {n} routes attached");
        let dir = self.prepare(&format!("attach-{n}"), "")?;
        let mut run = self.start(&dir)?;
        peers::wait_for(
            &mut run.peer,
            &config::target(0),
            404,
            Duration::from_secs(60),
        )
        .await?;
        let start = Instant::now();
        peers::write(&dir.join("10-routes.yaml"), &routes_yaml(n))?;
        let want = format!("({n} routes)");
        let deadline = start + Duration::from_secs(120);
        let reported = loop {
            let seen = run.peer.lines.lock().ok().and_then(|lines| {
                lines
                    .iter()
                    .find(|(at, line)| *at >= start && line.contains(&want))
                    .map(|(at, _)| *at)
            });
            if let Some(at) = seen {
                break at.duration_since(start);
            }
            if Instant::now() > deadline {
                bail!("no status line with {want} within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let serving = peers::wait_for(
            &mut run.peer,
            &config::target(n - 1),
            200,
            Duration::from_secs(120),
        )
        .await?;
        let serving = start.elapsed().max(serving);
        progress!(
            "   attachedRoutes {n} reported after {reported:?}, last route serving after {serving:?}"
        );
        Ok(json!({
            "routes": n,
            "attached_reported_ms": reported.as_secs_f64() * 1000.0,
            "last_route_serving_ms": serving.as_secs_f64() * 1000.0,
        }))
    }

    /// Route and weight changes every 100 ms for `secs` under fixed-rate load on the
    /// route being changed; every non-2xx and socket error counted.
    pub(crate) async fn churn(&self, secs: u64) -> anyhow::Result<Value> {
        progress!("== route and weight changes every 100 ms for {secs} s under load");
        const HOST: &str = "churn.example.com";
        let weights = [[80, 15, 5], [50, 50, 0], [0, 0, 100], [34, 33, 33]];
        let dir = self.prepare("churn", &routes_yaml(100))?;
        let route = dir.join("20-churn.yaml");
        peers::write(&route, &config::portico_split("churn", HOST, weights[0]))?;
        let mut run = self.start(&dir)?;
        let target = Target {
            host: HOST.to_owned(),
            path: "/".to_owned(),
            headers: Vec::new(),
        };
        peers::wait_for(&mut run.peer, &target, 200, Duration::from_secs(60)).await?;
        let (stop, load) = self.background_load(target);
        let start = Instant::now();
        let mut changes = 0usize;
        let extra = dir.join("30-extra.yaml");
        while start.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            changes += 1;
            peers::write(
                &route,
                &config::portico_split("churn", HOST, weights[changes % weights.len()]),
            )?;
            // Every other change also adds or removes a route.
            if changes.is_multiple_of(2) {
                if changes.is_multiple_of(4) {
                    peers::write(&extra, &config::portico_route("extra", NEW + 999))?;
                } else {
                    let _ = fs::remove_file(&extra);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let outcome = load.await.unwrap_or_default();
        progress!(
            "   {changes} changes: {} ok, {} non-2xx, {} socket errors",
            outcome.ok,
            outcome.non_2xx,
            outcome.socket_errors
        );
        Ok(json!({
            "secs": secs,
            "changes": changes,
            "load": load_json(self.load_rate, &outcome),
        }))
    }
}

pub(crate) fn load_json(rate: f64, o: &Outcome) -> Value {
    json!({
        "rate": rate,
        "ok": o.ok,
        "non_2xx": o.non_2xx,
        "socket_errors": o.socket_errors,
        "p50_ms": stats::percentile(&o.latencies_us, 50.0).map(|us| us as f64 / 1000.0),
        "p99_ms": stats::percentile(&o.latencies_us, 99.0).map(|us| us as f64 / 1000.0),
    })
}
