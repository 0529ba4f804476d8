//! The `connectivity test` run: set up, check, summarize, clean up (see the module doc
//! of `connectivity` for the picture). Setup steps that fail are recorded as failed
//! checks named after the step, so the summary always says what went wrong.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use portico_api::kube::Client;
use serde_json::Value;
use tokio::time::Instant;

use super::checks::{Outcome, Summary, all_from, split_within_tolerance};
use super::cluster::{self, POLL};
use super::plan::{
    self, ECHO_OTHER, ECHO_SAME, GATEWAY, HEADER, HEADER_PATH, HOSTNAME, NODEPORT, NodeInfo,
    PlanInput, SPLIT, SPLIT_PATH, TestCerts,
};
use super::probe::probe;
use super::{ConnectivityError, TestArgs};
use crate::check_split::{Resolve, Tally, Target, TargetSpec};

/// Requests per plain check, and for the split.
const COUNT: u32 = 10;
const SPLIT_COUNT: u32 = 200;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Check names (the summary's and the failing test's vocabulary).
pub(crate) const POD_TO_CLUSTER_IP: &str = "pod -> ClusterIP (same node)";
pub(crate) const POD_TO_CLUSTER_IP_OTHER: &str = "pod -> ClusterIP (other node)";
pub(crate) const NODE_TO_NODEPORT: &str = "node -> NodePort";
pub(crate) const GATEWAY_HTTP: &str = "outside -> Gateway HTTP";
pub(crate) const GATEWAY_HTTPS: &str = "outside -> Gateway HTTPS";
pub(crate) const GATEWAY_SPLIT: &str = "outside -> Gateway split";
pub(crate) const GATEWAY_HEADER: &str = "outside -> Gateway header filter";

/// Waiting states of a container that will not get better by waiting.
const HOPELESS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A client pod started, and what its answers must look like.
struct ClientPod {
    check: &'static str,
    pod: String,
    expect: &'static str,
}

/// Runs the test; the summary is printed and returned.
pub(super) async fn run(args: &TestArgs, out: &dyn Fn(&str)) -> Result<Summary, ConnectivityError> {
    let client = cluster::client(args.kubeconfig.as_deref()).await?;
    let deadline = Instant::now() + args.timeout;
    let mut summary = Summary::default();
    let mut record = |name: &str, outcome: Outcome| {
        let result = summary.record(name, outcome);
        out(&result.to_string());
    };
    run_checks(&client, args, deadline, out, &mut record).await;
    if args.keep {
        out(&format!(
            "--keep: namespace {} left as it is",
            args.namespace
        ));
    } else {
        out(&format!("🧹 Deleting namespace {}", args.namespace));
        if let Err(error) = cluster::delete_namespace(&client, &args.namespace).await {
            out(&format!("warning: {error}"));
        }
    }
    out(&summary.text());
    Ok(summary)
}

/// Setup and checks; a setup step that fails is recorded under its name and ends the run.
async fn run_checks(
    client: &Client,
    args: &TestArgs,
    deadline: Instant,
    out: &dyn Fn(&str),
    record: &mut dyn FnMut(&str, Outcome),
) {
    macro_rules! step {
        ($name:expr, $e:expr) => {
            match $e {
                Ok(value) => value,
                Err(error) => {
                    record($name, Outcome::Failed(error));
                    return;
                }
            }
        };
    }
    let nodes = step!("setup: list nodes", cluster::nodes(client).await);
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    out(&format!("🔎 {} node(s): {}", nodes.len(), names.join(", ")));
    let certs = step!(
        "setup: test certificate",
        TestCerts::generate().map_err(|e| e.to_string())
    );
    let input = PlanInput {
        namespace: args.namespace.clone(),
        gateway_class: args.gateway_class.clone(),
        echo_image: args.echo_image.clone(),
        cli_image: args.cli_image.clone(),
        nodes: nodes.clone(),
        header_value: format!("{:016x}", fastrand::u64(..)),
    };

    out(&format!(
        "✨ Creating namespace {} with echo backends, Services, a Gateway and routes",
        args.namespace
    ));
    step!(
        "setup: create namespace",
        cluster::apply_until(client, &plan::namespace(&input), deadline).await
    );
    for object in plan::backends(&input, &certs) {
        step!(
            "setup: create objects",
            cluster::apply_until(client, &object, deadline).await
        );
    }

    for backend in [ECHO_SAME, ECHO_OTHER] {
        out(&format!("⌛ Waiting for Deployment {backend} to be ready"));
        step!(
            &format!("setup: Deployment {backend} ready"),
            cluster::wait_for(
                client,
                ("apps/v1", "Deployment"),
                &args.namespace,
                backend,
                deadline,
                deployment_ready
            )
            .await
        );
    }
    let ns = args.namespace.as_str();
    let same_ip = step!(
        "setup: Service addresses",
        cluster::wait_for(
            client,
            ("v1", "Service"),
            ns,
            ECHO_SAME,
            deadline,
            cluster_ip
        )
        .await
    );
    let other_ip = step!(
        "setup: Service addresses",
        cluster::wait_for(
            client,
            ("v1", "Service"),
            ns,
            ECHO_OTHER,
            deadline,
            cluster_ip
        )
        .await
    );
    let node_port = step!(
        "setup: Service addresses",
        cluster::wait_for(client, ("v1", "Service"), ns, NODEPORT, deadline, node_port).await
    );

    // Client pods first: they run while this host checks the Gateway.
    let mut clients = Vec::new();
    let first_node = input.nodes.first().map(|n| n.name.as_str());
    let pinned = if input.multi_node() { first_node } else { None };
    let mut start_client = |check: &'static str,
                            pod: &str,
                            node: Option<&str>,
                            host: bool,
                            url: String,
                            expect: &'static str| {
        let manifest = plan::client_pod(&input, pod, node, host, &url, COUNT);
        clients.push((
            ClientPod {
                check,
                pod: pod.to_owned(),
                expect,
            },
            manifest,
        ));
    };
    start_client(
        POD_TO_CLUSTER_IP,
        "client-to-same-node",
        pinned,
        false,
        format!("http://{}/", SocketAddr::new(same_ip, 80)),
        ECHO_SAME,
    );
    if input.multi_node() {
        start_client(
            POD_TO_CLUSTER_IP_OTHER,
            "client-to-other-node",
            pinned,
            false,
            format!("http://{}/", SocketAddr::new(other_ip, 80)),
            ECHO_OTHER,
        );
    }
    // The NodePort is tried from the last node: another node than the backend's when
    // there are two.
    let nodeport_node: Option<&NodeInfo> = input.nodes.last();
    match nodeport_node.and_then(|n| n.address.map(|a| (n, a))) {
        Some((node, address)) => start_client(
            NODE_TO_NODEPORT,
            "host-to-nodeport",
            Some(node.name.as_str()),
            true,
            format!("http://{}/", SocketAddr::new(address, node_port)),
            ECHO_SAME,
        ),
        None => record(
            NODE_TO_NODEPORT,
            Outcome::Failed("no node has an address to send NodePort traffic to".to_owned()),
        ),
    }
    for (started, manifest) in &clients {
        out(&format!("🚀 Starting client pod {}", started.pod));
        step!(
            "setup: create client pods",
            cluster::apply_until(client, manifest, deadline).await
        );
    }

    out(&format!(
        "⌛ Waiting for Gateway {GATEWAY} to be Programmed with an address"
    ));
    let gateway = cluster::wait_for(
        client,
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ns,
        GATEWAY,
        deadline,
        gateway_address,
    )
    .await;
    match gateway {
        Ok(address) => {
            out(&format!("🌐 Gateway {GATEWAY} is at {address}"));
            gateway_checks(&address, &certs, &input.header_value, deadline, record).await;
        }
        Err(error) => {
            for check in [GATEWAY_HTTP, GATEWAY_HTTPS, GATEWAY_SPLIT, GATEWAY_HEADER] {
                record(
                    check,
                    Outcome::Failed(format!("no usable Gateway: {error}")),
                );
            }
        }
    }

    for (started, _) in &clients {
        out(&format!(
            "⌛ Waiting for client pod {} to finish",
            started.pod
        ));
        let outcome = match cluster::wait_for(
            client,
            ("v1", "Pod"),
            ns,
            &started.pod,
            deadline,
            pod_result,
        )
        .await
        {
            Ok(Ok(tally)) => all_from(&tally, started.expect),
            Ok(Err(failure)) | Err(failure) => {
                Outcome::Failed(format!("pod {}: {failure}", started.pod))
            }
        };
        record(started.check, outcome);
    }
    if !input.multi_node() {
        record(
            POD_TO_CLUSTER_IP_OTHER,
            Outcome::Skipped(format!(
                "needs two nodes, the cluster has {}",
                input.nodes.len()
            )),
        );
    }
}

/// The checks from this host to the Gateway's address.
async fn gateway_checks(
    address: &str,
    certs: &TestCerts,
    header_value: &str,
    deadline: Instant,
    record: &mut dyn FnMut(&str, Outcome),
) {
    let addr = match resolve(address).await {
        Ok(addr) => addr,
        Err(error) => {
            for check in [GATEWAY_HTTP, GATEWAY_HTTPS, GATEWAY_SPLIT, GATEWAY_HEADER] {
                record(check, Outcome::Failed(error.clone()));
            }
            return;
        }
    };
    let spec = |scheme: &str, port: u16, path: &str| TargetSpec {
        url: format!("{scheme}://{HOSTNAME}{path}"),
        headers: Vec::new(),
        resolve: vec![Resolve {
            host: HOSTNAME.to_owned(),
            port,
            addr,
        }],
        ca_pem: (scheme == "https").then(|| certs.ca_pem.clone().into_bytes()),
    };
    // What is left of the run's time, for each check's first answer: a Gateway that
    // never answers costs the deadline once, not once per check.
    let wait = || deadline.saturating_duration_since(Instant::now());

    let http = tally_of(&spec("http", 80, "/"), COUNT, wait()).await;
    record(
        GATEWAY_HTTP,
        http.map_or_else(Outcome::Failed, |t| all_from(&t, ECHO_SAME)),
    );

    let https = tally_of(&spec("https", 443, "/"), COUNT, wait()).await;
    record(
        GATEWAY_HTTPS,
        https.map_or_else(Outcome::Failed, |t| all_from(&t, ECHO_SAME)),
    );

    let split = tally_of(&spec("http", 80, SPLIT_PATH), SPLIT_COUNT, wait()).await;
    record(
        GATEWAY_SPLIT,
        split.map_or_else(Outcome::Failed, |t| split_within_tolerance(&t, &SPLIT)),
    );

    record(
        GATEWAY_HEADER,
        header_check(&spec("http", 80, HEADER_PATH), header_value, deadline).await,
    );
}

/// The probe's tally against `spec`.
async fn tally_of(spec: &TargetSpec, count: u32, wait: Duration) -> Result<Tally, String> {
    let target = Target::new(spec).await.map_err(|e| e.to_string())?;
    Ok(probe(&target, count, wait, REQUEST_TIMEOUT).await)
}

/// The echo reports the header the route's filter adds, with this run's value.
async fn header_check(spec: &TargetSpec, value: &str, deadline: Instant) -> Outcome {
    let target = match Target::new(spec).await {
        Ok(target) => target,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let mut last;
    loop {
        match target.fetch(REQUEST_TIMEOUT).await {
            Ok(report) => {
                let seen = report
                    .pointer("/request/headers")
                    .and_then(|h| h.get(HEADER))
                    .and_then(Value::as_str);
                if seen == Some(value) {
                    return Outcome::Passed(format!("the backend saw {HEADER}: {value}"));
                }
                last = format!("the backend saw {HEADER}: {seen:?}, expected {value:?}");
            }
            Err(error) => last = error,
        }
        if Instant::now() + POLL >= deadline {
            return Outcome::Failed(last);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A Gateway address: an IP, or a host name to look up.
async fn resolve(address: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = address.parse() {
        return Ok(ip);
    }
    tokio::net::lookup_host((address, 80))
        .await
        .map_err(|e| format!("resolving the Gateway address {address}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("the Gateway address {address} resolves to nothing"))
}

fn deployment_ready(object: &Value) -> Result<(), String> {
    let ready = object
        .pointer("/status/readyReplicas")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if ready >= 1 {
        Ok(())
    } else {
        Err("no ready replica".to_owned())
    }
}

fn cluster_ip(object: &Value) -> Result<IpAddr, String> {
    object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| "no spec.clusterIP".to_owned())
}

fn node_port(object: &Value) -> Result<u16, String> {
    object
        .pointer("/spec/ports/0/nodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| "no spec.ports[0].nodePort".to_owned())
}

/// Programmed=True and the first status address.
fn gateway_address(object: &Value) -> Result<String, String> {
    cluster::condition_true(object, "Programmed")?;
    object
        .pointer("/status/addresses/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "Programmed but no status.addresses".to_owned())
}

/// A finished client pod's result: `Err` while it runs, `Ok(Err)` when it ended
/// without a result or cannot start.
pub(crate) fn pod_result(pod: &Value) -> Result<Result<Tally, String>, String> {
    let status = pod.pointer("/status/containerStatuses/0/state");
    if let Some(reason) = status
        .and_then(|s| s.pointer("/waiting/reason"))
        .and_then(Value::as_str)
        .filter(|r| HOPELESS.contains(r))
    {
        let message = status
            .and_then(|s| s.pointer("/waiting/message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return Ok(Err(format!("{reason} {message}")));
    }
    let Some(terminated) = status.and_then(|s| s.get("terminated")) else {
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        return match phase {
            Some("Failed") => Ok(Err("Failed without a terminated container".to_owned())),
            other => Err(format!("still {}", other.unwrap_or("Pending"))),
        };
    };
    let code = terminated
        .get("exitCode")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let message = terminated
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let tally = message
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Tally>(line.trim()).ok());
    Ok(tally.ok_or_else(|| {
        let tail: String = message
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("exited {code} without a result line; termination message: {tail:?}")
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_result_comes_from_its_termination_message() {
        let running = json!({"status": {"phase": "Running",
            "containerStatuses": [{"state": {"running": {}}}]}});
        assert!(pod_result(&running).is_err());
        let tally = Tally {
            url: "http://10.96.0.10:80/".into(),
            sent: 2,
            backends: [("echo-same-node".to_owned(), 2)].into(),
            failed: 0,
            errors: Vec::new(),
        };
        let message = format!(
            "some log line\n{}\n",
            serde_json::to_string(&tally).unwrap()
        );
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state":
            {"terminated": {"exitCode": 0, "message": message}}}]}});
        assert_eq!(pod_result(&done).unwrap().unwrap(), tally);
        let crashed = json!({"status": {"phase": "Failed", "containerStatuses": [{"state":
            {"terminated": {"exitCode": 2, "message": "error: unexpected argument"}}}]}});
        let error = pod_result(&crashed).unwrap().unwrap_err();
        assert!(
            error.contains("exited 2") && error.contains("unexpected argument"),
            "{error}"
        );
        let pull = json!({"status": {"phase": "Pending", "containerStatuses": [{"state":
            {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}});
        let error = pod_result(&pull).unwrap().unwrap_err();
        assert!(error.contains("ImagePullBackOff"), "{error}");
    }

    #[test]
    fn status_readers() {
        assert!(deployment_ready(&json!({"status": {"readyReplicas": 1}})).is_ok());
        assert!(deployment_ready(&json!({"status": {}})).is_err());
        let svc = json!({"spec": {"clusterIP": "10.96.0.3", "ports": [{"nodePort": 30080}]}});
        assert_eq!(cluster_ip(&svc).unwrap().to_string(), "10.96.0.3");
        assert_eq!(node_port(&svc).unwrap(), 30080);
        let gw = json!({"status": {"conditions": [{"type": "Programmed", "status": "True"}],
            "addresses": [{"type": "IPAddress", "value": "172.18.255.1"}]}});
        assert_eq!(gateway_address(&gw).unwrap(), "172.18.255.1");
        let pending = json!({"status": {"conditions": [{"type": "Programmed", "status": "False",
            "reason": "AddressNotAssigned", "message": "waiting"}]}});
        let error = gateway_address(&pending).unwrap_err();
        assert!(error.contains("AddressNotAssigned"), "{error}");
    }
}
