//! The agent's `/metrics` as docs/metrics.md documents it: `portico-agent run` on a
//! folder of manifests, scraped on its status port; the series exist with the documented
//! types and labels, and move when a Service is added. Privileged (it attaches the
//! socket LB to the lab's cgroup): skips loudly without root and BPF.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::Duration;

use common::{AGENT, Lab};
use portico_testkit::metrics::{check_documented, value};
use portico_testkit::{Process, eventually, write_file};

const WAIT: Duration = Duration::from_secs(20);

fn service(name: &str, vip: &str, endpoint: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: [{endpoint}]
"#
    )
}

async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let (code, headers, body) = portico_testkit::get(addr, None, "/metrics")
        .await
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("/metrics answered {code}"));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("text/plain; version=0.0.4") {
        return Err(format!("content-type {content_type:?}"));
    }
    String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
}

/// The first scrape whose `portico_svc` map holds `services` entries.
async fn scrape_with_services(agent: &Process, addr: SocketAddr, services: f64) -> String {
    eventually(WAIT, || async {
        let text = scrape(addr).await?;
        let have = value(
            &text,
            "portico_agent_map_entries",
            &[("map", "portico_svc")],
        );
        (have == Some(services))
            .then_some(text)
            .ok_or_else(|| format!("portico_svc entries: {have:?}, want {services}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent:\n{}", agent.output()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_documented_and_move_when_a_service_is_added() {
    let Some(lab) = Lab::new("metrics_are_documented_and_move_when_a_service_is_added") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "web.yaml",
        service("web", "10.123.100.10", "10.123.0.2"),
    )
    .unwrap();
    let args: Vec<&OsStr> = vec![
        OsStr::new("run"),
        OsStr::new("--pin-dir"),
        lab.pin_dir.as_os_str(),
        OsStr::new("--cgroup"),
        lab.cgroup.as_os_str(),
        OsStr::new("--no-mount-bpffs"),
        OsStr::new("--from-dir"),
        dir.path().as_os_str(),
        OsStr::new("--status-addr"),
        OsStr::new("127.0.0.1:0"),
    ];
    let agent = Process::spawn(AGENT, args).unwrap();
    let addr = agent.wait_for_listen_addr(WAIT).await.unwrap();

    let first = scrape_with_services(&agent, addr, 1.0).await;
    check_documented("agent", &first).unwrap();
    let cgroup = lab.cgroup.display().to_string();
    assert_eq!(
        value(
            &first,
            "portico_agent_program_attached",
            &[("program", "socket-lb"), ("target", cgroup.as_str())]
        ),
        Some(1.0),
        "{first}"
    );
    assert_eq!(value(&first, "portico_agent_healthy", &[]), Some(1.0));
    assert_eq!(value(&first, "portico_agent_synced", &[]), Some(1.0));
    let slots = value(
        &first,
        "portico_agent_map_entries",
        &[("map", "portico_be")],
    )
    .unwrap();
    let syncs = value(&first, "portico_agent_syncs_total", &[]).unwrap();
    assert!(slots >= 1.0 && syncs >= 1.0, "{first}");

    // A second Service: the maps grow and one more sync is counted.
    write_file(
        dir.path(),
        "api.yaml",
        service("api", "10.123.100.11", "10.123.0.3"),
    )
    .unwrap();
    let after = scrape_with_services(&agent, addr, 2.0).await;
    check_documented("agent", &after).unwrap();
    assert!(
        value(
            &after,
            "portico_agent_map_entries",
            &[("map", "portico_be")]
        )
        .unwrap()
            > slots,
        "{after}"
    );
    assert!(
        value(&after, "portico_agent_syncs_total", &[]).unwrap() > syncs,
        "{after}"
    );
    assert_eq!(
        value(&after, "portico_agent_sync_errors_total", &[]),
        Some(0.0)
    );
    drop(agent);
}
