//! The test API server against a real `kube::Client`: CRUD, optimistic concurrency,
//! selectors, paging, server-side apply, ownerReference garbage collection,
//! namespaces, validation, kubeconfig. Watches: `apiserver_watch.rs`; Gateway API CRDs
//! and the status subresource: `apiserver_crds.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Error};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use serde_json::json;

fn service(name: &str, labels: &[(&str, &str)]) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap()
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data.iter().cloned().collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

/// The HTTP code and reason of a failed call.
fn api_error(e: Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn services_crud_with_conflicts_and_defaults() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");

    let created = api
        .create(
            &PostParams::default(),
            &service("web", &[("tier", "front")]),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let spec = created.spec.clone().unwrap();
    // Defaults a real server fills in.
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(
        spec.cluster_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));

    let again = api
        .create(&PostParams::default(), &service("web", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(again), (409, "AlreadyExists".into()));

    let got = api.get("web").await.unwrap();
    assert_eq!(got, created);

    // Replace with the current resourceVersion works, with a stale one conflicts.
    let mut changed = got.clone();
    changed.spec.as_mut().unwrap().type_ = Some("LoadBalancer".into());
    let replaced = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(
        replaced.spec.as_ref().unwrap().cluster_ip,
        created.spec.as_ref().unwrap().cluster_ip,
        "the allocated ClusterIP survives"
    );
    let stale = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), (409, "Conflict".into()));

    // Merge patch of a label: no spec change, no new generation.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.metadata.labels.unwrap()["extra"], "yes");

    // JSON patch.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/ports/0/port", "value": 81}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().ports.unwrap()[0].port, 81);

    // Selectors and paging.
    api.create(&PostParams::default(), &service("api", &[("tier", "back")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &service("db", &[("tier", "back")]))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<Service>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=back"))
                .await
                .unwrap()
        ),
        ["api", "db"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (back)"))
                .await
                .unwrap()
        ),
        ["web"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=db"))
                .await
                .unwrap()
        ),
        ["db"]
    );
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(page.clone()), ["api", "db"]);
    let token = page.metadata.continue_.unwrap();
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest.clone()), ["web"]);
    assert!(rest.metadata.continue_.is_none_or(|c| c.is_empty()));

    api.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_error(api.get("web").await.unwrap_err()),
        (404, "NotFound".into())
    );
    // Names are DNS-1035 labels: what "portico-gateway-<gateway>" must respect.
    let long = "portico-gateway-".to_string() + &"x".repeat(50);
    let err = api
        .create(&PostParams::default(), &service(&long, &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));
    server.shutdown().await;
}

#[tokio::test]
async fn namespaces_gate_writes_and_their_deletion_empties_them() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = missing
        .create(&PostParams::default(), &config_map("c", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (404, "NotFound".into()));

    namespace(&client, "app").await;
    let ns = Api::<Namespace>::all(client.clone())
        .get("app")
        .await
        .unwrap();
    assert_eq!(
        ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "app"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "app");
    cms.create(&PostParams::default(), &config_map("c", &[]))
        .await
        .unwrap();
    // A finalizer holds the namespace in Terminating until it is removed.
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["portico.dev/test".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    Api::<Namespace>::all(client.clone())
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &config_map("d", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (403, "Forbidden".into()));
    let ns = Api::<Namespace>::all(client.clone())
        .get("app")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    eventually(Duration::from_secs(5), || async {
        let names: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        if names == ["held"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
    .unwrap();
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), || async {
        match Api::<Namespace>::all(client.clone()).get_opt("app").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("namespace still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn server_side_apply_detects_conflicts_between_managers() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |manager: &str, force: bool| {
        let mut pp = PatchParams::apply(manager);
        pp.force = force;
        pp
    };
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "1"}});
    let created = api
        .patch("cfg", &apply("operator", false), &Patch::Apply(&first))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(managers, [("operator".to_string(), "Apply".to_string())]);

    // Another manager sets an owned field to another value: conflict.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "2"}});
    let err = api
        .patch("cfg", &apply("user", false), &Patch::Apply(&other))
        .await
        .unwrap_err();
    match err {
        Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("conflict with \"operator\": .data.a"),
                "{}",
                s.message
            );
        }
        e => panic!("{e}"),
    }
    // Same value: shared ownership, no conflict.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"b": "1"}});
    api.patch("cfg", &apply("user", false), &Patch::Apply(&same))
        .await
        .unwrap();
    // Forced: the user takes the field.
    let forced = api
        .patch("cfg", &apply("user", true), &Patch::Apply(&other))
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "2");
    // The operator now applies only `c`. `a` is the user's since the force and stays;
    // `b` was the operator's alone (the user's last apply named only `a`), so it goes.
    let slim = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"c": "3"}});
    let after = api
        .patch("cfg", &apply("operator", false), &Patch::Apply(&slim))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!((data["a"].as_str(), data["c"].as_str()), ("2", "3"));
    // A plain update takes fields from appliers: the operator re-applying `c` now conflicts.
    api.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"c": "edited"}})),
    )
    .await
    .unwrap();
    let err = api
        .patch("cfg", &apply("operator", false), &Patch::Apply(&slim))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));
    // Apply without a field manager is refused.
    let err = api
        .patch("cfg", &PatchParams::default(), &Patch::Apply(&slim))
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 422);
}

#[tokio::test]
async fn owned_objects_are_garbage_collected_unless_orphaned() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let owned_by = |owner: &ConfigMap, name: &str| {
        let mut s = service(name, &[]);
        s.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.metadata.name.clone().unwrap(),
                uid: owner.metadata.uid.clone().unwrap(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        s
    };
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &owned_by(&owner, "child"))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        match svcs.get_opt("child").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("child still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();

    // Foreground: the owner stays (with a deletionTimestamp) until its dependents go.
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &owned_by(&owner, "child"))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        let child = svcs.get_opt("child").await.map_err(|e| e.to_string())?;
        let owner = cms.get_opt("owner").await.map_err(|e| e.to_string())?;
        if child.is_none() && owner.is_none() {
            Ok(())
        } else {
            Err("still there".to_string())
        }
    })
    .await
    .unwrap();

    // Orphan: the dependent stays and loses its reference.
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &owned_by(&owner, "kept"))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let kept = svcs.get("kept").await.unwrap();
    assert!(kept.metadata.owner_references.is_none_or(|r| r.is_empty()));
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
    let mut cm = config_map("held", &[]);
    cm.metadata.finalizers = Some(vec!["portico.dev/test".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn endpoint_slices_with_loopback_addresses_are_invalid() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client().unwrap(), "default");
    let slice = |name: &str, ip: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080}],
        }))
        .unwrap()
    };
    match api
        .create(&PostParams::default(), &slice("lo", "127.0.0.1"))
        .await
        .unwrap_err()
    {
        Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message.contains("may not be in the loopback range"),
                "{}",
                s.message
            );
        }
        e => panic!("{e}"),
    }
    // An address in a test network namespace is fine (it is only data here).
    let ok = api
        .create(&PostParams::default(), &slice("pod-net", "10.244.0.5"))
        .await
        .unwrap();
    assert_eq!(ok.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
}

#[tokio::test]
async fn leases_follow_optimistic_concurrency() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<Lease> = Api::namespaced(server.client().unwrap(), "default");
    let lease = Lease {
        metadata: kube::core::ObjectMeta {
            name: Some("portico-operator".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("replica-a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    // Two candidates race from the same read: the second one loses.
    let mut a = created.clone();
    a.spec.as_mut().unwrap().holder_identity = Some("replica-a".into());
    a.spec.as_mut().unwrap().lease_transitions = Some(1);
    let mut b = created.clone();
    b.spec.as_mut().unwrap().holder_identity = Some("replica-b".into());
    let won = api
        .replace("portico-operator", &PostParams::default(), &a)
        .await
        .unwrap();
    let lost = api
        .replace("portico-operator", &PostParams::default(), &b)
        .await
        .unwrap_err();
    assert_eq!(api_error(lost), (409, "Conflict".into()));
    assert_ne!(
        won.metadata.resource_version,
        created.metadata.resource_version
    );
    let second = api
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(api_error(second), (409, "AlreadyExists".into()));
    // A write that changes nothing keeps the resourceVersion (no event, no churn).
    let same = api
        .replace("portico-operator", &PostParams::default(), &won)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        won.metadata.resource_version
    );

    // Apply with a resourceVersion in the configuration: a precondition too.
    let take = |holder: &str, rv: &str| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "portico-operator", "resourceVersion": rv},
            "spec": {"holderIdentity": holder},
        })
    };
    let stale_rv = created.metadata.resource_version.clone().unwrap();
    let err = api
        .patch(
            "portico-operator",
            &PatchParams::apply("replica-b").force(),
            &Patch::Apply(take("replica-b", &stale_rv)),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));
    let current_rv = won.metadata.resource_version.clone().unwrap();
    let taken = api
        .patch(
            "portico-operator",
            &PatchParams::apply("replica-b").force(),
            &Patch::Apply(take("replica-b", &current_rv)),
        )
        .await
        .unwrap();
    assert_eq!(
        taken.spec.unwrap().holder_identity.as_deref(),
        Some("replica-b")
    );
    // Strategic merge patch (what kube-lease-manager renews with) works on built-ins.
    let renewed = api
        .patch(
            "portico-operator",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"leaseDurationSeconds": 20}})),
        )
        .await
        .unwrap();
    assert_eq!(renewed.spec.unwrap().lease_duration_seconds, Some(20));
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_server() {
    let server = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = server.kubeconfig(dir.path().join("kubeconfig")).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn discovery_lists_builtin_kinds_legacy_and_aggregated() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    for discovery in [
        kube::Discovery::new(client.clone()).run().await.unwrap(),
        kube::Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    ] {
        let (slice, caps) = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(r, _)| r.kind == "EndpointSlice")
            .unwrap();
        assert_eq!(slice.api_version, "discovery.k8s.io/v1");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(discovery.has_group("coordination.k8s.io"));
        let (svc, caps) = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(r, _)| r.kind == "Service")
            .unwrap();
        assert_eq!(svc.plural, "services");
        assert!(
            caps.subresources
                .iter()
                .any(|(r, _)| r.plural == "status" || r.plural.ends_with("/status")),
            "{caps:?}"
        );
    }
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}
