//! The machine the numbers come from, and the markdown table of the results.

use std::fmt::{self, Write as _};
use std::process::Command;

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub(crate) struct Machine {
    nproc: usize,
    kernel: String,
    cpu: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages when the run began: the machine is
    /// shared, and this says how busy it was.
    load_start: Option<String>,
}

impl Machine {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "nproc": self.nproc,
            "kernel": self.kernel,
            "cpu_model": self.cpu,
            "load_avg_start": self.load_start,
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPUs, {}, Linux {}",
            self.nproc, self.cpu, self.kernel
        )
    }
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    Machine {
        // The machine's CPUs, not the driver's: it is pinned to one of them.
        nproc: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned()),
        cpu,
        load_start: loadavg(),
    }
}

/// The 1, 5 and 15 minute load averages, e.g. `4.02 2.06 1.00`.
pub(crate) fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

fn first_line(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    // nginx -v prints on stderr.
    let text = [out.stdout, out.stderr].concat();
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

pub(crate) fn versions() -> Value {
    json!({
        "nginx": first_line("nginx", "-v"),
        "haproxy": first_line("haproxy", "-v"),
        "wrk": first_line("wrk", "--version"),
        "h2load": first_line("h2load", "--version"),
    })
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

const PEERS: [&str; 4] = ["portico", "nginx", "haproxy", "direct"];

/// The results as markdown: one table for the data plane, one for the control plane.
pub(crate) fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let m = &r["machine"];
    let _ = writeln!(
        md,
        "# Portico benchmarks ({mode}), {date}\n\nMachine: {nproc} CPUs, {cpu}, Linux {kernel}; \
         load average {load_start} at the start, {load_end} at the end (shared with other work). \
         Proxies pinned to CPU 0 with one worker; client and backend on CPU 1. \
         {reps} repetitions after a warm-up, interleaved; median shown. \
         {nginx}; {haproxy}.\n",
        mode = r["mode"].as_str().unwrap_or("?"),
        date = r["date"].as_str().unwrap_or("?"),
        nproc = m["nproc"],
        cpu = m["cpu_model"].as_str().unwrap_or("?"),
        kernel = m["kernel"].as_str().unwrap_or("?"),
        load_start = m["load_avg_start"].as_str().unwrap_or("?"),
        load_end = m["load_avg_end"].as_str().unwrap_or("?"),
        reps = r["setup"]["reps"],
        nginx = r["versions"]["nginx"].as_str().unwrap_or("nginx ?"),
        haproxy = r["versions"]["haproxy"]
            .as_str()
            .and_then(|v| v.split(" - ").next())
            .unwrap_or("HAProxy ?"),
    );
    md.push_str(
        "## Data plane\n\n| scenario | peer | req/s | CPU µs/req | errors | Portico/nginx req/s | Portico/HAProxy req/s | CPU/req vs nginx | CPU/req vs HAProxy |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    if let Some(scenarios) = r["scenarios"].as_object() {
        for (key, s) in scenarios {
            let Some(peers) = s["peers"].as_object() else {
                continue;
            };
            if s.get("tool").is_none() {
                continue;
            }
            let mut first = true;
            for peer in PEERS {
                let Some(p) = peers.get(peer) else { continue };
                let ratios = &s["ratios"];
                let (a, b, c, d) = if first {
                    (
                        num(&ratios["portico_vs_nginx"], 2),
                        num(&ratios["portico_vs_haproxy"], 2),
                        num(&ratios["cpu_per_req_vs_nginx"], 2),
                        num(&ratios["cpu_per_req_vs_haproxy"], 2),
                    )
                } else {
                    Default::default()
                };
                let _ = writeln!(
                    md,
                    "| {scenario} | {peer} | {rps} | {cpu} | {errors} | {a} | {b} | {c} | {d} |",
                    scenario = if first { key.as_str() } else { "" },
                    rps = num(&p["rps"], 0),
                    cpu = num(&p["cpu_us_per_req"], 1),
                    errors = p["errors"],
                );
                first = false;
            }
        }
    }
    let fixed = &r["scenarios"]["http1_keepalive_fixed_rate"];
    if let Some(peers) = fixed["peers"].as_object() {
        let _ = writeln!(
            md,
            "\nFixed open-loop rate {rate} req/s (half the slowest proxy's maximum), HTTP/1.1 keep-alive:\n\n| peer | p50 ms | p99 ms | errors | RSS MiB |\n|---|---:|---:|---:|---:|",
            rate = num(&fixed["rate"], 0)
        );
        for peer in PEERS {
            let Some(p) = peers.get(peer) else { continue };
            let errors = load_errors(p);
            let _ = writeln!(
                md,
                "| {peer} | {} | {} | {errors} | {} |",
                num(&p["p50_ms"], 2),
                num(&p["p99_ms"], 2),
                p["rss_kib"]
                    .as_f64()
                    .map_or("-".to_owned(), |k| format!("{:.1}", k / 1024.0)),
            );
        }
    }
    let five = &r["scenarios"]["routes_5000"];
    if let Some(ratios) = five["rps_5000_over_10"].as_object() {
        let parts: Vec<String> = ratios
            .iter()
            .map(|(k, v)| format!("{k} {}", num(v, 2)))
            .collect();
        let _ = writeln!(
            md,
            "\nThroughput at 5,000 routes over throughput at 10: {}.",
            parts.join(", ")
        );
        if let Some(rss) = five["rss_kib"].as_object() {
            let parts: Vec<String> = rss
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {}",
                        v.as_f64()
                            .map_or("-".to_owned(), |k| format!("{:.1} MiB", k / 1024.0))
                    )
                })
                .collect();
            let _ = writeln!(md, "RSS at 5,000 routes: {}.", parts.join(", "));
        }
    }
    let split = &r["scenarios"]["weighted_split"];
    if let Some(peers) = split["peers"].as_object() {
        let parts: Vec<String> = peers
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k} {} pp ({})",
                    num(&v["max_deviation_pct_points"], 2),
                    v["counts"]
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "Weighted split 80/15/5 over {} requests, worst deviation: {}.",
            split["requests"],
            parts.join(", ")
        );
    }

    standalone(&mut md, &r["control_plane"]);
    local_cluster(&mut md, &r["control_plane_local_cluster"]);
    if let Some(list) = r["not_run"].as_array().filter(|l| !l.is_empty()) {
        md.push_str("\n## Not run\n\n");
        for item in list {
            let _ = writeln!(
                md,
                "- {}: {}",
                item["scenario"].as_str().unwrap_or("?"),
                item["reason"].as_str().unwrap_or("?")
            );
        }
    }
    md
}

/// KiB as MiB with one decimal, `-` when absent.
fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or("-".to_owned(), |k| format!("{:.1}", k / 1024.0))
}

/// The local-cluster section: operator and proxy as separate processes, routes through
/// the API server.
fn local_cluster(md: &mut String, lc: &Value) {
    if lc.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Control plane (local cluster: API server, portico-operator and portico-proxy as separate processes)\n"
    );
    if let Some(error) = lc["error"].as_str() {
        let _ = writeln!(md, "Did not run: {error}");
        return;
    }
    let idle = &lc["rss_kib_idle"];
    let _ = writeln!(
        md,
        "Started in {} s. RSS with two Gateways and no route: proxy {} MiB, operator {} MiB.\n",
        num(&lc["start_s"], 1),
        mib(&idle["proxy_kib"]),
        mib(&idle["operator_kib"]),
    );
    let a = &lc["attached"];
    if let Some(error) = a["error"].as_str() {
        let _ = writeln!(md, "1,000 routes at once: failed: {error}\n");
    } else {
        let _ = writeln!(
            md,
            "{} routes created at once through the API: the POSTs ({} in flight) took {} ms; from the last POST's answer, the Gateway's listener showed attachedRoutes {} after {} ms and every route `Accepted` in status.parents after {} ms (both read through the API server). From the first POST, the last route served after {} ms.\n",
            a["routes"],
            a["posts_in_flight"],
            num(&a["created_ms"], 0),
            a["routes"],
            num(&a["attached_after_created_ms"], 0),
            num(&a["accepted_after_created_ms"], 0),
            num(&a["last_route_serving_ms"], 0),
        );
    }
    let rate = num(&lc["propagation"][0]["load"]["rate"], 0);
    let _ = writeln!(
        md,
        "| routes present | bulk POSTs ms | bulk POST to all serving ms | new route (POST) → first 200, idle ms (median / max) | under {rate} req/s load ms (median / max) | load errors | operator CPU s | proxy CPU s | operator RSS / peak MiB | proxy RSS / peak MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in lc["propagation"].as_array().into_iter().flatten() {
        if let Some(error) = s["error"].as_str() {
            let _ = writeln!(md, "| {} | failed: {error} | | | | | | | | |", s["routes"]);
            continue;
        }
        if let Some(reason) = s["skipped"].as_str() {
            let _ = writeln!(
                md,
                "| {} | not run: {reason} | | | | | | | | |",
                s["routes"]
            );
            continue;
        }
        let errors = load_errors(&s["load"]);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} / {} | {errors} | {} | {} | {} / {} | {} / {} |",
            s["routes"],
            num(&s["bulk_created_ms"], 0),
            num(&s["bulk_serving_ms"], 0),
            num(&s["new_route_idle"]["median_ms"], 1),
            num(&s["new_route_idle"]["max_ms"], 1),
            num(&s["new_route_under_load"]["median_ms"], 1),
            num(&s["new_route_under_load"]["max_ms"], 1),
            num(&s["operator_cpu_s"], 2),
            num(&s["proxy_cpu_s"], 2),
            mib(&s["operator_rss_kib"]),
            mib(&s["operator_peak_rss_kib"]),
            mib(&s["proxy_rss_kib"]),
            mib(&s["proxy_peak_rss_kib"]),
        );
    }
    let _ = writeln!(
        md,
        "\nEach size adds routes to the same cluster; CPU is what each process used for that size (the bulk creation, the new routes, the load); times include the operator's {} ms debounce.",
        crate::cluster::OPERATOR_DEBOUNCE_MS
    );
}

/// The control plane on `portico standalone`; parts that did not run are left out.
fn standalone(md: &mut String, cp: &Value) {
    if cp["propagation"].as_array().is_some_and(|a| !a.is_empty()) {
        let _ = writeln!(
            md,
            "\n## Control plane (portico standalone, debounce {})\n\n| routes present | start to serving s | new route → first 200, idle ms (median / max) | under {} req/s load ms (median / max) | load errors | RSS MiB | peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|---:|",
            crate::DEBOUNCE,
            num(&cp["propagation"][0]["load"]["rate"], 0),
        );
        if let Some(sizes) = cp["propagation"].as_array() {
            for s in sizes {
                let errors = load_errors(&s["load"]);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {} / {} | {errors} | {} | {} |",
                    s["routes"],
                    num(&s["startup_s"], 2),
                    num(&s["new_route_idle"]["median_ms"], 1),
                    num(&s["new_route_idle"]["max_ms"], 1),
                    num(&s["new_route_under_load"]["median_ms"], 1),
                    num(&s["new_route_under_load"]["max_ms"], 1),
                    mib(&s["rss_kib"]),
                    mib(&s["peak_rss_kib"]),
                );
            }
        }
    }
    if !cp["attached"].is_null() {
        let a = &cp["attached"];
        let _ = writeln!(
            md,
            "\n{} routes written at once: attachedRoutes {} reported after {} ms, the last one serving after {} ms.",
            a["routes"],
            a["routes"],
            num(&a["attached_reported_ms"], 0),
            num(&a["last_route_serving_ms"], 0)
        );
    }
    if !cp["churn"].is_null() {
        let c = &cp["churn"];
        let _ = writeln!(
            md,
            "Route and weight changes every 100 ms for {} s ({} changes) under {} req/s: {} ok, {} non-2xx, {} socket errors.",
            c["secs"],
            c["changes"],
            num(&c["load"]["rate"], 0),
            c["load"]["ok"],
            c["load"]["non_2xx"],
            c["load"]["socket_errors"]
        );
    }
}

/// The failed requests of a load run: non-2xx answers and socket errors.
fn load_errors(load: &Value) -> u64 {
    load["non_2xx"].as_u64().unwrap_or(0) + load["socket_errors"].as_u64().unwrap_or(0)
}
