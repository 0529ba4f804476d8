//! The Gateway API CRDs (v1.6.1, standard channel, from ../shared/gateway-api) on the
//! test API server: registration and discovery, typed and dynamic access, schema
//! defaults and validation, the status subresource and `metadata.generation`, and the
//! operator's ownership pattern (a Service owned by a Gateway).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::{Client, Resource};
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use serde_json::json;

fn crds_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api/crds/standard");
    assert!(
        dir.is_dir(),
        "the Gateway API CRDs are expected in {}",
        dir.display()
    );
    dir
}

async fn with_crds() -> (TestApiServer, Client) {
    let server = TestApiServer::start().await.unwrap();
    let applied = server.apply_crds_from(crds_dir()).unwrap();
    assert!(
        applied
            .contains(&"CustomResourceDefinition/gateways.gateway.networking.k8s.io".to_string()),
        "{applied:?}"
    );
    let client = server.client().unwrap();
    (server, client)
}

fn gateway(name: &str, port: i32) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn gateway_api_crds_register_and_serve_their_kinds() {
    let (server, client) = with_crds().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("gateways.gateway.networking.k8s.io")
        .await
        .unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery
        .groups()
        .find(|g| g.name() == "gateway.networking.k8s.io")
        .unwrap();
    assert_eq!(group.preferred_version_or_latest(), "v1");
    let (ar, caps) = group.recommended_kind("HTTPRoute").unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope.clone()),
        ("httproutes", Scope::Namespaced)
    );
    // ReferenceGrant is stored as v1beta1 but v1 is preferred.
    assert_eq!(
        group.recommended_kind("ReferenceGrant").unwrap().0.version,
        "v1"
    );

    let classes: Api<GatewayClass> = Api::all(client.clone());
    let class: GatewayClass = serde_json::from_value(json!({
        "metadata": {"name": "portico"},
        "spec": {"controllerName": portico_api::names::CONTROLLER_NAME},
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();

    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "default");
    let created = gateways
        .create(&PostParams::default(), &gateway("web", 80))
        .await
        .unwrap();
    // Schema defaults, as the real server applies them.
    let listener = &created.spec.listeners[0];
    let from = listener
        .allowed_routes
        .as_ref()
        .unwrap()
        .namespaces
        .as_ref()
        .unwrap()
        .from
        .clone();
    assert_eq!(serde_json::to_value(from).unwrap(), json!("Same"));
    let conditions = created.status.unwrap().conditions.unwrap();
    assert_eq!(
        (conditions[0].type_.as_str(), conditions[0].reason.as_str()),
        ("Accepted", "Pending")
    );

    // The same object through the dynamic API and the older served version.
    let ar = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1beta1", "Gateway"),
        "gateways",
    );
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let old = dynamic.get("web").await.unwrap();
    assert_eq!(
        old.types.unwrap().api_version,
        "gateway.networking.k8s.io/v1beta1"
    );
    assert_eq!(old.data["spec"]["listeners"][0]["port"], 80);
    let all = Api::<Gateway>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    // Schema validation: a port out of range and an unknown protocol are rejected.
    let mut bad = gateway("bad", 0);
    bad.spec.listeners[0].protocol = "no such protocol!".into();
    match gateways
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message.contains("spec.listeners[0].port"),
                "{}",
                s.message
            );
            assert!(
                s.message.contains("spec.listeners[0].protocol"),
                "{}",
                s.message
            );
        }
        e => panic!("{e}"),
    }

    // Deleting the CRD removes its objects and its resource.
    crds.delete(
        "gateways.gateway.networking.k8s.io",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    let err = gateways.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    server.shutdown().await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let (_server, client) = with_crds().await;
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "default");
    let mut gw = gateway("web", 80);
    gw.status =
        Some(serde_json::from_value(json!({"addresses": [{"value": "192.0.2.1"}]})).unwrap());
    let created = gateways.create(&PostParams::default(), &gw).await.unwrap();
    assert!(
        created.status.as_ref().unwrap().addresses.is_none(),
        "status is not set by create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    // Status through /status: generation stays.
    let status = json!({"status": {"conditions": [{
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let after_status = gateways
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(
        after_status
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()[0]
            .status,
        "True"
    );

    // Status through the main resource: ignored. Spec through /status: ignored.
    let mut edited = after_status.clone();
    edited.status.as_mut().unwrap().conditions = Some(vec![]);
    edited.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    let after_main = gateways
        .replace("web", &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(after_main.status, after_status.status);
    assert_eq!(
        after_main.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let mut spec_via_status = after_main.clone();
    spec_via_status.spec.listeners[0].port = 81;
    let ignored = gateways
        .replace_status("web", &PostParams::default(), &spec_via_status)
        .await
        .unwrap();
    assert_eq!(ignored.spec.listeners[0].port, 80);

    // A spec change moves the generation.
    let moved = gateways
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})))
        .await
        .unwrap();
    assert_eq!(moved.metadata.generation, Some(2));

    // Server-side apply of status by the operator's field manager, conflicting with
    // another writer's condition of the same type unless forced.
    let apply_status = |reason: &str| {
        json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "web"},
        "status": {"conditions": [{"type": "Programmed", "status": "True", "reason": reason, "message": "",
                                   "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    };
    gateways
        .patch_status(
            "web",
            &PatchParams::apply("portico"),
            &Patch::Apply(apply_status("Programmed")),
        )
        .await
        .unwrap();
    let err = gateways
        .patch_status(
            "web",
            &PatchParams::apply("other"),
            &Patch::Apply(apply_status("Other")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let forced = gateways
        .patch_status(
            "web",
            &PatchParams::apply("other").force(),
            &Patch::Apply(apply_status("Other")),
        )
        .await
        .unwrap();
    let conditions = forced.status.unwrap().conditions.unwrap();
    // Conditions are a map list keyed by type: the Accepted one is kept beside.
    let types: Vec<_> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(types, [("Accepted", "Accepted"), ("Programmed", "Other")]);
    assert_eq!(forced.metadata.generation, Some(2));
}

#[tokio::test]
async fn services_owned_by_a_gateway_go_with_it() {
    let (_server, client) = with_crds().await;
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let gw = gateways
        .create(&PostParams::default(), &gateway("web", 80))
        .await
        .unwrap();
    let owner = gw.controller_owner_ref(&()).unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "portico-gateway-web", "ownerReferences": [owner],
                     "labels": {"gateway.networking.k8s.io/gateway-name": "web"}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let svc = services
        .patch(
            "portico-gateway-web",
            &PatchParams::apply("portico").force(),
            &Patch::Apply(&svc),
        )
        .await
        .unwrap();
    assert!(
        svc.spec.unwrap().ports.unwrap()[0].node_port.is_some(),
        "LoadBalancer Services get NodePorts"
    );

    // HTTPRoutes parent to the Gateway and stay: they hold no ownerReference.
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), "default");
    let route: HttpRoute = serde_json::from_value(json!({
        "metadata": {"name": "r"}, "spec": {"parentRefs": [{"name": "web"}], "rules": [{}]},
    }))
    .unwrap();
    let route = routes.create(&PostParams::default(), &route).await.unwrap();
    let rule = serde_json::to_value(&route.spec.rules.unwrap()[0]).unwrap();
    assert_eq!(
        rule["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"}}]),
        "schema default"
    );

    gateways
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        match services.get_opt("portico-gateway-web").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("Service still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(routes.get_opt("r").await.unwrap().is_some());
}
