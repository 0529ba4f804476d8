//! GatewayClass `parametersRef` -> `PorticoGatewayClassConfig`, against the test API
//! server: the config shapes every Gateway Service of the class, a change of the config
//! updates the Services in place (same uid), and a reference to a missing or wrong-kind
//! object rejects the class (Accepted=False, InvalidParameters) while the Services keep
//! their last good shape.

#![allow(clippy::unwrap_used)]

mod kube_common;

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use kube_common::*;
use portico_api::gateway::{Gateway, GatewayClass};
use portico_api::k8s::{Condition, Service};
use portico_api::names::{condition, reason};
use portico_api::portico::PorticoGatewayClassConfig;
use portico_operator::start;
use portico_testkit::eventually;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// Portico's own CRDs, as `make generate` writes them.
fn portico_crds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/crds")
}

fn class_config(spec: serde_json::Value) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "PorticoGatewayClassConfig",
        "metadata": {"name": "internal", "namespace": "portico-system"},
        "spec": spec,
    }))
    .unwrap()
}

async fn set_parameters_ref(client: &Client, group: &str, kind: &str) {
    let classes: Api<GatewayClass> = Api::all(client.clone());
    classes
        .patch(
            "portico",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parametersRef": {
                "group": group, "kind": kind, "namespace": "portico-system", "name": "internal"
            }}})),
        )
        .await
        .unwrap();
}

/// The class's Accepted condition once it is at `generation` with `status`.
async fn accepted_at(client: &Client, generation: i64, status: &str) -> Condition {
    eventually(WAIT, || async {
        let conditions = class_conditions(client, "portico").await?;
        conditions.into_iter().find(|c| {
            c.type_ == condition::ACCEPTED
                && c.observed_generation == Some(generation)
                && c.status == status
        })
    })
    .await
    .unwrap()
}

/// The Gateway Service once `check` holds.
async fn service_when(client: &Client, check: impl Fn(&Service) -> bool) -> Service {
    let services: Api<Service> = Api::namespaced(client.clone(), "apps");
    eventually(WAIT, || async {
        let svc = services
            .get_opt("portico-gateway-web")
            .await
            .ok()
            .flatten()?;
        check(&svc).then_some(svc)
    })
    .await
    .unwrap()
}

fn type_of(svc: &Service) -> Option<&str> {
    svc.spec.as_ref()?.type_.as_deref()
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_config_shapes_services_in_place_and_bad_references_reject_the_class() {
    let server = server_with_crds().await;
    server.apply_crds_from(portico_crds()).unwrap();
    apply(&server, SCENARIO);
    apply(
        &server,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: portico-system\n",
    );
    apply(
        &server,
        &class_config(json!({"service": {
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "annotations": {"example.com/tier": "internal", "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"},
        }})),
    );
    let client = server.client().unwrap();
    set_parameters_ref(&client, "portico.dev", "PorticoGatewayClassConfig").await;

    let shutdown = CancellationToken::new();
    let operator = start(client.clone(), config("solo"), shutdown.clone())
        .await
        .unwrap()
        .unwrap();

    // Valid parameters: the class is accepted and the Service shaped by them.
    let accepted = accepted_at(&client, 2, "True").await;
    assert_eq!(accepted.reason, reason::ACCEPTED);
    let first = service_when(&client, |s| type_of(s) == Some("NodePort")).await;
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(annotation(&first, "example.com/tier"), Some("internal"));
    // The Gateway's own infrastructure annotation wins over the class's.
    assert_eq!(
        annotation(
            &first,
            "service.beta.kubernetes.io/aws-load-balancer-scheme"
        ),
        Some("internet-facing")
    );
    let uid = first.metadata.uid.clone().unwrap();

    // The config changes: the same Service is updated in place.
    apply(
        &server,
        &class_config(json!({"service": {
            "type": "LoadBalancer",
            "loadBalancerClass": "example.com/lb",
            "loadBalancerSourceRanges": ["10.0.0.0/8"],
            "annotations": {"example.com/tier": "edge"},
        }})),
    );
    let second = service_when(&client, |s| {
        type_of(s) == Some("LoadBalancer") && annotation(s, "example.com/tier") == Some("edge")
    })
    .await;
    let spec = second.spec.clone().unwrap();
    assert_eq!(spec.load_balancer_class.as_deref(), Some("example.com/lb"));
    assert_eq!(
        spec.load_balancer_source_ranges,
        Some(vec!["10.0.0.0/8".to_owned()])
    );
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(second.metadata.uid.as_deref(), Some(uid.as_str()));

    // The config object goes: the class is rejected, with the reason.
    let configs: Api<PorticoGatewayClassConfig> = Api::namespaced(client.clone(), "portico-system");
    configs
        .delete("internal", &DeleteParams::default())
        .await
        .unwrap();
    let rejected = accepted_at(&client, 2, "False").await;
    assert_eq!(rejected.reason, reason::INVALID_PARAMETERS);
    assert!(
        rejected
            .message
            .contains("portico-system/internal not found"),
        "{}",
        rejected.message
    );

    // The Gateway still gets a new port, and its Service keeps the last good shape.
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "apps");
    gateways
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP",
                 "allowedRoutes": {"namespaces": {"from": "Same"}}},
                {"name": "alt", "port": 8080, "protocol": "HTTP"},
            ]}})),
        )
        .await
        .unwrap();
    let kept = service_when(&client, |s| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref())
            .is_some_and(|ports| ports.iter().any(|p| p.port == 8080))
    })
    .await;
    assert_eq!(type_of(&kept), Some("LoadBalancer"));
    assert_eq!(annotation(&kept, "example.com/tier"), Some("edge"));
    assert_eq!(
        kept.spec.as_ref().unwrap().load_balancer_class.as_deref(),
        Some("example.com/lb")
    );
    assert_eq!(kept.metadata.uid.as_deref(), Some(uid.as_str()));

    // A reference to a kind that is not ours rejects the class too.
    set_parameters_ref(&client, "", "ConfigMap").await;
    let wrong_kind = accepted_at(&client, 3, "False").await;
    assert_eq!(wrong_kind.reason, reason::INVALID_PARAMETERS);
    assert!(
        wrong_kind
            .message
            .contains("PorticoGatewayClassConfig only"),
        "{}",
        wrong_kind.message
    );

    // Back to a valid config: accepted again, the Service follows.
    set_parameters_ref(&client, "portico.dev", "PorticoGatewayClassConfig").await;
    apply(
        &server,
        &class_config(json!({"service": {"type": "ClusterIP"}})),
    );
    accepted_at(&client, 4, "True").await;
    let last = service_when(&client, |s| type_of(s) == Some("ClusterIP")).await;
    assert_eq!(last.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(annotation(&last, "example.com/tier"), None);

    shutdown.cancel();
    operator.wait().await;
}
