//! `portico status`: the health of an installation, like `cilium status`.
//!
//! ```text
//!   API server ── Deployments portico-operator, portico-cert-sync   ─┐ banners (OK /
//!   (namespace)── DaemonSet (or Deployment) portico-proxy,           │ disabled / not
//!                 DaemonSet portico-agent                            │ installed / error),
//!             ── ConfigMap portico-config (enable-agent, ...-secrets-sync: disabled)
//!             ── Lease portico-operator, annotation portico.dev/proxies (JSON, written
//!                by the leading operator with each renewal: proxies, config versions,
//!                last ACK/NACK)
//!             ── GatewayClasses of controller portico.dev/gateway-controller and
//!                their Gateways: address, Programmed
//! ```
//!
//! Errors (exit status 1): a component whose workload is not fully ready, a
//! connected proxy whose last push was rejected, no proxy connected while the proxy
//! is installed. A Gateway that is not Programmed is a warning. `--wait` repeats
//! until there are no errors (progress on stderr) or the timeout. Reading needs only
//! `get`/`list` on those objects: no exec, no port-forward, no service proxy.
//!
//! `--standalone URL` reports a `portico standalone` or proxy admin endpoint
//! instead: `URL/healthz` and the config version series of `URL/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_api::k8s::ConfigMap;
use portico_api::k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use portico_api::k8s_openapi::api::coordination::v1::Lease;
use portico_api::kube::api::{Api, ApiResource, DynamicObject, ListParams};
use portico_api::kube::core::GroupVersionKind;
use portico_api::kube::{Client, ResourceExt};
use portico_api::names;
use portico_operator::xds::records::{PROXIES_ANNOTATION, ProxyReport};
use serde_json::Value;
use tokio::time::Instant;

/// The operator's Lease (the chart's release name; the operator's default).
const LEASE_NAME: &str = "portico-operator";

/// The ConfigMap of the chart's settings.
pub const CONFIG_MAP: &str = "portico-config";

/// Pause between two looks with `--wait`.
const WAIT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    Kube(String),
    #[error("standalone {url}: {message}")]
    Standalone { url: String, message: String },
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// `None`: $KUBECONFIG, ~/.kube/config or in-cluster.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    /// Wait until healthy, at most this long.
    pub wait: Option<Duration>,
}

/// A client for `kubeconfig`, or the default one.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, StatusError> {
    match kubeconfig {
        Some(path) => crate::conformance::local_cluster::client_from(path)
            .await
            .map_err(StatusError::Kube),
        None => Client::try_default()
            .await
            .map_err(|e| StatusError::Kube(format!("no cluster configured: {e}"))),
    }
}

/// One component's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: &'static str,
    pub name: String,
    pub desired: i64,
    pub ready: i64,
    pub available: i64,
    pub images: Vec<String>,
    pub chart: Option<String>,
}

/// What `portico status` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub namespace: String,
    /// (banner, workload or why there is none: "disabled" / "not installed").
    pub components: Vec<(&'static str, Result<Workload, &'static str>)>,
    pub gateways: Vec<GatewayRow>,
    pub proxies: Option<Vec<ProxyReport>>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GatewayRow {
    pub name: String,
    pub class: String,
    pub addresses: Vec<String>,
    /// The Programmed condition's status and reason.
    pub programmed: Option<(String, String)>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Runs `portico status`; prints to `out`, progress to stderr; returns whether it is
/// healthy.
pub async fn run(config: &StatusConfig, out: &mut String) -> Result<bool, StatusError> {
    let client = client(config.kubeconfig.as_deref()).await?;
    let deadline = config.wait.map(|d| Instant::now() + d);
    loop {
        let report = collect(&client, &config.namespace).await;
        let report = match (report, deadline) {
            (Ok(report), _) => report,
            (Err(e), Some(deadline)) if Instant::now() < deadline => {
                eprintln!("⌛ waiting: {e}");
                tokio::time::sleep(WAIT_PAUSE).await;
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        match deadline {
            Some(deadline) if !report.healthy() && Instant::now() < deadline => {
                eprintln!(
                    "⌛ waiting for Portico to be healthy: {}",
                    report.errors.join("; ")
                );
                tokio::time::sleep(WAIT_PAUSE).await;
            }
            _ => {
                if config.wait.is_some() && !report.healthy() {
                    out.push_str("timed out waiting for Portico to be healthy\n");
                }
                out.push_str(&render(&report));
                return Ok(report.healthy());
            }
        }
    }
}

/// Reads everything once.
pub async fn collect(client: &Client, namespace: &str) -> Result<Report, StatusError> {
    let kube = |what: &str, e: portico_api::kube::Error| StatusError::Kube(format!("{what}: {e}"));
    let config = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(CONFIG_MAP)
        .await
        .map_err(|e| kube("reading the portico-config ConfigMap", e))?
        .and_then(|c| c.data)
        .unwrap_or_default();
    let enabled = |key: &str| config.get(key).is_none_or(|v| v == "true");
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), namespace);
    let deployment = |name: &'static str| {
        let api = deployments.clone();
        async move {
            api.get_opt(name)
                .await
                .map(|d| d.map(|d| from_deployment(&d)))
                .map_err(|e| kube(name, e))
        }
    };
    let daemon_set = |name: &'static str| {
        let api = daemon_sets.clone();
        async move {
            api.get_opt(name)
                .await
                .map(|d| d.map(|d| from_daemon_set(&d)))
                .map_err(|e| kube(name, e))
        }
    };
    let mut report = Report {
        namespace: namespace.to_owned(),
        ..Report::default()
    };
    let operator = deployment("portico-operator").await?;
    let proxy = match daemon_set("portico-proxy").await? {
        Some(ds) => Some(ds),
        None => deployment("portico-proxy").await?,
    };
    let cert_sync = deployment("portico-cert-sync").await?;
    let agent = daemon_set("portico-agent").await?;
    let missing = |enabled: bool| if enabled { "not installed" } else { "disabled" };
    report.components = vec![
        ("Operator", operator.ok_or("not installed")),
        ("Proxy", proxy.clone().ok_or("not installed")),
        (
            "Cert-sync",
            cert_sync.ok_or(missing(enabled("enable-gateway-api-secrets-sync"))),
        ),
        ("Agent", agent.ok_or(missing(enabled("enable-agent")))),
    ];
    if report.components.iter().all(|(_, w)| w.is_err()) {
        report
            .errors
            .push(format!("Portico is not installed in namespace {namespace}"));
    }
    for (banner, workload) in &report.components {
        if let Ok(w) = workload
            && (w.ready < w.desired || w.desired == 0)
        {
            report.errors.push(format!(
                "{banner}: {} {}: {} of {} pods ready",
                w.kind, w.name, w.ready, w.desired
            ));
        }
    }

    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(LEASE_NAME)
        .await
        .map_err(|e| kube("reading the operator's Lease", e))?;
    report.proxies = lease
        .as_ref()
        .and_then(|l| l.annotations().get(PROXIES_ANNOTATION))
        .and_then(|json| serde_json::from_str(json).ok());
    let connected: Vec<&ProxyReport> = report
        .proxies
        .iter()
        .flatten()
        .filter(|p| p.connected)
        .collect();
    for p in &connected {
        if let Some(nack) = &p.nack {
            report.errors.push(format!(
                "proxy {} rejected config {}: {}",
                p.node, nack.version, nack.error
            ));
        }
    }
    if proxy.is_some() && connected.is_empty() {
        report
            .errors
            .push("no proxy is connected to the operator".to_owned());
    }

    report.gateways = gateways(client).await?;
    for g in &report.gateways {
        if g.programmed.as_ref().is_none_or(|(s, _)| s != "True") {
            report
                .warnings
                .push(format!("Gateway {} is not Programmed", g.name));
        }
    }
    Ok(report)
}

/// The Gateways whose class is ours.
async fn gateways(client: &Client) -> Result<Vec<GatewayRow>, StatusError> {
    let resource = |kind: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(names::GATEWAY_API_GROUP, "v1", kind))
    };
    let classes = Api::<DynamicObject>::all_with(client.clone(), &resource("GatewayClass"))
        .list(&ListParams::default())
        .await;
    let Ok(classes) = classes else {
        // No Gateway API CRDs: nothing to report.
        return Ok(Vec::new());
    };
    let ours: Vec<String> = classes
        .items
        .iter()
        .filter(|c| {
            c.data
                .pointer("/spec/controllerName")
                .and_then(Value::as_str)
                == Some(names::CONTROLLER_NAME)
        })
        .map(ResourceExt::name_any)
        .collect();
    let gateways = Api::<DynamicObject>::all_with(client.clone(), &resource("Gateway"))
        .list(&ListParams::default())
        .await
        .map_err(|e| StatusError::Kube(format!("listing Gateways: {e}")))?;
    let mut rows: Vec<GatewayRow> = gateways
        .items
        .iter()
        .filter_map(|g| {
            let class = g
                .data
                .pointer("/spec/gatewayClassName")?
                .as_str()?
                .to_owned();
            if !ours.contains(&class) {
                return None;
            }
            let status = g.data.get("status");
            let addresses = status
                .and_then(|s| s.get("addresses"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a["value"].as_str().map(str::to_owned))
                .collect();
            let programmed = status
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Programmed")
                .map(|c| {
                    (
                        c["status"].as_str().unwrap_or_default().to_owned(),
                        c["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                });
            Some(GatewayRow {
                name: format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()),
                class,
                addresses,
                programmed,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

fn chart_of(labels: &BTreeMap<String, String>) -> Option<String> {
    labels.get("helm.sh/chart").cloned()
}

fn images_of(spec: Option<&portico_api::k8s_openapi::api::core::v1::PodSpec>) -> Vec<String> {
    spec.into_iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.image.clone())
        .collect()
}

fn from_deployment(d: &Deployment) -> Workload {
    let status = d.status.clone().unwrap_or_default();
    Workload {
        kind: "Deployment",
        name: d.name_any(),
        desired: i64::from(d.spec.replicas.unwrap_or(1)),
        ready: i64::from(status.ready_replicas.unwrap_or(0)),
        available: i64::from(status.available_replicas.unwrap_or(0)),
        images: images_of(d.spec.template.spec.as_ref()),
        chart: chart_of(d.labels()),
    }
}

fn from_daemon_set(d: &DaemonSet) -> Workload {
    let status = d.status.clone().unwrap_or_default();
    Workload {
        kind: "DaemonSet",
        name: d.name_any(),
        desired: i64::from(status.desired_number_scheduled),
        ready: i64::from(status.number_ready),
        available: i64::from(status.number_available.unwrap_or(0)),
        images: images_of(d.spec.template.spec.as_ref()),
        chart: chart_of(d.labels()),
    }
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Portico status (namespace {})", report.namespace);
    for (banner, workload) in &report.components {
        let state = match workload {
            Ok(w) if w.desired > 0 && w.ready >= w.desired => "OK".to_owned(),
            Ok(w) => format!("{} errors", w.desired - w.ready.min(w.desired)),
            Err(why) => (*why).to_owned(),
        };
        let _ = writeln!(out, "{:<20}{state}", format!("{banner}:"));
    }
    out.push('\n');
    let workloads: Vec<&Workload> = report
        .components
        .iter()
        .filter_map(|(_, w)| w.as_ref().ok())
        .collect();
    for w in &workloads {
        let _ = writeln!(
            out,
            "{:<20}{:<24}Desired: {}, Ready: {}/{}, Available: {}/{}",
            w.kind, w.name, w.desired, w.ready, w.desired, w.available, w.desired
        );
    }
    for (i, w) in workloads.iter().enumerate() {
        let label = if i == 0 { "Image versions" } else { "" };
        for image in &w.images {
            let _ = writeln!(out, "{label:<20}{:<24}{image}", w.name);
        }
    }
    let mut charts: Vec<&str> = workloads
        .iter()
        .filter_map(|w| w.chart.as_deref())
        .collect();
    charts.sort_unstable();
    charts.dedup();
    let _ = writeln!(
        out,
        "{:<20}{}",
        "Helm chart version:",
        if charts.is_empty() {
            "(none)".to_owned()
        } else {
            charts.join(", ")
        }
    );
    let _ = writeln!(out, "{:<20}{}", "Gateways:", report.gateways.len());
    for g in &report.gateways {
        let addresses = if g.addresses.is_empty() {
            "<pending>".to_owned()
        } else {
            g.addresses.join(",")
        };
        let programmed = match &g.programmed {
            Some((status, reason)) => format!("Programmed={status} ({reason})"),
            None => "Programmed=Unknown".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<30} class {:<12} address {addresses:<16} {programmed}",
            g.name, g.class
        );
    }
    match &report.proxies {
        None => {
            let _ = writeln!(
                out,
                "{:<20}unknown (the operator has not published them)",
                "Proxies connected:"
            );
        }
        Some(proxies) => {
            let connected = proxies.iter().filter(|p| p.connected).count();
            let _ = writeln!(out, "{:<20}{connected}", "Proxies connected:");
            for p in proxies {
                let state = if p.connected {
                    "connected"
                } else {
                    "disconnected"
                };
                let config = p.acked.as_deref().unwrap_or("none");
                let last = match &p.nack {
                    Some(n) => format!("last NACK {} ({})", n.version, n.error),
                    None if p.acked.is_some() => format!("last ACK {config}"),
                    None => "no ACK yet".to_owned(),
                };
                let _ = writeln!(out, "  {:<30} {state:<13} config {config}  {last}", p.node);
            }
        }
    }
    for (title, lines) in [("Errors:", &report.errors), ("Warnings:", &report.warnings)] {
        for (i, line) in lines.iter().enumerate() {
            let label = if i == 0 { title } else { "" };
            let _ = writeln!(out, "{label:<20}{line}");
        }
    }
    out
}

/// `portico status --standalone URL`: a local standalone process's admin endpoint.
pub async fn standalone(url: &str, out: &mut String) -> Result<bool, StatusError> {
    let fail = |message: String| StatusError::Standalone {
        url: url.to_owned(),
        message,
    };
    let base = url.trim_end_matches('/');
    let get = |path: &str| {
        let uri = format!("{base}{path}");
        async move {
            let uri: http::Uri = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
            let authority = uri.authority().ok_or("no host in the URL")?.to_string();
            let stream = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(authority.as_str()),
            )
            .await
            .map_err(|_| format!("{authority}: connect timed out"))?
            .map_err(|e| format!("{authority}: {e}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let request = http::Request::get(uri.path())
                .header(http::header::HOST, authority)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        }
    };
    let (health, _) = get("/healthz").await.map_err(fail)?;
    let healthy = health.is_success();
    let _ = writeln!(out, "Portico standalone ({base})");
    let _ = writeln!(
        out,
        "{:<20}{}",
        "Health:",
        if healthy {
            "OK".to_owned()
        } else {
            format!("error ({health})")
        }
    );
    if let Ok((status, metrics)) = get("/metrics").await
        && status.is_success()
    {
        for line in metrics.lines().filter(|l| l.starts_with("portico_config_")) {
            let _ = writeln!(out, "{:<20}{line}", "Config:");
        }
    }
    Ok(healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_renders_errors_and_versions() {
        let report = Report {
            namespace: "portico-system".into(),
            components: vec![
                (
                    "Operator",
                    Ok(Workload {
                        kind: "Deployment",
                        name: "portico-operator".into(),
                        desired: 1,
                        ready: 1,
                        available: 1,
                        images: vec!["portico/operator:0.1.0".into()],
                        chart: Some("portico-0.1.0".into()),
                    }),
                ),
                (
                    "Proxy",
                    Ok(Workload {
                        kind: "DaemonSet",
                        name: "portico-proxy".into(),
                        desired: 2,
                        ready: 1,
                        available: 1,
                        images: vec!["portico/proxy:0.1.0".into()],
                        chart: Some("portico-0.1.0".into()),
                    }),
                ),
                ("Agent", Err("disabled")),
            ],
            errors: vec!["Proxy: DaemonSet portico-proxy: 1 of 2 pods ready".into()],
            ..Report::default()
        };
        let text = render(&report);
        assert!(text.contains("Operator:           OK"), "{text}");
        assert!(text.contains("Proxy:              1 errors"), "{text}");
        assert!(text.contains("Agent:              disabled"), "{text}");
        assert!(
            text.contains("Desired: 2, Ready: 1/2, Available: 1/2"),
            "{text}"
        );
        assert!(text.contains("Helm chart version: portico-0.1.0"), "{text}");
        assert!(
            text.contains("Errors:             Proxy: DaemonSet portico-proxy"),
            "{text}"
        );
        assert!(!report.healthy());
    }
}
