//! The operator against the test API server: statuses with the right conditions, the
//! Gateway's Service, addresses from the load balancer, other controllers' route
//! parents left alone.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_common::*;
use portico_api::gateway::{Gateway, HttpRoute, ListenerSet};
use portico_api::k8s::Service;
use portico_api::names::{self, condition, reason};
use portico_operator::start;
use portico_testkit::eventually;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn true_with(reason: &str, generation: i64) -> Option<(String, String, Option<i64>)> {
    Some(("True".into(), reason.into(), Some(generation)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_services_and_addresses_are_written() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();

    // Another controller already reports on the route (a parent of its own).
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), "apps");
    let foreign = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
        "controllerName": "example.com/other-controller",
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1
        }]
    });
    routes
        .patch_status(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"parents": [foreign]}})),
        )
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    // GatewayClass: ours is Accepted, the other controller's is left alone.
    let class = eventually(WAIT, || async {
        let c = class_conditions(&client, "portico").await?;
        accepted(&c).then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(
        condition(&class, condition::ACCEPTED),
        true_with(reason::ACCEPTED, 1)
    );

    // Gateway: Accepted, with observedGeneration on every condition.
    let gateway = eventually(WAIT, || async {
        let c = gateway_conditions(&client, "apps", "web").await?;
        accepted(&c).then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(
        condition(&gateway, condition::ACCEPTED),
        true_with(reason::ACCEPTED, 1)
    );
    assert!(gateway.iter().all(|c| c.observed_generation == Some(1)));

    // HTTPRoute: our parent entry next to the other controller's.
    let route = eventually(WAIT, || async {
        let r = route(&client, "apps", "echo").await?;
        let parents = r.status?.parents;
        (parents.len() == 2).then_some(parents)
    })
    .await
    .unwrap();
    assert_eq!(
        parents_of(&route, "example.com/other-controller"),
        ["theirs"]
    );
    assert_eq!(parents_of(&route, names::CONTROLLER_NAME), ["web"]);
    let ours = route
        .iter()
        .find(|p| p.controller_name == names::CONTROLLER_NAME)
        .unwrap();
    assert_eq!(
        condition(&ours.conditions, condition::ACCEPTED),
        true_with(reason::ACCEPTED, 1)
    );
    assert_eq!(
        condition(&ours.conditions, condition::RESOLVED_REFS),
        true_with(reason::RESOLVED_REFS, 1)
    );

    // The Gateway's Service: owned, labelled, annotated, selecting the proxies.
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    let svc = eventually(WAIT, || async {
        services.get_opt("portico-gateway-web").await.ok().flatten()
    })
    .await
    .unwrap();
    let labels = svc.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        labels.get(names::GATEWAY_NAME_LABEL).map(String::as_str),
        Some("web")
    );
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("service.beta.kubernetes.io/aws-load-balancer-scheme")
            .map(String::as_str),
        Some("internet-facing")
    );
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    let gw = gateways.get("web").await.unwrap();
    let owners = svc.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "Gateway");
    assert_eq!(Some(&owners[0].uid), gw.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [80]);

    // A load balancer gives the Service an address: it becomes the Gateway's.
    services
        .patch_status(
            "portico-gateway-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.9.8.7"}]}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let status = gateways.get_status("web").await.ok()?.status?;
        let values: Vec<String> = status.addresses?.into_iter().map(|a| a.value).collect();
        (values == ["10.9.8.7"]).then_some(())
    })
    .await
    .unwrap();

    // A spec change moves observedGeneration; the Service follows the listeners.
    apply(
        &server,
        &scenario_doc("Gateway").replace(
            "  - name: http\n    port: 80\n",
            "  - name: http\n    port: 80\n    protocol: HTTP\n  - name: alt\n    port: 8080\n",
        ),
    );
    eventually(WAIT, || async {
        let conditions = gateway_conditions(&client, "apps", "web").await?;
        conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
            .then_some(())
    })
    .await
    .unwrap();
    eventually(WAIT, || async {
        let svc = services.get("portico-gateway-web").await.ok()?;
        let ports: Vec<i32> = svc.spec?.ports?.iter().map(|p| p.port).collect();
        (ports == [80, 8080]).then_some(())
    })
    .await
    .unwrap();

    // Converged: the pass over a snapshot taken after a change nothing depends on (a
    // Namespace label) writes nothing.
    apply(
        &server,
        &scenario_doc("Namespace").replace(
            "metadata:\n",
            "metadata:\n  labels:\n    touched: \"yes\"\n",
        ),
    );
    let generation = eventually(WAIT, || async {
        let snapshot = operator.snapshots.borrow().clone()?;
        let touched = snapshot.inputs.namespaces.iter().any(|ns| {
            ns.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("touched"))
        });
        touched.then_some(snapshot.generation)
    })
    .await
    .unwrap();
    eventually(WAIT, || async {
        (operator.status_counters.last_quiet_generation() >= generation).then_some(())
    })
    .await
    .unwrap();

    shutdown.cancel();
    operator.wait().await;
}

fn accepted(conditions: &[portico_api::k8s::Condition]) -> bool {
    condition(conditions, condition::ACCEPTED).is_some_and(|(status, _, _)| status == "True")
}

fn parents_of(
    parents: &[portico_api::gateway::httproutes::HttpRouteStatusParents],
    controller: &str,
) -> Vec<String> {
    parents
        .iter()
        .filter(|p| p.controller_name == controller)
        .map(|p| p.parent_ref.name.clone())
        .collect()
}

const LISTENER_SET: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: shared
  namespace: apps
spec:
  gatewayClassName: portico
  allowedListeners:
    namespaces:
      from: All
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata:
  name: extra
  namespace: team
spec:
  parentRef:
    name: shared
    namespace: apps
  listeners:
  - name: extra
    port: 8081
    protocol: HTTP
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_sets_get_a_status_and_ports_on_the_gateway_service() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, LISTENER_SET);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    let sets: Api<ListenerSet> = Api::namespaced(client.clone(), "team");
    eventually(WAIT, || async {
        let conditions = sets.get_status("extra").await.ok()?.status?.conditions?;
        accepted(&conditions).then_some(())
    })
    .await
    .unwrap();
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        let status = gateways.get_status("shared").await.ok()?.status?;
        (status.attached_listener_sets == Some(1)).then_some(())
    })
    .await
    .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        let svc = services.get("portico-gateway-shared").await.ok()?;
        let ports: Vec<i32> = svc.spec?.ports?.iter().map(|p| p.port).collect();
        (ports == [80, 8081]).then_some(())
    })
    .await
    .unwrap();

    shutdown.cancel();
    operator.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_keeps_the_service_and_rewrites_nothing() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");

    let first_stop = CancellationToken::new();
    let mut first = start(client.clone(), config("before"), first_stop.clone())
        .await
        .unwrap()
        .unwrap();
    let uid = eventually(WAIT, || async {
        services
            .get_opt("portico-gateway-web")
            .await
            .ok()
            .flatten()?
            .metadata
            .uid
    })
    .await
    .unwrap();
    eventually(WAIT, || async {
        let c = gateway_conditions(&client, "apps", "web").await?;
        accepted(&c).then_some(())
    })
    .await
    .unwrap();
    // Settled: a pass that finds nothing to write.
    eventually(WAIT, || async {
        (first.status_counters.quiet_passes() > 0).then_some(())
    })
    .await
    .unwrap();
    // Killed: no release, the next one waits for the Lease to expire.
    first.abort();

    let stop = CancellationToken::new();
    let second = start(client.clone(), config("after"), stop.clone())
        .await
        .unwrap()
        .unwrap();
    eventually(WAIT, || async { second.leader.borrow().then_some(()) })
        .await
        .unwrap();
    // It compares what is there with what it would write, and writes nothing.
    eventually(WAIT, || async {
        (second.status_counters.quiet_passes() > 0).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(second.status_counters.patched(), 0);
    let svc = services.get("portico-gateway-web").await.unwrap();
    assert_eq!(svc.metadata.uid, Some(uid));

    // And it picks up changes from there.
    apply(
        &server,
        &scenario_doc("Gateway").replace("      team: web\n", "      team: restarted\n"),
    );
    eventually(WAIT, || async {
        let svc = services.get("portico-gateway-web").await.ok()?;
        let labels = svc.metadata.labels?;
        (labels.get("team").map(String::as_str) == Some("restarted")).then_some(())
    })
    .await
    .unwrap();

    stop.cancel();
    second.wait().await;
}

const SECRETS: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: cert
  namespace: apps
type: kubernetes.io/tls
data:
  tls.crt: Y2VydA==
  tls.key: a2V5
---
apiVersion: v1
kind: Secret
metadata:
  name: password
  namespace: apps
type: Opaque
data:
  password: aHVudGVyMg==
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_secrets_reach_the_translator() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, SECRETS);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();
    let secrets = eventually(WAIT, || async {
        let snapshot = operator.snapshots.borrow().clone()?;
        let names: Vec<String> = snapshot
            .inputs
            .secrets
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        (!names.is_empty()).then_some(names)
    })
    .await
    .unwrap();
    assert_eq!(secrets, ["cert"]);

    shutdown.cancel();
    operator.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_go_when_their_gateway_leaves_our_class_or_is_deleted() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    apply(&server, LISTENER_SET);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    for name in ["portico-gateway-web", "portico-gateway-shared"] {
        eventually(WAIT, || async {
            services.get_opt(name).await.ok().flatten()
        })
        .await
        .unwrap();
    }

    // `web` moves to another controller's class: its Service is ours to remove.
    apply(
        &server,
        &scenario_doc("Gateway").replace(
            "gatewayClassName: portico\n",
            "gatewayClassName: someone-else\n",
        ),
    );
    eventually(WAIT, || async {
        services
            .get_opt("portico-gateway-web")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();

    // `shared` is deleted: the garbage collector removes its Service (ownerReference).
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    gateways
        .delete("shared", &Default::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        services
            .get_opt("portico-gateway-shared")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();

    shutdown.cancel();
    operator.wait().await;
}

/// `attachedRoutes` of the `http` listener of Gateway apps/web.
async fn attached_routes(gateways: &Api<Gateway>) -> Option<i32> {
    let status = gateways.get_status("web").await.ok()?.status?;
    status
        .listeners?
        .into_iter()
        .find(|l| l.name == "http")
        .map(|l| l.attached_routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_relist_after_their_history_expired() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        (attached_routes(&gateways).await? == 1).then_some(())
    })
    .await
    .unwrap();

    // The server forgets its watch history: resuming watches get 410 Gone and relist.
    // The route deleted meanwhile must disappear from the store all the same.
    server.compact();
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), "apps");
    routes.delete("echo", &Default::default()).await.unwrap();
    eventually(WAIT, || async {
        (attached_routes(&gateways).await? == 0).then_some(())
    })
    .await
    .unwrap();

    // And the watches keep going after the relist.
    apply(&server, &scenario_doc("HTTPRoute"));
    eventually(WAIT, || async {
        (attached_routes(&gateways).await? == 1).then_some(())
    })
    .await
    .unwrap();

    shutdown.cancel();
    operator.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_limits_what_is_watched() {
    let server = server_with_crds().await;
    apply(&server, SCENARIO);
    // The same Gateway in another namespace.
    apply(
        &server,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: elsewhere\n",
    );
    apply(
        &server,
        &scenario_doc("Gateway").replace("namespace: apps", "namespace: elsewhere"),
    );
    let client = server.client().unwrap();
    let shutdown = CancellationToken::new();
    let mut limited = config("solo");
    limited.namespace = Some("apps".into());
    let operator = start(client.clone(), limited, shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    eventually(WAIT, || async {
        let c = gateway_conditions(&client, "apps", "web").await?;
        accepted(&c).then_some(())
    })
    .await
    .unwrap();
    let snapshot = operator.snapshots.borrow().clone().unwrap();
    let namespaces: Vec<Option<&str>> = snapshot
        .inputs
        .gateways
        .iter()
        .map(|g| g.metadata.namespace.as_deref())
        .collect();
    assert_eq!(namespaces, [Some("apps")]);
    let elsewhere = gateway_conditions(&client, "elsewhere", "web")
        .await
        .unwrap_or_default();
    assert!(!accepted(&elsewhere));

    shutdown.cancel();
    operator.wait().await;
}
