//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>`, and the resource
//! lists of each group version, in the legacy form and, when the client asks for it by
//! `Accept`, the aggregated form (`apidiscovery.k8s.io/v2`, what `kube::Discovery::
//! run_aggregated` and kubectl use).

use std::net::SocketAddr;

use kube::core::discovery::v2::{
    APIGroupDiscovery, APIGroupDiscoveryList, APIResourceDiscovery, APISubresourceDiscovery,
    APIVersionDiscovery, GroupVersionKind,
};
use serde_json::{Value, json};

use super::resources::{Registry, ResourceType};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The Content-Type of aggregated discovery answers.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery.
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList"))
}

pub(crate) fn version() -> Value {
    json!({
        "major": "1", "minor": "36", "gitVersion": "v1.36.0+portico-testkit",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let gv: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gv.clone(), "preferredVersion": gv.first().cloned().unwrap_or(Value::Null)})
}

pub(crate) fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group(registry: &Registry, name: &str) -> Option<Value> {
    registry.groups().get(name).map(|vs| {
        let mut doc = group_doc(name, vs);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

fn in_version<'a>(
    registry: &'a Registry,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a std::sync::Arc<ResourceType>> + 'a {
    registry
        .all()
        .filter(move |rt| rt.group == group && rt.serves(version))
}

/// `/api/v1` or `/apis/<group>/<version>`; None when nothing is served there.
pub(crate) fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for rt in in_version(registry, group, version) {
        list.push(json!({
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": VERBS, "shortNames": rt.short_names, "categories": rt.categories,
        }));
        if rt.status_subresource {
            list.push(json!({
                "name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": STATUS_VERBS,
            }));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn aggregated_group(registry: &Registry, group: &str, versions: &[String]) -> APIGroupDiscovery {
    let versions = versions
        .iter()
        .map(|v| APIVersionDiscovery {
            version: Some(v.clone()),
            freshness: Some("Current".into()),
            resources: in_version(registry, group, v)
                .map(|rt| {
                    let gvk = GroupVersionKind {
                        group: Some(rt.group.clone()),
                        version: Some(v.clone()),
                        kind: Some(rt.kind.clone()),
                    };
                    APIResourceDiscovery {
                        resource: Some(rt.plural.clone()),
                        response_kind: Some(gvk.clone()),
                        scope: Some(
                            if rt.namespaced {
                                "Namespaced"
                            } else {
                                "Cluster"
                            }
                            .into(),
                        ),
                        singular_resource: Some(rt.singular.clone()),
                        verbs: VERBS.iter().map(|s| (*s).to_string()).collect(),
                        short_names: rt.short_names.clone(),
                        categories: rt.categories.clone(),
                        subresources: if rt.status_subresource {
                            vec![APISubresourceDiscovery {
                                subresource: Some("status".into()),
                                response_kind: Some(gvk),
                                verbs: STATUS_VERBS.iter().map(|s| (*s).to_string()).collect(),
                                ..Default::default()
                            }]
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect(),
        })
        .collect();
    APIGroupDiscovery {
        metadata: Some(kube::core::ObjectMeta {
            name: Some(group.to_string()),
            ..Default::default()
        }),
        versions,
    }
}

/// Aggregated discovery of `/api` (core) or `/apis` (every other group).
pub(crate) fn aggregated(registry: &Registry, core: bool) -> Value {
    let items = if core {
        vec![aggregated_group(registry, "", &["v1".to_string()])]
    } else {
        registry
            .groups()
            .iter()
            .map(|(g, vs)| aggregated_group(registry, g, vs))
            .collect()
    };
    let list = APIGroupDiscoveryList {
        metadata: None,
        items,
    };
    let mut v = serde_json::to_value(list).unwrap_or(Value::Null);
    v["kind"] = json!("APIGroupDiscoveryList");
    v["apiVersion"] = json!("apidiscovery.k8s.io/v2");
    v
}
