//! A config the proxy must reject (issue 5, acceptance): a new Gateway's listener needs
//! a port that another program holds on the proxy's node. The proxy NACKs the push and
//! keeps serving its running config, the operator counts the NACK and puts the bind
//! error on that Gateway's status (Programmed=False, reason Invalid), the other Gateway
//! stays programmed and its traffic never fails; once the port is free, the next config
//! is accepted and the Gateway is programmed again.

#![allow(clippy::unwrap_used)]

mod binaries;
mod kube_common;

use std::time::Duration;

use binaries::{Cluster, Load, Node, WAIT, proxy, scenario};
use kube::Api;
use kube_common::wait_programmed;
use portico_api::gateway::Gateway;
use portico_api::names::{condition, reason};
use portico_testkit::{eventually, next_proxy_port};

/// Gateway `apps/other` (HTTP on 80) and a route to the echo Service through it.
fn other(tag: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: other
  namespace: apps
spec:
  gatewayClassName: portico
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo-other
  namespace: apps
spec:
  parentRefs:
  - name: other
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add:
        - name: X-Portico-Other
          value: "tag-{tag}"
    backendRefs:
    - name: echo
      port: 8080
"#
    )
}

/// The Programmed condition of Gateway `apps/<name>` and of its listener `http`, each
/// as (status, reason, message).
async fn programmed(
    client: &kube::Client,
    name: &str,
) -> Option<((String, String, String), (String, String, String))> {
    let api: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    let status = api.get_status(name).await.ok()?.status?;
    let of = |conditions: &[portico_api::k8s::Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == condition::PROGRAMMED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let gateway = of(status.conditions.as_deref()?)?;
    let listener = status
        .listeners?
        .into_iter()
        .find(|l| l.name == "http")
        .and_then(|l| of(&l.conditions))?;
    Some((gateway, listener))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_on_the_node_is_nacked_onto_the_gateway_status_and_others_keep_serving() {
    let Some(node) = Node::new("fault_nack") else {
        return;
    };
    let cluster = Cluster::start().await;
    let _pod = node.echo("echo-0", "apps", "echo");
    cluster.apply(&scenario(&node));
    let operator = cluster
        .operator("operator-a", (node.host_ip, 0).into())
        .await;
    let _proxy = proxy(&node, "node-1", operator.config_addr);
    let web_port = cluster.proxy_port("web", 80).await;
    wait_programmed(&cluster.client, "apps", "web", WAIT).await;
    let mut load = Load::start((node.node_ip, web_port).into(), Duration::from_millis(10));
    load.succeeded(10).await;

    // Another program on the node holds the port Gateway `other` is going to need.
    // The port the operator will give `other`'s port 80 (its scheme is deterministic).
    let new: Gateway = serde_yaml_ng::from_str(other("").split("\n---\n").next().unwrap()).unwrap();
    let port = next_proxy_port(&cluster.client, new, 80).await.unwrap();
    let occupier = node.occupy(port);
    cluster.apply(&other("1"));
    assert_eq!(cluster.proxy_port("other", 80).await, port);

    let ((status, why, message), (listener_status, _, listener_message)) =
        eventually(WAIT, || async {
            let found = programmed(&cluster.client, "other").await?;
            (found.0.0 == "False" && found.0.1 == reason::INVALID).then_some(found)
        })
        .await
        .unwrap();
    assert_eq!((status.as_str(), why.as_str()), ("False", reason::INVALID));
    assert!(
        message.contains("proxy node-1 rejected config") && message.contains(&port.to_string()),
        "{message}"
    );
    assert!(
        message.contains("in use"),
        "the bind error is named: {message}"
    );
    assert_eq!(listener_status, "False");
    assert_eq!(listener_message, message);
    assert!(operator.metric("portico_config_nacks_total").await >= 1.0);
    // The status writes that carried the NACK to the Gateway are counted, as are the
    // translations behind them.
    assert!(
        operator
            .metric("portico_status_patches_total{result=\"patched\"}")
            .await
            >= 1.0
    );
    assert!(operator.metric("portico_reconciles_total").await >= 1.0);
    // Every series of the operator is documented, with its type and labels.
    portico_testkit::metrics::check_documented("operator", &operator.metrics().await).unwrap();
    // The other Gateway is untouched, and its traffic kept flowing.
    let ((web, _, _), _) = programmed(&cluster.client, "web").await.unwrap();
    assert_eq!(web, "True");
    load.succeeded(50).await;

    // The port is freed; the next change of `other` is accepted and clears the NACK.
    drop(occupier);
    cluster.apply(&other("2"));
    eventually(WAIT, || async {
        let ((status, _, _), (listener, _, _)) = programmed(&cluster.client, "other").await?;
        (status == "True" && listener == "True").then_some(())
    })
    .await
    .unwrap();
    let mut other_load = Load::start((node.node_ip, port).into(), Duration::from_millis(10));
    other_load.shows("x-portico-other: tag-2").await;
    assert!(other_load.finish().await.failures.is_empty());

    let report = load.finish().await;
    assert!(
        report.failures.is_empty(),
        "{} requests to Gateway web failed: {:?}",
        report.failures.len(),
        report.failures
    );
}
