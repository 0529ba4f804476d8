//! `make bench` / `make bench-quick`: Portico against nginx, HAProxy and a direct
//! connection on this machine, and Portico's control plane at scale.
//!
//! ```text
//!   CPU 1: this driver, wrk / h2load / the open-loop client, the backends
//!   CPU 0: the proxy under test (one worker): portico standalone | nginx | haproxy
//! ```
//!
//! Every data-plane scenario runs the same client against every peer in the same run,
//! interleaved, `--reps` times after a warm-up; a repetition whose direct run swung by more
//! than 2x from the median is discarded. CPU per request comes from the proxy's
//! utime+stime (/proc/PID/stat) over the run, which noise on the shared machine moves far
//! less than requests/s. Results: `bench/results/<date>.json` and `.md`
//! (`quick-<date>.*` for `--quick`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod backend;
mod budget;
mod cluster;
mod config;
mod control;
mod dataplane;
mod load;
mod peers;
mod report;
mod stats;
mod tools;

use budget::Budget;
use peers::Kind;
use tools::Tool;

/// Debounce given to `portico standalone` (how long the folder must be quiet); part of
/// every propagation time measured.
pub(crate) const DEBOUNCE: &str = "5ms";

#[derive(Debug, Parser)]
#[command(name = "portico-bench", about = "Portico benchmarks (make bench)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The two-minute subset: HTTP/1.1 keep-alive against all peers and one
    /// control-plane size.
    #[arg(long)]
    quick: bool,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Where the release `portico` binary is.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Measured repetitions per scenario (after one warm-up).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Seconds this run may take from its start; scenarios that would not fit are
    /// skipped and listed in `not_run`.
    #[arg(long)]
    budget_secs: Option<u64>,
    /// The same as a Unix time (`make bench` passes its own start + 29 minutes, so that
    /// the build's time counts too).
    #[arg(long)]
    deadline_unix: Option<u64>,
    /// Skip the local-cluster target (`portico dev-cluster`, needs root).
    #[arg(long)]
    no_cluster: bool,
    /// Added to every 127.0.0.1 port the bench listens on (18080.., 19000..), to run
    /// beside another process that holds them.
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
    /// POSTs outstanding at once when the local-cluster target creates routes in bulk.
    #[arg(long, default_value_t = cluster::IN_FLIGHT)]
    posts_in_flight: usize,
    /// Only the local-cluster target (to try it alone, e.g. with debug binaries).
    #[arg(long, conflicts_with = "no_cluster")]
    only_cluster: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The benchmark backend (started by the driver).
    Backend {
        #[arg(long)]
        port: u16,
        /// The address to listen on (the local-cluster target's proxy reaches the host
        /// on the pod network's host address).
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
    },
    /// Writes the `portico standalone` folder the data-plane scenarios serve (HTTP and
    /// HTTPS listeners, `routes` routes), to profile the proxy by hand (bench/README.md).
    PorticoConfig {
        #[arg(long, default_value_t = 10)]
        routes: usize,
        dir: PathBuf,
    },
}

/// The issue's scenarios this run does not measure, each with the reason.
fn not_run(quick: bool) -> Vec<Value> {
    let mut list = vec![json!({
        "scenario": "route and weight changes every 100 ms on the local-cluster target",
        "reason": "measured on `portico standalone` only (control_plane.churn)",
    })];
    if quick {
        list.push(json!({
            "scenario": "new connection per request, HTTP/2 cleartext and TLS, TLS handshakes, 1 MiB bodies, 1,000 connections with 10 ms delay, weighted split, 5,000 routes; propagation at 10, 100 and 5,000 routes",
            "reason": "--quick runs HTTP/1.1 keep-alive and one control-plane size only; `make bench` runs them",
        }));
    }
    list
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Backend { port, ip }) => {
            return backend::run(std::net::SocketAddr::new(ip, port));
        }
        Some(Cmd::PorticoConfig { routes, dir }) => {
            return peers::write_portico_config(&dir, routes, &config::Tls::generate()?);
        }
        None => {}
    }
    // The driver, its tools and the backends on CPU 1; the proxies get CPU 0.
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(1).context("cpu set")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)
        .context("pinning the driver to CPU 1")?;
    // 1,000 connections through a proxy need more than the default 1,024 descriptors:
    // up to the hard limit, which an unprivileged container may not raise.
    let nofile = nix::sys::resource::Resource::RLIMIT_NOFILE;
    let (_, hard) = nix::sys::resource::getrlimit(nofile).context("RLIMIT_NOFILE")?;
    let want = hard.min(65_536);
    nix::sys::resource::setrlimit(nofile, want, hard).context("raising RLIMIT_NOFILE")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(drive(cli))
}

/// How long a data-plane scenario takes: a warm-up and `reps` runs of every peer
/// (three proxies and the direct path), plus starts and stops.
fn scenario_time(tool: &Tool, warmup_secs: u32, reps: usize) -> Duration {
    let per_peer = u64::from(warmup_secs) + reps as u64 * u64::from(tool.secs());
    Duration::from_secs(per_peer * 4 + 5)
}

/// How long a control-plane size takes (standalone or local cluster), from earlier runs
/// on this machine with margin.
fn size_time(routes: usize) -> Duration {
    Duration::from_secs(match routes {
        0..=100 => 15,
        101..=1000 => 30,
        _ => 120,
    })
}

/// The same on the local cluster before any size has run (after one, the time is
/// extrapolated from the run's own bulk creation, `Cluster::size_time`): the routes are
/// POSTed through the API server while the operator reconciles; going from 1,000 to
/// 5,000 routes took 250 s in one run and 82-93 s in others (2026-11-27; the API server
/// is CPU-bound).
fn cluster_size_time(routes: usize) -> Duration {
    match routes {
        0..=1000 => size_time(routes),
        _ => Duration::from_secs(300),
    }
}

async fn drive(cli: Cli) -> anyhow::Result<()> {
    let began = Instant::now();
    anyhow::ensure!(cli.port_offset <= 40_000, "--port-offset is at most 40000");
    config::set_port_offset(cli.port_offset);
    let mut budget = Budget::new(cli.budget_secs, cli.deadline_unix);
    let portico = cli.bin_dir.join("portico");
    anyhow::ensure!(
        portico.exists(),
        "{} is missing: cargo build --release -p portico",
        portico.display()
    );
    let work = std::env::temp_dir().join(format!("portico-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let machine = report::machine();
    progress!(
        "portico-bench {} on {machine}; {}",
        if cli.quick { "quick" } else { "full" },
        budget.left().map_or("no deadline".to_owned(), |d| format!(
            "{} s until the deadline",
            d.as_secs()
        ))
    );

    let others = !cli.only_cluster;
    if others {
        peers::ensure_ports_free()?;
    }
    let _backends = peers::start_backends()?;
    let mut lab = dataplane::Lab {
        dir: work.clone(),
        bin_dir: cli.bin_dir.clone(),
        tls: config::Tls::generate()?,
        ticks: peers::clock_ticks(),
        reps: cli.reps,
        warmup_secs: 1,
        peers: Vec::new(),
        routes: 10,
        start_errors: Vec::new(),
    };
    // Seconds per run: CPU per request comes from the proxy's CPU ticks (100 per second),
    // so a few seconds at thousands of requests per second already count thousands of
    // ticks per peer and repetition.
    let secs = 4;
    let proxies = Kind::PROXIES;
    let mut scenarios = serde_json::Map::new();
    if others {
        lab.start_peers(10).await?;
    }
    let rss_idle = lab.rss();

    let keepalive = Tool::Wrk {
        connections: 32,
        secs,
        close: false,
        tls: false,
        path_suffix: "",
    };
    let time = |tool: &Tool| scenario_time(tool, lab.warmup_secs, lab.reps);
    let keepalive_time = time(&keepalive) + Duration::from_secs(u64::from(secs) * 4);
    let mut ka = Value::Null;
    if others && budget.fits("HTTP/1.1 keep-alive and the fixed rate", keepalive_time) {
        ka = lab.scenario("HTTP/1.1 keep-alive", &keepalive, &proxies);
        // The fixed rate: half of the slowest proxy's maximum.
        let slowest = proxies
            .iter()
            .filter_map(|k| ka["peers"][k.name()]["rps"].as_f64())
            .reduce(f64::min)
            .unwrap_or(1000.0);
        let fixed = lab.fixed_rate((slowest / 2.0).max(100.0), secs).await;
        scenarios.insert("http1_keepalive".into(), ka.clone());
        scenarios.insert("http1_keepalive_fixed_rate".into(), fixed);
    }

    if others && !cli.quick {
        let short = 3;
        let runs: Vec<(&str, &str, Tool)> = vec![
            (
                "http1_new_connection",
                "HTTP/1.1 new connection per request",
                Tool::Wrk {
                    connections: 32,
                    secs: short,
                    close: true,
                    tls: false,
                    path_suffix: "",
                },
            ),
            (
                "h2c",
                "HTTP/2 cleartext",
                Tool::H2load {
                    connections: 16,
                    streams: 10,
                    secs: short,
                    tls: false,
                },
            ),
            (
                "h2_tls",
                "HTTP/2 over TLS",
                Tool::H2load {
                    connections: 16,
                    streams: 10,
                    secs: short,
                    tls: true,
                },
            ),
            (
                "tls_handshakes",
                "TLS handshakes (HTTPS, new connection per request)",
                Tool::Wrk {
                    connections: 32,
                    secs: short,
                    close: true,
                    tls: true,
                    path_suffix: "",
                },
            ),
            (
                "body_1mib",
                "1 MiB responses streamed",
                Tool::Wrk {
                    connections: 16,
                    secs: short,
                    close: false,
                    tls: false,
                    path_suffix: backend::BIG,
                },
            ),
            (
                "c1000_delay_10ms",
                "1,000 connections, backend answers after 10 ms",
                Tool::Wrk {
                    connections: 1000,
                    secs: short,
                    close: false,
                    tls: false,
                    path_suffix: backend::SLOW,
                },
            ),
        ];
        for (key, name, tool) in runs {
            if budget.fits(name, time(&tool)) {
                scenarios.insert(key.into(), lab.scenario(name, &tool, &proxies));
            }
        }
        if budget.fits("weighted split", Duration::from_secs(40)) {
            scenarios.insert("weighted_split".into(), lab.split(100_000).await);
        }

        // 5,000 routes: restart every peer with them, same load on the last route.
        let need = time(&keepalive) + Duration::from_secs(40);
        if budget.fits("HTTP/1.1 keep-alive, 5,000 routes", need) {
            lab.peers.clear();
            if let Err(e) = lab.start_peers(5000).await {
                progress!("   5,000 routes: {e:#}");
                scenarios.insert("routes_5000".into(), json!({ "error": format!("{e:#}") }));
            } else {
                let mut r = lab.scenario("HTTP/1.1 keep-alive, 5,000 routes", &keepalive, &proxies);
                let rss = lab.rss();
                let mut vs_10 = serde_json::Map::new();
                for k in proxies {
                    let (a, b) = (
                        r["peers"][k.name()]["rps"].as_f64(),
                        ka["peers"][k.name()]["rps"].as_f64(),
                    );
                    if let (Some(a), Some(b)) = (a, b)
                        && b > 0.0
                    {
                        vs_10.insert(k.name().into(), json!(a / b));
                    }
                }
                r["rps_5000_over_10"] = Value::Object(vs_10);
                r["rss_kib"] = rss;
                scenarios.insert("routes_5000".into(), r);
            }
        }
    }
    let rss_loaded = lab.rss();
    lab.peers.clear();

    let probes = if cli.quick { 3 } else { 5 };
    let control = control::ControlLab {
        dir: work.join("control"),
        bin_dir: cli.bin_dir.clone(),
        ticks: lab.ticks,
        probes,
        load_rate: 1000.0,
    };
    let sizes: &[usize] = if cli.quick {
        &[1000]
    } else {
        &[10, 100, 1000, 5000]
    };
    let failed = |e: anyhow::Error| {
        progress!("   failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    };
    let mut propagation = Vec::new();
    for &n in sizes {
        if others
            && budget.fits(
                &format!("standalone: new route with {n} routes"),
                size_time(n),
            )
        {
            propagation.push(control.propagation(n).await.unwrap_or_else(|e| {
                let mut v = failed(e);
                v["routes"] = json!(n);
                v
            }));
        }
    }
    let mut attached = Value::Null;
    if others && budget.fits("standalone: 1,000 routes attached", Duration::from_secs(20)) {
        attached = control.attached(1000).await.unwrap_or_else(failed);
    }
    let churn_secs = if cli.quick { 10 } else { 30 };
    let mut churn = Value::Null;
    if others
        && budget.fits(
            "standalone: route and weight changes under load",
            Duration::from_secs(churn_secs + 15),
        )
    {
        churn = control.churn(churn_secs).await.unwrap_or_else(failed);
    }

    let cluster_lab = cluster::ClusterLab {
        dir: work.join("cluster"),
        bin_dir: cli.bin_dir.clone(),
        ticks: lab.ticks,
        probes,
        load_rate: 1000.0,
        in_flight: cli.posts_in_flight.max(1),
    };
    let cluster_sizes: &[usize] = if cli.quick {
        &[100]
    } else {
        &[10, 100, 1000, 5000]
    };
    let cluster = if cli.no_cluster {
        budget.skipped.push(json!({
            "scenario": "control plane on the local-cluster target",
            "reason": "--no-cluster",
        }));
        Value::Null
    } else if budget.fits(
        "local cluster: start and 1,000 routes attached",
        Duration::from_secs(60),
    ) {
        local_cluster(&cluster_lab, cluster_sizes, &mut budget).await
    } else {
        Value::Null
    };

    let mut machine_json = machine.to_json();
    machine_json["load_avg_end"] = json!(report::loadavg());
    let mut skipped = not_run(cli.quick);
    skipped.append(&mut budget.skipped);
    let results = json!({
        "date": date,
        "mode": if cli.quick { "quick" } else { "full" },
        "machine": machine_json,
        "versions": report::versions(),
        "setup": {
            "proxy_cpu": peers::PROXY_CPU,
            "client_and_backend_cpu": "1",
            "portico": format!("portico standalone, TOKIO_WORKER_THREADS=1, access log off, --debounce {DEBOUNCE}"),
            "nginx": "worker_processes 1, master_process off, access_log off, upstream keepalive, proxy_buffering off; a server block per host",
            "haproxy": "nbthread 1, no logs, http-reuse always; routes in a map file (map_str on host/first path segment, the header checked against the value)",
            "local_cluster": format!("portico dev-cluster (in-memory API server, portico-operator and portico-proxy as processes, operator debounce {}ms) on CPU 0 with TOKIO_WORKER_THREADS=1; objects created with POST, statuses read with GET", cluster::OPERATOR_DEBOUNCE_MS),
            "reps": cli.reps,
            "warmup_secs": lab.warmup_secs,
            "discard_rule": "a repetition whose direct req/s is more than 2x off the median direct req/s",
        },
        "peer_start_errors": lab.start_errors,
        "rss_kib_idle_10_routes": rss_idle,
        "rss_kib_after_data_plane": rss_loaded,
        "scenarios": scenarios,
        "control_plane": {
            "target": "standalone",
            "propagation": propagation,
            "attached": attached,
            "churn": churn,
        },
        "control_plane_local_cluster": cluster,
        "not_run": skipped,
        "duration_s": began.elapsed().as_secs_f64(),
    });
    let day = &date[..10];
    let stem = if cli.quick {
        format!("quick-{day}")
    } else {
        day.to_owned()
    };
    std::fs::create_dir_all(&cli.out)?;
    let json_path = cli.out.join(format!("{stem}.json"));
    let md_path = cli.out.join(format!("{stem}.md"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(&md_path, report::markdown(&results))?;
    let _ = std::fs::remove_dir_all(&work);
    progress!(
        "wrote {} and {} in {:.0} s",
        json_path.display(),
        md_path.display(),
        began.elapsed().as_secs_f64()
    );
    println!("{}", report::markdown(&results));
    Ok(())
}

/// The local-cluster target: start, 1,000 routes attached at once, then each size.
async fn local_cluster(lab: &cluster::ClusterLab, sizes: &[usize], budget: &mut Budget) -> Value {
    let started = Instant::now();
    let mut c = match lab.start().await {
        Ok(c) => c,
        Err(e) => {
            progress!("   local cluster did not start: {e:#}");
            budget.skipped.push(json!({
                "scenario": "control plane on the local-cluster target",
                "reason": format!("portico dev-cluster did not start: {e:#}"),
            }));
            return json!({ "error": format!("{e:#}") });
        }
    };
    let start_s = started.elapsed().as_secs_f64();
    let idle = lab.idle(&c).await;
    let attached = lab.attached(&mut c, 1000).await.unwrap_or_else(|e| {
        progress!("   failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    let mut propagation = Vec::new();
    for &n in sizes {
        if !budget.fits(
            &format!("local cluster: new route with {n} routes"),
            c.size_time(n, lab.probes, cluster_size_time(n)),
        ) {
            // In the table too, not only under "Not run".
            let reason = budget.skipped.last().map(|s| s["reason"].clone());
            propagation.push(json!({ "routes": n, "skipped": reason }));
            continue;
        }
        // Creating stops when what is left would not cover the rest of the size (the new
        // routes timed idle and under load, 25-35 s at 5,000 routes), stopping the
        // cluster (1-13 s) and writing the results; `make bench`'s `timeout` allows 60 s
        // past the deadline.
        let reserve = Duration::from_secs(if n > 1000 { 50 } else { 20 });
        let until = budget
            .left()
            .map(|left| Instant::now() + left.saturating_sub(reserve));
        match lab.size(&mut c, n, until).await {
            Ok(v) if v["skipped"].is_string() => {
                budget.skipped.push(json!({
                    "scenario": format!("local cluster: new route with {n} routes"),
                    "reason": v["skipped"],
                }));
                propagation.push(v);
                // The next sizes build on this one.
                break;
            }
            Ok(v) => propagation.push(v),
            Err(e) => {
                progress!("   failed: {e:#}");
                propagation.push(json!({ "routes": n, "error": format!("{e:#}") }));
                // The next sizes build on this one.
                break;
            }
        }
    }
    let stopping = Instant::now();
    drop(c);
    progress!("   local cluster stopped in {:.1?}", stopping.elapsed());
    json!({
        "target": "local-cluster",
        "start_s": start_s,
        "rss_kib_idle": idle,
        "attached": attached,
        "propagation": propagation,
    })
}
