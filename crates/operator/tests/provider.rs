//! `FileProvider::reload`: the folder's last good state, namespaces, and when a new event
//! is published.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::{first_backends, names, write};
use portico_api::names::NAMESPACE_NAME_LABEL;
use portico_operator::{FileProvider, LoadError};

#[test]
fn the_first_reload_publishes_generation_one_even_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = FileProvider::new(dir.path());
    assert_eq!(provider.event().generation, 0);
    let event = provider.reload().unwrap();
    assert_eq!(event.generation, 1);
    assert!(event.errors.is_empty());
    assert!(event.inputs.http_routes.is_empty() && event.inputs.namespaces.is_empty());
    assert!(provider.reload().is_none(), "nothing changed");
}

#[test]
fn namespaces_that_objects_live_in_are_synthesized_with_their_label() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "route.yaml", &common::route("r", "s"));
    write(dir.path(), "gw.yaml", &common::gateway("infra", "gw"));
    write(dir.path(), "class.yaml", &common::gateway_class("portico"));
    write(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: infra\n  labels: {shared-gateway-access: 'true'}\n",
    );
    let event = FileProvider::new(dir.path()).reload().unwrap();
    assert!(event.errors.is_empty(), "{:?}", event.errors);
    // `default` holds the route (no namespace in its manifest); `infra` is declared.
    assert_eq!(names(&event.inputs.namespaces), ["default", "infra"]);
    for ns in &event.inputs.namespaces {
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(NAMESPACE_NAME_LABEL), ns.metadata.name.as_ref());
    }
    let infra = &event.inputs.namespaces[1].metadata.labels;
    assert_eq!(
        infra
            .as_ref()
            .and_then(|l| l.get("shared-gateway-access"))
            .map(String::as_str),
        Some("true"),
        "a declared namespace keeps its labels"
    );
    // Cluster-scoped kinds need no namespace.
    assert_eq!(names(&event.inputs.gateway_classes), ["portico"]);
}

#[test]
fn a_file_that_breaks_keeps_its_last_good_objects_until_fixed_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = FileProvider::new(dir.path());
    write(
        dir.path(),
        "other.yaml",
        &common::service("default", "other"),
    );
    let path = write(dir.path(), "route.yaml", &common::route("r", "v1"));
    let first = provider.reload().unwrap();
    assert_eq!(first_backends(&first.inputs.http_routes), ["v1"]);

    // A half-saved edit: the route stays as it was, the error says why.
    write(
        dir.path(),
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: [\n",
    );
    let broken = provider.reload().unwrap();
    assert_eq!(broken.generation, 2, "the error is news");
    assert_eq!(first_backends(&broken.inputs.http_routes), ["v1"]);
    assert_eq!(names(&broken.inputs.services), ["default/other"]);
    assert!(
        matches!(&broken.errors[..], [LoadError::Syntax { path: p, .. }] if *p == path),
        "{:?}",
        broken.errors
    );
    assert!(provider.reload().is_none(), "still broken, nothing new");

    // Fixed: the new version is live and the error is gone.
    write(dir.path(), "route.yaml", &common::route("r", "v2"));
    let fixed = provider.reload().unwrap();
    assert_eq!(first_backends(&fixed.inputs.http_routes), ["v2"]);
    assert!(fixed.errors.is_empty());

    // Broken again, then deleted: a deleted file's objects go away, good or not.
    write(dir.path(), "route.yaml", "{");
    assert_eq!(
        first_backends(&provider.reload().unwrap().inputs.http_routes),
        ["v2"]
    );
    fs::remove_file(&path).unwrap();
    let deleted = provider.reload().unwrap();
    assert!(deleted.inputs.http_routes.is_empty());
    assert!(deleted.errors.is_empty());
    assert_eq!(names(&deleted.inputs.services), ["default/other"]);
}

#[test]
fn a_file_that_was_never_good_contributes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken.yaml", "a: [");
    let event = FileProvider::new(dir.path()).reload().unwrap();
    assert!(event.inputs.http_routes.is_empty());
    assert_eq!(event.errors.len(), 1);
}

#[test]
fn an_unreadable_file_keeps_its_last_good_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = FileProvider::new(dir.path());
    let path = write(dir.path(), "route.yaml", &common::route("r", "v1"));
    provider.reload().unwrap();
    fs::write(&path, b"\xff\xfe not utf-8").unwrap();
    let event = provider.reload().unwrap();
    assert_eq!(first_backends(&event.inputs.http_routes), ["v1"]);
    assert!(
        matches!(&event.errors[..], [LoadError::ReadFile { .. }]),
        "{:?}",
        event.errors
    );
}

#[test]
fn an_invalid_object_in_a_good_file_is_dropped_not_kept() {
    // The file parses, so it is its new content that counts: the object that became
    // invalid is skipped (and reported), its siblings load.
    let dir = tempfile::tempdir().unwrap();
    let mut provider = FileProvider::new(dir.path());
    let two = format!(
        "{}---\n{}",
        common::route("a", "s"),
        common::route("b", "s")
    );
    write(dir.path(), "routes.yaml", &two);
    assert_eq!(
        names(&provider.reload().unwrap().inputs.http_routes),
        ["default/a", "default/b"]
    );

    let invalid_b = common::route("b", "s").replace("- name: s\n      port", "- port");
    assert_ne!(invalid_b, common::route("b", "s"));
    write(
        dir.path(),
        "routes.yaml",
        &format!("{}---\n{invalid_b}", common::route("a", "s")),
    );
    let event = provider.reload().unwrap();
    assert_eq!(names(&event.inputs.http_routes), ["default/a"]);
    assert!(
        matches!(&event.errors[..], [LoadError::Object { kind, name: Some(name), .. }] if kind == "HTTPRoute" && name == "default/b"),
        "{:?}",
        event.errors
    );
}

#[test]
fn the_first_declaration_of_an_object_wins_and_the_next_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "a.yaml", &common::route("r", "from-a"));
    let second = write(dir.path(), "b.yaml", &common::route("r", "from-b"));
    let event = FileProvider::new(dir.path()).reload().unwrap();
    assert_eq!(first_backends(&event.inputs.http_routes), ["from-a"]);
    let shown: Vec<String> = event.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "{}:1: HTTPRoute default/r: declared again (first at {}:1); this one is ignored",
            second.display(),
            first.display()
        )]
    );
}

#[test]
fn reloads_that_change_nothing_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = FileProvider::new(dir.path());
    write(dir.path(), "route.yaml", &common::route("r", "s"));
    assert_eq!(provider.reload().unwrap().generation, 1);
    // Same content rewritten, an editor's swap file, an unrelated file, a kind we skip.
    write(dir.path(), "route.yaml", &common::route("r", "s"));
    write(dir.path(), ".route.yaml.swp", "garbage: [");
    write(dir.path(), "README.md", "# hi");
    write(
        dir.path(),
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    );
    assert!(provider.reload().is_none());
    // The same objects moved to another file: same snapshot.
    fs::remove_file(dir.path().join("route.yaml")).unwrap();
    write(dir.path(), "moved/route.yaml", &common::route("r", "s"));
    assert!(provider.reload().is_none());
    assert_eq!(provider.event().generation, 1);
}

#[test]
fn snapshots_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "z.yaml", &common::service("a", "z"));
    write(dir.path(), "a.yaml", &common::service("b", "a"));
    write(dir.path(), "m.yaml", &common::service("a", "b"));
    let event = FileProvider::new(dir.path()).reload().unwrap();
    assert_eq!(names(&event.inputs.services), ["a/b", "a/z", "b/a"]);
    assert_eq!(names(&event.inputs.namespaces), ["a", "b"]);
}

#[test]
fn the_parse_cache_reparses_changed_files_only_and_forgets_deleted_ones() {
    use portico_operator::{ParseCache, load_dir_cached};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "routes.yaml", &common::route("a", "v1"));
    let small = write(dir.path(), "new.yaml", &common::route("b", "v1"));
    let mut cache = ParseCache::default();
    let first = load_dir_cached(dir.path(), &mut cache);
    assert_eq!(cache.len(), 2);

    // One file changes: the other's parse is shared rather than made again.
    write(dir.path(), "new.yaml", &common::route("b", "v2"));
    let second = load_dir_cached(dir.path(), &mut cache);
    assert!(Arc::ptr_eq(&first.files[&big], &second.files[&big]));
    assert!(!Arc::ptr_eq(&first.files[&small], &second.files[&small]));
    // The changed file is parsed again, and says what the uncached load says.
    assert_eq!(second, portico_operator::load_dir(dir.path()));
    let backend = |objects: &[portico_operator::file::LoadedObject]| match &objects[0].object {
        portico_operator::Object::HttpRoute(r) => first_backends(std::slice::from_ref(r)),
        other => panic!("not a route: {other:?}"),
    };
    assert_eq!(backend(&second.files[&small]), ["v2"]);

    // A file that stops parsing is an error every time, from the cache too.
    write(dir.path(), "new.yaml", "kind: [\n");
    for _ in 0..2 {
        let broken = load_dir_cached(dir.path(), &mut cache);
        assert!(broken.unreadable.contains(&small));
        assert!(matches!(&broken.errors[..], [LoadError::Syntax { .. }]));
    }

    // Deleted: its objects and its cache entry go.
    fs::remove_file(&small).unwrap();
    let deleted = load_dir_cached(dir.path(), &mut cache);
    assert_eq!(deleted.files.len(), 1);
    assert!(deleted.errors.is_empty() && deleted.unreadable.is_empty());
    assert_eq!(cache.len(), 1);
}
