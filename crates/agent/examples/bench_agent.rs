//! `make bench-agent`: the socket load balancer against what kube-proxy does (nftables
//! DNAT in the client's namespace), in the same namespaces and the same run, to the same
//! backends; and the time to program 10,000 services. Needs root, BPF and `nft`.
//!
//! ```text
//!   cgroup + netns client ── connect 10.123.100.10:80 ─(connect4 rewrite)──┐
//!                         ── connect 10.123.101.10:80 ─(nft dnat, conntrack)┴─> backend ns
//! ```
//!
//! Connect latency: connect + the backend's greeting line, alternating the two paths so
//! that drift hits both alike. Throughput: one connection writing `--mib` MiB to a sink.
//! Results: `bench/results/agent-<date>.json` and `.md` (ratios are socket LB / nft).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use common::{Lab, accept_loop, tcp_service, v4};
use nix::sched::{CloneFlags, setns};
use portico_agent::{BackendEntry, Frontend, Protocol, ServiceEntry};

const LB_VIP: &str = "10.123.100.10";
const NFT_VIP: &str = "10.123.101.10";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Args {
    out: PathBuf,
    connects: usize,
    mib: usize,
    services: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        out: PathBuf::from("bench/results"),
        connects: 2000,
        mib: 256,
        services: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => args.out = value.into(),
            "--connects" => args.connects = value.parse()?,
            "--mib" => args.mib = value.parse()?,
            "--services" => args.services = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// A server in the backend namespace that reads each connection to its end and then
/// says how many bytes it got.
fn sink(lab: &mut Lab, ip: &str) -> SocketAddrV4 {
    let ip = ip.to_string();
    lab.in_backend_ns(move |stop, tx| {
        let listener = TcpListener::bind((ip.as_str(), 0)).unwrap();
        tx.send(v4(&listener)).unwrap();
        accept_loop(&listener, &stop, Duration::from_secs(600), |mut conn| {
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0usize;
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                let _ = writeln!(conn, "{total}");
            });
        });
    })
}

fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running nft (apt-get install -y nftables)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    if !child.wait()?.success() {
        bail!("nft -f failed on:\n{script}");
    }
    Ok(())
}

fn connect_once(addr: &str) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr.parse().unwrap(), CONNECT_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "no greeting from {addr}");
    started.elapsed()
}

fn throughput(addr: &str, mib: usize) -> f64 {
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), CONNECT_TIMEOUT).unwrap();
    for _ in 0..mib {
        stream.write_all(&chunk).unwrap();
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    assert_eq!(reply.trim().parse::<usize>().unwrap(), mib << 20);
    (mib as f64) / started.elapsed().as_secs_f64()
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q) as usize]);
    Latency {
        p50_us: at(0.5),
        p99_us: at(0.99),
        mean_us: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let Some(mut lab) = Lab::new("bench-agent") else {
        return Ok(());
    };
    let greet = lab.tcp_backend("10.123.0.2", "b");
    let sink = sink(&mut lab, "10.123.0.3");
    let mut dp = lab.datapath();
    dp.upsert_service(&tcp_service(&format!("{LB_VIP}:80"), &[(greet, 1)]))?;
    dp.upsert_service(&tcp_service(&format!("{LB_VIP}:81"), &[(sink, 1)]))?;
    // The DNAT rule runs after routing (as kube-proxy's does): the VIP needs a route.
    lab.ip(false, &["route", "add", "default", "via", "10.123.0.2"]);
    nft(
        &lab.client_ns,
        &format!(
            "table ip portico_bench {{\n chain out {{\n  type nat hook output priority -100;\n  \
             ip daddr {NFT_VIP} tcp dport 80 dnat to {greet}\n  \
             ip daddr {NFT_VIP} tcp dport 81 dnat to {sink}\n }}\n}}\n"
        ),
    )?;

    // This process joins the lab's cgroup (the socket LB's) for the measurement, and a
    // thread enters the client namespace; both paths are measured from that thread.
    let procs = |dir: &std::path::Path| dir.join("cgroup.procs");
    fs::write(procs(&lab.cgroup), std::process::id().to_string())?;
    let ns = File::open(PathBuf::from("/run/netns").join(&lab.client_ns))?;
    let (connects, mib) = (args.connects, args.mib);
    let measured = thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        let (lb, nft) = (format!("{LB_VIP}:80"), format!("{NFT_VIP}:80"));
        // Warm up both paths (ARP, conntrack tables, caches).
        for _ in 0..50 {
            connect_once(&lb);
            connect_once(&nft);
        }
        let mut lb_samples = Vec::with_capacity(connects);
        let mut nft_samples = Vec::with_capacity(connects);
        for _ in 0..connects {
            lb_samples.push(connect_once(&lb));
            nft_samples.push(connect_once(&nft));
        }
        let lb_tput = throughput(&format!("{LB_VIP}:81"), mib);
        let nft_tput = throughput(&format!("{NFT_VIP}:81"), mib);
        (latency(lb_samples), latency(nft_samples), lb_tput, nft_tput)
    })
    .join();
    // Back out of the lab's cgroup before anything else, so that it can be removed.
    let root = lab.cgroup.parent().context("cgroup parent")?.to_path_buf();
    fs::write(procs(&root), std::process::id().to_string())?;
    let measured = measured.map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?;
    let (lb_lat, nft_lat, lb_tput, nft_tput) = measured;

    // Programming 10,000 services of two backends each, then deleting them.
    let entries: Vec<ServiceEntry> = (0..args.services)
        .map(|i| ServiceEntry {
            frontend: Frontend::new(
                SocketAddrV4::new([10, 200, (i >> 8) as u8, i as u8].into(), 80),
                Protocol::Tcp,
            ),
            flags: 0,
            backends: vec![
                BackendEntry {
                    addr: greet,
                    weight: 1,
                },
                BackendEntry {
                    addr: sink,
                    weight: 1,
                },
            ],
        })
        .collect();
    let started = Instant::now();
    for e in &entries {
        dp.upsert_service(e)?;
    }
    let insert = started.elapsed();
    let started = Instant::now();
    for e in &entries {
        dp.delete_service(&e.frontend)?;
    }
    let delete = started.elapsed();

    let date = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let kernel = String::from_utf8(Command::new("uname").arg("-r").output()?.stdout)?
        .trim()
        .to_owned();
    let report = serde_json::json!({
        "date": date,
        "kernel": kernel,
        "connects": connects,
        "throughput_mib": mib,
        "connect_latency": { "socket_lb": lb_lat, "nft_dnat": nft_lat,
            "ratio_p50": lb_lat.p50_us / nft_lat.p50_us, "ratio_p99": lb_lat.p99_us / nft_lat.p99_us },
        "throughput_mib_per_s": { "socket_lb": lb_tput, "nft_dnat": nft_tput, "ratio": lb_tput / nft_tput },
        "map_update": { "services": args.services, "backends_per_service": 2,
            "insert_total_ms": insert.as_secs_f64() * 1e3,
            "insert_per_service_us": insert.as_secs_f64() * 1e6 / f64::from(args.services),
            "delete_total_ms": delete.as_secs_f64() * 1e3 },
    });
    let md = format!(
        "# Agent benchmark, {date}\n\nKernel {kernel}; client and backends in network namespaces \
         joined by a veth pair; the same backends behind the socket LB and behind an nftables \
         DNAT rule (what kube-proxy's nftables mode installs) in the client's namespace.\n\n\
         | measure | socket LB | nft DNAT | ratio (LB / nft) |\n|---|---|---|---|\n\
         | connect + greeting p50 (µs, {connects} each) | {:.1} | {:.1} | {:.2} |\n\
         | connect + greeting p99 (µs) | {:.1} | {:.1} | {:.2} |\n\
         | throughput, one connection ({mib} MiB) (MiB/s) | {:.0} | {:.0} | {:.2} |\n\n\
         Programming {} services of 2 backends: {:.0} ms ({:.1} µs per service); deleting them: {:.0} ms.\n",
        lb_lat.p50_us,
        nft_lat.p50_us,
        lb_lat.p50_us / nft_lat.p50_us,
        lb_lat.p99_us,
        nft_lat.p99_us,
        lb_lat.p99_us / nft_lat.p99_us,
        lb_tput,
        nft_tput,
        lb_tput / nft_tput,
        args.services,
        insert.as_secs_f64() * 1e3,
        insert.as_secs_f64() * 1e6 / f64::from(args.services),
        delete.as_secs_f64() * 1e3,
    );
    fs::create_dir_all(&args.out)?;
    let base = args.out.join(format!("agent-{date}"));
    fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    fs::write(base.with_extension("md"), &md)?;
    print!("{md}");
    println!("\nwritten: {}.{{json,md}}", base.display());
    Ok(())
}
