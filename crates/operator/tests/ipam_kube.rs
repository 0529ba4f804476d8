//! LB-IPAM against the test API server: addresses from a LoadBalancerIPPool land in
//! Services' status, never twice; exhaustion is an Event on the Service; a deleted
//! Service's address goes to the one waiting; a restarted controller keeps every
//! assignment (it rebuilds them from the Services' status) and writes nothing.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kube_common::*;
use portico_api::k8s::Service;
use portico_api::k8s_openapi::api::events::v1::Event;
use portico_api::names;
use portico_api::portico::LoadBalancerIPPool;
use portico_operator::ipam::{self, IpamConfig, IpamCounters};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

const OBJECTS: &str = r#"
apiVersion: portico.dev/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: two}
spec:
  blocks: [{start: 192.0.2.10, stop: 192.0.2.11}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: c, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: cloud, namespace: default}
spec: {type: LoadBalancer, loadBalancerClass: service.k8s.aws/nlb, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: default}
spec: {type: ClusterIP, ports: [{port: 80}]}
"#;

fn start(client: kube::Client) -> (CancellationToken, Arc<IpamCounters>) {
    let shutdown = CancellationToken::new();
    let counters = Arc::new(IpamCounters::default());
    let (_tx, leader) = watch::channel(true);
    tokio::spawn({
        let (shutdown, counters) = (shutdown.clone(), counters.clone());
        async move {
            // Holding the sender keeps `leader` true for the task's life.
            let _tx = _tx;
            ipam::run(
                client,
                IpamConfig {
                    field_manager: "portico-test".into(),
                    identity: "test".into(),
                },
                leader,
                counters,
                shutdown,
            )
            .await;
        }
    });
    (shutdown, counters)
}

async fn ingress(api: &Api<Service>, name: &str) -> Option<Vec<String>> {
    let s = api.get_status(name).await.ok()?;
    Some(
        s.status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_assign_once_report_exhaustion_release_and_survive_a_restart() {
    let server = TestApiServer::start().await.unwrap();
    server
        .apply_crds_from(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/crds"))
        .unwrap();
    apply(&server, OBJECTS);
    let client = server.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let (shutdown, counters) = start(client.clone());

    // a and b (created first) get the two addresses, distinct; c waits.
    let (a, b) = eventually(WAIT, || async {
        let (a, b) = (
            ingress(&services, "a").await?,
            ingress(&services, "b").await?,
        );
        (a.len() == 1 && b.len() == 1).then(|| (a[0].clone(), b[0].clone()))
    })
    .await
    .unwrap();
    assert_ne!(a, b);
    for ip in [&a, &b] {
        assert!(["192.0.2.10", "192.0.2.11"].contains(&ip.as_str()), "{ip}");
    }
    assert_eq!(ingress(&services, "c").await, Some(vec![]));
    // Other implementations' Services and non-LoadBalancers are left alone.
    assert_eq!(ingress(&services, "cloud").await, Some(vec![]));
    assert_eq!(ingress(&services, "internal").await, Some(vec![]));

    // Exhaustion: a Warning Event on c.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let note = eventually(WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            (e.regarding.as_ref()?.name.as_deref() == Some("c")
                && e.reason.as_deref() == Some(names::event::ADDRESS_NOT_ASSIGNED))
            .then(|| e.note.unwrap_or_default())
        })
    })
    .await
    .unwrap();
    assert!(
        note.contains("no free address left in LoadBalancerIPPool two"),
        "{note}"
    );

    // The pool counts.
    let pools: Api<LoadBalancerIPPool> = Api::all(client.clone());
    eventually(WAIT, || async {
        let st = pools.get_status("two").await.ok()?.status?;
        (st.total == Some(2) && st.used == Some(2) && st.available == Some(0)).then_some(())
    })
    .await
    .unwrap();

    // Deleting a releases its address to c.
    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        (ingress(&services, "c").await? == vec![a.clone()]).then_some(())
    })
    .await
    .unwrap();

    // A new controller (a restart) keeps every assignment and writes nothing.
    shutdown.cancel();
    let (shutdown, counters_after) = start(client.clone());
    eventually(WAIT, || async {
        (counters_after.passes.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(counters_after.service_writes.load(Ordering::Relaxed), 0);
    assert_eq!(ingress(&services, "b").await, Some(vec![b.clone()]));
    assert_eq!(ingress(&services, "c").await, Some(vec![a.clone()]));
    assert!(counters.service_writes.load(Ordering::Relaxed) >= 3);
    shutdown.cancel();
}
