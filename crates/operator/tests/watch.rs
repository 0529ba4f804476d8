//! `FileProvider::watch`: changes to the folder become new snapshots.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{first_backends, names, write};
use portico_operator::{FileProvider, ProviderEvent, WatchError, Watching};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Short, so that tests are quick; the default is 200 ms.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// How long a change may take to show: the debounce plus the reload, with a wide margin
/// for a loaded machine (it takes well under a second when idle).
const PATIENCE: Duration = Duration::from_secs(5);

/// Waits until the latest event satisfies `done`, for at most `PATIENCE`.
async fn eventually(
    updates: &mut watch::Receiver<ProviderEvent>,
    what: &str,
    done: impl Fn(&ProviderEvent) -> bool,
) -> ProviderEvent {
    let deadline = Instant::now() + PATIENCE;
    // Bounded in count as well as time: every turn consumes one published event.
    for _ in 0..1000 {
        let latest = updates.borrow_and_update().clone();
        if done(&latest) {
            return latest;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, updates.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("watch ended while waiting for {what}; last: {latest:?}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; last: {latest:?}"),
        }
    }
    panic!("too many events while waiting for {what}");
}

async fn start(dir: &std::path::Path) -> (Watching, CancellationToken) {
    let shutdown = CancellationToken::new();
    let watching = FileProvider::watch(dir, DEBOUNCE, shutdown.clone())
        .await
        .unwrap();
    (watching, shutdown)
}

#[tokio::test]
async fn new_modified_and_deleted_files_produce_new_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, shutdown) = start(dir.path()).await;
    assert_eq!(w.initial.generation, 1);
    assert!(w.initial.inputs.http_routes.is_empty() && w.initial.errors.is_empty());

    let path = write(dir.path(), "route.yaml", &common::route("r", "v1"));
    let added = eventually(&mut w.updates, "the new route", |e| {
        first_backends(&e.inputs.http_routes) == ["v1"]
    })
    .await;
    assert!(added.generation > 1);

    write(dir.path(), "route.yaml", &common::route("r", "v2"));
    let modified = eventually(&mut w.updates, "the modified route", |e| {
        first_backends(&e.inputs.http_routes) == ["v2"]
    })
    .await;
    assert!(modified.generation > added.generation);

    fs::remove_file(&path).unwrap();
    eventually(&mut w.updates, "the route gone", |e| {
        e.inputs.http_routes.is_empty()
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, w.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn files_in_new_subdirectories_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _shutdown) = start(dir.path()).await;
    write(dir.path(), "team/a/svc.yaml", &common::service("a", "svc"));
    let event = eventually(&mut w.updates, "the service", |e| {
        !e.inputs.services.is_empty()
    })
    .await;
    assert_eq!(names(&event.inputs.services), ["a/svc"]);
}

#[tokio::test]
async fn an_atomic_save_is_one_change() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "route.yaml", &common::route("r", "v1"));
    let (mut w, _shutdown) = start(dir.path()).await;
    assert_eq!(first_backends(&w.initial.inputs.http_routes), ["v1"]);

    // What editors and `kubectl`-like tools do: write a temp file, rename it over.
    let temp = write(dir.path(), ".route.yaml.tmp", &common::route("r", "v2"));
    fs::rename(&temp, dir.path().join("route.yaml")).unwrap();
    let event = eventually(&mut w.updates, "the saved route", |e| {
        first_backends(&e.inputs.http_routes) == ["v2"]
    })
    .await;
    // The temp file was never read (hidden), so no duplicate route was reported.
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[tokio::test]
async fn editor_temp_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _shutdown) = start(dir.path()).await;
    let junk = common::route("junk", "junk");
    write(dir.path(), ".#route.yaml", &junk);
    write(dir.path(), "route.yaml~", &junk);
    write(dir.path(), ".route.yaml.swp", &junk);
    write(dir.path(), "4913", &junk);
    // A real change after the junk: the first snapshot after it must be the only one.
    write(dir.path(), "route.yaml", &common::route("real", "s"));
    let event = eventually(&mut w.updates, "the real route", |e| {
        !e.inputs.http_routes.is_empty()
    })
    .await;
    assert_eq!(names(&event.inputs.http_routes), ["default/real"]);
    assert_eq!(
        event.generation,
        w.initial.generation + 1,
        "the temp files published nothing"
    );
}

#[tokio::test]
async fn a_broken_edit_keeps_the_last_good_route_and_reports_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "route.yaml", &common::route("r", "v1"));
    let (mut w, _shutdown) = start(dir.path()).await;
    fs::write(&path, "apiVersion: [").unwrap();
    let event = eventually(&mut w.updates, "the error", |e| !e.errors.is_empty()).await;
    assert_eq!(first_backends(&event.inputs.http_routes), ["v1"]);
    assert_eq!(event.errors[0].path(), path);
}

#[tokio::test]
async fn the_task_ends_when_the_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _shutdown) = start(dir.path()).await;
    drop(w.updates);
    tokio::time::timeout(PATIENCE, w.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_task_ends_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (w, shutdown) = start(dir.path()).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, w.task)
        .await
        .unwrap()
        .unwrap();
    // With the task gone the channel is closed.
    let mut updates = w.updates;
    assert!(updates.changed().await.is_err());
}

#[tokio::test]
async fn a_missing_folder_cannot_be_watched() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = FileProvider::watch(&missing, DEBOUNCE, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WatchError::Notify { path, .. } if *path == missing),
        "{err}"
    );
}
