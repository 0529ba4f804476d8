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
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod backend;
mod config;
mod control;
mod dataplane;
mod load;
mod peers;
mod report;
mod stats;
mod tools;

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
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The benchmark backend (started by the driver).
    Backend {
        #[arg(long)]
        port: u16,
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
fn not_run(quick: bool) -> Value {
    let mut list = vec![
        json!({
            "scenario": "control plane on the local-cluster target (operator and proxy as separate processes)",
            "reason": "not implemented in the driver: only `portico standalone` (operator's translator and the proxy in one process) is measured, so CPU and RSS are the one process's",
        }),
        json!({
            "scenario": "HTTPRoute attachedRoutes through the Kubernetes API",
            "reason": "standalone has no API server: the time is until standalone's status report prints the listener's `(1000 routes)`",
        }),
    ];
    if quick {
        list.push(json!({
            "scenario": "new connection per request, HTTP/2 cleartext and TLS, TLS handshakes, 1 MiB bodies, 1,000 connections with 10 ms delay, weighted split, 5,000 routes; propagation at 10, 100 and 5,000 routes",
            "reason": "--quick runs HTTP/1.1 keep-alive and one control-plane size only; `make bench` runs them",
        }));
    }
    Value::Array(list)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Backend { port }) => return backend::run(port),
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

async fn drive(cli: Cli) -> anyhow::Result<()> {
    let began = Instant::now();
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
    eprintln!(
        "portico-bench {} on {machine}",
        if cli.quick { "quick" } else { "full" }
    );

    let _backends = peers::start_backends()?;
    let mut lab = dataplane::Lab {
        dir: work.clone(),
        bin_dir: cli.bin_dir.clone(),
        tls: config::Tls::generate()?,
        ticks: peers::clock_ticks(),
        reps: cli.reps,
        warmup_secs: 2,
        peers: Vec::new(),
        routes: 10,
        start_errors: Vec::new(),
    };
    let secs = if cli.quick { 5 } else { 8 };
    let proxies = Kind::PROXIES;
    let mut scenarios = serde_json::Map::new();
    lab.start_peers(10).await?;
    let rss_idle = lab.rss();

    let keepalive = Tool::Wrk {
        connections: 32,
        secs,
        close: false,
        tls: false,
        path_suffix: "",
    };
    let ka = lab.scenario("HTTP/1.1 keep-alive", &keepalive, &proxies);
    // The fixed rate: half of the slowest proxy's maximum.
    let slowest = proxies
        .iter()
        .filter_map(|k| ka["peers"][k.name()]["rps"].as_f64())
        .reduce(f64::min)
        .unwrap_or(1000.0);
    let fixed = lab.fixed_rate((slowest / 2.0).max(100.0), secs).await;
    scenarios.insert("http1_keepalive".into(), ka.clone());
    scenarios.insert("http1_keepalive_fixed_rate".into(), fixed);

    if !cli.quick {
        let runs: Vec<(&str, &str, Tool)> = vec![
            (
                "http1_new_connection",
                "HTTP/1.1 new connection per request",
                Tool::Wrk {
                    connections: 32,
                    secs: 5,
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
                    secs: 6,
                    tls: false,
                },
            ),
            (
                "h2_tls",
                "HTTP/2 over TLS",
                Tool::H2load {
                    connections: 16,
                    streams: 10,
                    secs: 6,
                    tls: true,
                },
            ),
            (
                "tls_handshakes",
                "TLS handshakes (HTTPS, new connection per request)",
                Tool::Wrk {
                    connections: 32,
                    secs: 5,
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
                    secs: 5,
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
                    secs: 6,
                    close: false,
                    tls: false,
                    path_suffix: backend::SLOW,
                },
            ),
        ];
        for (key, name, tool) in runs {
            scenarios.insert(key.into(), lab.scenario(name, &tool, &proxies));
        }
        scenarios.insert("weighted_split".into(), lab.split(100_000).await);

        // 5,000 routes: restart every peer with them, same load on the last route.
        lab.peers.clear();
        if let Err(e) = lab.start_peers(5000).await {
            eprintln!("   5,000 routes: {e:#}");
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
    let rss_loaded = lab.rss();
    lab.peers.clear();

    let control = control::ControlLab {
        dir: work.join("control"),
        bin_dir: cli.bin_dir.clone(),
        ticks: lab.ticks,
        probes: if cli.quick { 3 } else { 5 },
        load_rate: 1000.0,
    };
    let sizes: &[usize] = if cli.quick {
        &[1000]
    } else {
        &[10, 100, 1000, 5000]
    };
    let mut propagation = Vec::new();
    for &n in sizes {
        propagation.push(control.propagation(n).await.unwrap_or_else(|e| {
            eprintln!("   failed: {e:#}");
            json!({ "routes": n, "error": format!("{e:#}") })
        }));
    }
    let attached = control.attached(1000).await.unwrap_or_else(|e| {
        eprintln!("   failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    let churn = control
        .churn(if cli.quick { 10 } else { 30 })
        .await
        .unwrap_or_else(|e| {
            eprintln!("   failed: {e:#}");
            json!({ "error": format!("{e:#}") })
        });

    let mut machine_json = machine.to_json();
    machine_json["load_avg_end"] = json!(report::loadavg());
    let results = json!({
        "date": date,
        "mode": if cli.quick { "quick" } else { "full" },
        "machine": machine_json,
        "versions": report::versions(),
        "setup": {
            "proxy_cpu": peers::PROXY_CPU,
            "client_and_backend_cpu": "1",
            "portico": format!("portico standalone, TOKIO_WORKER_THREADS=1, access log off, --debounce {DEBOUNCE}"),
            "nginx": "worker_processes 1, master_process off, access_log off, upstream keepalive, proxy_buffering off",
            "haproxy": "nbthread 1, no logs, http-reuse always",
            "reps": cli.reps,
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
        "not_run": not_run(cli.quick),
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
    eprintln!(
        "wrote {} and {} in {:.0} s",
        json_path.display(),
        md_path.display(),
        began.elapsed().as_secs_f64()
    );
    println!("{}", report::markdown(&results));
    Ok(())
}
