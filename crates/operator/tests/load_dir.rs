//! `load_dir` and `parse_file`: which objects a folder holds, and how problems are named.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::write;
use portico_api::names::NAMESPACE_NAME_LABEL;
use portico_operator::file::{LoadError, LoadResult, load_dir, parse_file};
use portico_operator::{Object, ObjectKey};

/// `Kind key` of every loaded object, in path then document order.
fn loaded(result: &LoadResult) -> Vec<String> {
    result
        .files
        .values()
        .flat_map(|objects| objects.iter())
        .map(|o| format!("{} {}", o.object.kind(), o.object.key()))
        .collect()
}

fn messages(errors: &[LoadError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn multi_document_files_load_every_object_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# The whole app in one file.\n\
         {}---\n{}---\n# nothing but a comment\n---\n{}---\n{}",
        common::gateway_class("portico"),
        common::gateway("infra", "gw"),
        common::route("echo", "echo"),
        common::service("default", "echo"),
    );
    let path = write(dir.path(), "app.yaml", &text);
    let result = load_dir(dir.path());
    assert!(result.errors.is_empty(), "{:?}", messages(&result.errors));
    assert_eq!(
        loaded(&result),
        [
            "GatewayClass portico",
            "Gateway infra/gw",
            "HTTPRoute default/echo",
            "Service default/echo",
        ]
    );
    let lines: Vec<usize> = result.files[&path].iter().map(|o| o.line).collect();
    // Each object's line is its `apiVersion:` line.
    for line in &lines {
        let text_line = text.lines().nth(line - 1).unwrap();
        assert!(
            text_line.starts_with("apiVersion:"),
            "line {line}: {text_line}"
        );
    }
    assert_eq!(lines[0], 2);
}

#[test]
fn v1beta1_gateway_api_kinds_are_read() {
    let text = "\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: portico
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: r}
spec:
  hostnames: [echo.example]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: '', kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: rg1, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: '', kind: Service}]
";
    let contents = parse_file(Path::new("beta.yaml"), text).unwrap();
    assert!(
        contents.errors.is_empty(),
        "{:?}",
        messages(&contents.errors)
    );
    let kinds: Vec<String> = contents
        .objects
        .iter()
        .map(|o| format!("{} {}", o.object.kind(), o.object.key()))
        .collect();
    assert_eq!(
        kinds,
        [
            "GatewayClass portico",
            "Gateway infra/gw",
            "HTTPRoute default/r",
            "ReferenceGrant backends/rg",
            "ReferenceGrant backends/rg1",
        ]
    );
    let Object::HttpRoute(route) = &contents.objects[2].object else {
        panic!("not a route: {:?}", contents.objects[2]);
    };
    assert_eq!(route.spec.hostnames, Some(vec!["echo.example".to_string()]));
}

#[test]
fn namespaced_objects_default_to_default_and_cluster_scoped_have_none() {
    let text = "\
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s-1
  labels: {kubernetes.io/service-name: s}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c, namespace: ignored}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {team: a}}
";
    let contents = parse_file(Path::new("ns.yaml"), text).unwrap();
    assert!(
        contents.errors.is_empty(),
        "{:?}",
        messages(&contents.errors)
    );
    let keys: Vec<ObjectKey> = contents.objects.iter().map(|o| o.object.key()).collect();
    assert_eq!(
        keys,
        [
            ObjectKey::namespaced("default", "s"),
            ObjectKey::namespaced("default", "s-1"),
            ObjectKey::cluster("c"),
            ObjectKey::cluster("apps"),
        ]
    );
    // The API server labels every Namespace with its name; a declared one keeps its own
    // labels too.
    let labels = contents.objects[3].object.meta().labels.clone().unwrap();
    assert_eq!(
        labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
        Some("apps")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
}

#[test]
fn a_broken_file_is_reported_with_file_and_line_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-good.yaml", &common::route("a", "svc"));
    let broken = write(
        dir.path(),
        "b-broken.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [oops\nspec: {{}}\n",
            common::gateway_class("c")
        ),
    );
    write(dir.path(), "sub/c-good.yml", &common::service("x", "svc"));
    let result = load_dir(dir.path());
    // Nothing of the broken file is loaded, not even its valid first document.
    assert_eq!(
        loaded(&result),
        ["HTTPRoute default/a", "Service x/svc"],
        "{:?}",
        messages(&result.errors)
    );
    assert_eq!(result.errors.len(), 1, "{:?}", messages(&result.errors));
    let err = &result.errors[0];
    assert!(matches!(err, LoadError::Syntax { .. }), "{err:?}");
    assert_eq!(err.path(), broken);
    // The class takes 6 lines, `---` is 7, `name: [oops` is 11: libyaml notices the
    // unclosed sequence on the next line, and names where it opened.
    assert_eq!(err.line(), Some(12));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:12: invalid YAML: did not find expected ',' or ']', \
             while parsing a flow sequence at line 11 column 9",
            broken.display()
        )
    );
    assert!(result.unreadable.contains(&broken));
}

#[test]
fn an_invalid_object_is_reported_and_the_rest_of_its_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\n\
         apiVersion: gateway.networking.k8s.io/v1\n\
         kind: HTTPRoute\n\
         metadata:\n  name: foo\n  namespace: echo\n\
         spec:\n  rules:\n  - backendRefs:\n    - port: 8080\n\
         ---\n{}",
        common::route("first", "svc"),
        common::route("last", "svc"),
    );
    let path = write(dir.path(), "routes.yaml", &text);
    let result = load_dir(dir.path());
    assert_eq!(
        loaded(&result),
        ["HTTPRoute default/first", "HTTPRoute default/last"]
    );
    assert_eq!(messages(&result.errors).len(), 1);
    let err = &result.errors[0];
    // The first route takes lines 1-12, `---` is 13, the invalid route starts on line 14
    // and its backendRef without a name is on line 22.
    assert_eq!(
        err.to_string(),
        format!(
            "{}:22: HTTPRoute echo/foo: spec.rules[0].backendRefs[0]: missing field `name`",
            path.display()
        )
    );
    assert!(result.unreadable.is_empty());
}

#[test]
fn documents_that_are_not_objects_and_unread_versions_are_errors() {
    let text = "\
kind: Service
metadata: {name: no-api-version}
---
- just
- a list
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: HTTPRoute
metadata: {name: old}
spec: {}
---
apiVersion: v1
kind: Service
spec: {}
";
    let contents = parse_file(Path::new("odd.yaml"), text).unwrap();
    assert!(contents.objects.is_empty());
    assert_eq!(
        messages(&contents.errors),
        [
            "odd.yaml:1: Service: missing `apiVersion`",
            "odd.yaml:4: not a Kubernetes object: expected a mapping with `apiVersion` and `kind`",
            "odd.yaml:7: HTTPRoute default/old: apiVersion gateway.networking.k8s.io/v1alpha2 \
             is not read, use gateway.networking.k8s.io/v1 or gateway.networking.k8s.io/v1beta1",
            "odd.yaml:12: Service: missing `metadata.name`",
        ]
    );
}

#[test]
fn unknown_kinds_are_skipped_without_error() {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: echo}}\nspec: {{}}\n\
         ---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: c}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: BackendLBPolicy\nmetadata: {{name: g}}\n\
         ---\n{}",
        common::service("default", "echo")
    );
    let contents = parse_file(Path::new("mixed.yaml"), &text).unwrap();
    assert!(
        contents.errors.is_empty(),
        "{:?}",
        messages(&contents.errors)
    );
    let keys: Vec<String> = contents
        .objects
        .iter()
        .map(|o| format!("{} {}", o.object.kind(), o.object.key()))
        .collect();
    assert_eq!(keys, ["Service default/echo"]);
}

#[test]
fn list_items_are_loaded_and_their_errors_name_the_item() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: n}
  spec: {ports: [{port: 80}]}
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: bad}
  spec: {rules: [{backendRefs: [{port: 80}]}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: skipped}
- apiVersion: v1
  kind: Namespace
  metadata: {name: n}
";
    let contents = parse_file(Path::new("list.yaml"), text).unwrap();
    let keys: Vec<String> = contents
        .objects
        .iter()
        .map(|o| format!("{} {}", o.object.kind(), o.object.key()))
        .collect();
    assert_eq!(keys, ["Service n/a", "Namespace n"]);
    assert_eq!(
        messages(&contents.errors),
        [
            "list.yaml:1: HTTPRoute default/bad: items[1]: spec.rules[0].backendRefs[0]: missing field `name`"
        ]
    );
}

#[test]
fn hidden_and_editor_temp_files_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let junk = "this: [is not: valid";
    write(dir.path(), ".#route.yaml", junk);
    write(dir.path(), "route.yaml~", junk);
    write(dir.path(), ".route.yaml.swp", junk);
    write(dir.path(), "#route.yaml#", junk);
    write(dir.path(), ".git/objects.yaml", junk);
    write(dir.path(), "notes.txt", junk);
    write(dir.path(), "route.yaml", &common::route("r", "s"));
    let result = load_dir(dir.path());
    assert!(result.errors.is_empty(), "{:?}", messages(&result.errors));
    assert_eq!(loaded(&result), ["HTTPRoute default/r"]);
}

#[test]
fn an_empty_folder_holds_nothing_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_dir(dir.path()), LoadResult::default());

    let missing = dir.path().join("missing");
    let result = load_dir(&missing);
    assert!(result.files.is_empty());
    assert!(
        matches!(&result.errors[..], [LoadError::ListDir { path, .. }] if *path == missing),
        "{:?}",
        result.errors
    );
    assert!(result.unreadable.contains(&missing));
}

#[test]
fn a_file_that_is_not_utf8_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"name: caf\xe9\n").unwrap();
    let result = load_dir(dir.path());
    assert!(
        matches!(&result.errors[..], [LoadError::ReadFile { path: p, .. }] if *p == path),
        "{:?}",
        result.errors
    );
    assert!(result.unreadable.contains(&path));
}
