//! The Kubernetes source against the test API server (crates/testkit): Services and
//! EndpointSlices watched into service entries (everywhere), and the agent binary
//! programming them into the datapath (privileged: skips loudly without root and BPF).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use std::time::Duration;
use tokio::process::Command as AsyncCommand;

use common::{AGENT, Lab, replies};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use portico_agent::source::SourceOptions;
use portico_agent::watch_kube;
use portico_api::k8s::{EndpointSlice, Service};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::{Process, eventually};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn service(name: &str, vip: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": vip, "clusterIPs": [vip],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

fn slice(service: &str, ip: &str, port: u16) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip]}]
    }))
    .unwrap()
}

/// What the source's latest snapshot programs: `frontend -> backends`.
fn summary(rx: &watch_kube::Snapshots) -> Option<Vec<String>> {
    let inv = rx.borrow().clone()?;
    Some(
        inv.entries(&SourceOptions::default())
            .iter()
            .map(|e| {
                let backends: Vec<String> = e.backends.iter().map(|b| b.addr.to_string()).collect();
                format!("{} -> {}", e.frontend, backends.join(","))
            })
            .collect(),
    )
}

#[tokio::test]
async fn services_and_endpoint_slices_are_watched_into_service_entries() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    services
        .create(&pp, &service("web", "10.96.0.10"))
        .await
        .unwrap();
    slices
        .create(&pp, &slice("web", "10.0.0.1", 8080))
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let (rx, task) = watch_kube::spawn(client, shutdown.clone());
    eventually(WAIT, || async {
        (summary(&rx) == Some(vec!["10.96.0.10:80/TCP -> 10.0.0.1:8080".to_owned()]))
            .then_some(())
            .ok_or_else(|| format!("{:?}", summary(&rx)))
    })
    .await
    .unwrap();

    // A new endpoint and a second Service arrive as watch events.
    let mut updated = slice("web", "10.0.0.2", 8080);
    updated.metadata.resource_version =
        slices.get("web-1").await.unwrap().metadata.resource_version;
    slices.replace("web-1", &pp, &updated).await.unwrap();
    services
        .create(&pp, &service("api", "10.96.0.11"))
        .await
        .unwrap();
    eventually(WAIT, || async {
        let want = vec![
            "10.96.0.10:80/TCP -> 10.0.0.2:8080".to_owned(),
            "10.96.0.11:80/TCP -> ".to_owned(),
        ];
        (summary(&rx) == Some(want))
            .then_some(())
            .ok_or_else(|| format!("{:?}", summary(&rx)))
    })
    .await
    .unwrap();

    // Like a real API server, the test server refuses loopback endpoints: the agent never
    // sees them (tests use addresses of their own network namespaces instead).
    let rejected = slices
        .create(&pp, &{
            let mut s = slice("api", "127.0.0.1", 8080);
            s.metadata.name = Some("api-1".into());
            s
        })
        .await;
    assert!(rejected.is_err(), "a loopback endpoint was accepted");

    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        (summary(&rx) == Some(vec!["10.96.0.11:80/TCP -> ".to_owned()]))
            .then_some(())
            .ok_or_else(|| format!("{:?}", summary(&rx)))
    })
    .await
    .unwrap();

    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_programs_the_api_servers_services_and_follows_their_endpoints() {
    let Some(mut lab) = Lab::new("the_agent_programs_the_api_servers_services") else {
        return;
    };
    let a = lab.tcp_backend("10.123.0.2", "a");
    let b = lab.tcp_backend("10.123.0.3", "b");
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    services
        .create(&pp, &service("web", "10.96.7.10"))
        .await
        .unwrap();
    slices
        .create(&pp, &slice("web", "10.123.0.2", a.port()))
        .await
        .unwrap();

    let mut cmd = AsyncCommand::new(AGENT);
    cmd.arg("run")
        .arg("--pin-dir")
        .arg(&lab.pin_dir)
        .arg("--cgroup")
        .arg(&lab.cgroup)
        .arg("--no-mount-bpffs")
        .arg("--k8s-api-server")
        .arg(server.url())
        .args(["--status-addr", "127.0.0.1:0"]);
    let mut agent = Process::spawn_command(cmd).unwrap();
    let status_addr = agent.wait_for_listen_addr(WAIT).await.unwrap();

    let probe = |lab: &Lab| {
        let lines = lab.probe(&["tcp", "10.96.7.10:80", "--timeout-ms", "500"]);
        if lines.iter().all(|l| l.starts_with("ok ")) {
            Ok(replies(&lines, "10.96.7.10:80"))
        } else {
            Err(format!("{lines:?}"))
        }
    };
    eventually(WAIT, || async {
        probe(&lab).and_then(|r| (r == ["a"]).then_some(()).ok_or(format!("{r:?}")))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent:\n{}", agent.output()));

    // The endpoint moves: new connections follow it.
    let mut moved = slice("web", "10.123.0.3", b.port());
    moved.metadata.resource_version = slices.get("web-1").await.unwrap().metadata.resource_version;
    slices.replace("web-1", &pp, &moved).await.unwrap();
    eventually(WAIT, || async {
        probe(&lab).and_then(|r| (r == ["b"]).then_some(()).ok_or(format!("{r:?}")))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent:\n{}", agent.output()));
    let list = Command::new(AGENT)
        .args(["list", "--pin-dir"])
        .arg(&lab.pin_dir)
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let want = format!("10.96.7.10:80/TCP 10.123.0.3:{} 1 0x0", b.port());
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want),
        "{list}"
    );

    // The status endpoint reports what is programmed and attached.
    let (code, status): (_, serde_json::Value) =
        portico_testkit::get_json(status_addr, None, "/status")
            .await
            .unwrap();
    assert_eq!(code, 200);
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["synced"], true, "{status}");
    assert_eq!(status["services"], 1, "{status}");
    assert_eq!(status["backend_slots"], 1, "{status}");
    assert!(
        status["attached"][0]
            .as_str()
            .unwrap()
            .starts_with("socket-lb@"),
        "{status}"
    );
    let (code, _, _) = portico_testkit::get(status_addr, None, "/healthz")
        .await
        .unwrap();
    assert_eq!(code, 200);

    agent.terminate().unwrap();
    let status = agent.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "agent:\n{}", agent.output());
    // Stopped, the agent leaves the datapath programmed.
    let r = probe(&lab).unwrap();
    assert_eq!(r, ["b"]);
    server.shutdown().await;
}
