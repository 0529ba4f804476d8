//! Watches on the test API server through kube's client and runtime: raw watch events,
//! bookmarks, 410 Gone after compaction, selector transitions, and
//! `kube::runtime::watcher`/`reflector` recovering by relisting.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{reflector, watcher};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

/// Reads events until one satisfies `want`; fails after `WAIT` or 1000 events.
async fn next_matching<T: std::fmt::Debug>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    want: impl Fn(&T) -> bool,
) -> T {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    for _ in 0..1000 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("stream ended; seen {seen:?}"),
            Err(_) => panic!("timed out; seen {seen:?}"),
        }
    }
    panic!("no match in 1000 events: {seen:?}")
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
    match e {
        WatchEvent::Added(c) => format!("ADDED {}", name(c)),
        WatchEvent::Modified(c) => format!("MODIFIED {}", name(c)),
        WatchEvent::Deleted(c) => format!("DELETED {}", name(c)),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {} {}", s.code, s.reason),
    }
}

/// A raw watch as a channel of described events.
async fn raw_watch(
    api: &Api<ConfigMap>,
    wp: &WatchParams,
    rv: &str,
) -> mpsc::UnboundedReceiver<String> {
    let stream = api.watch(wp, rv).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(e)) = stream.try_next().await {
            if tx.send(describe(&e)).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn raw_watch_replays_resumes_and_bookmarks() {
    let server = TestApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let listed = api.list(&Default::default()).await.unwrap();
    let list_rv = listed.metadata.resource_version.unwrap();

    // From "0": the current state as ADDED, then changes.
    let mut from_zero = raw_watch(&api, &WatchParams::default(), "0").await;
    assert_eq!(from_zero.recv().await.unwrap(), "ADDED a");

    // From the list's version: only what came after, then bookmarks.
    let mut resumed = raw_watch(&api, &WatchParams::default(), &list_rv).await;
    api.create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .unwrap();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    for want in ["ADDED b", "MODIFIED b", "DELETED b"] {
        assert_eq!(
            next_matching(&mut resumed, |e| !e.starts_with("BOOKMARK")).await,
            want
        );
    }
    assert_eq!(
        next_matching(&mut from_zero, |e| !e.starts_with("BOOKMARK")).await,
        "ADDED b"
    );
    let bookmark = next_matching(&mut resumed, |e| e.starts_with("BOOKMARK")).await;
    let bookmark_rv: u64 = bookmark.trim_start_matches("BOOKMARK ").parse().unwrap();
    assert!(
        bookmark_rv >= server.resource_version() - 1,
        "{bookmark} vs {}",
        server.resource_version()
    );

    // A version from before the retained history: one ERROR event with 410 Expired.
    server.compact();
    let mut expired = raw_watch(&api, &WatchParams::default(), &list_rv).await;
    assert_eq!(expired.recv().await.unwrap(), "ERROR 410 Expired");
    assert!(
        expired.recv().await.is_none(),
        "the stream ends after the error"
    );
    // Open watches were ended by the compaction (whatever bookmarks came before).
    let drained = tokio::time::timeout(WAIT, async {
        let mut n = 0;
        while let Some(e) = resumed.recv().await {
            assert!(e.starts_with("BOOKMARK"), "{e}");
            n += 1;
        }
        n
    });
    drained.await.expect("the compaction ends open watches");
}

#[tokio::test]
async fn label_selector_transitions_are_added_and_deleted() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
    let rv = api
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut web = raw_watch(&api, &WatchParams::default().labels("app=web"), &rv).await;
    api.create(
        &PostParams::default(),
        &config_map("c", json!({"app": "db"})),
    )
    .await
    .unwrap();
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    api.patch("c", &PatchParams::default(), &relabel("web"))
        .await
        .unwrap();
    api.patch("c", &PatchParams::default(), &relabel("web2"))
        .await
        .unwrap();
    assert_eq!(web.recv().await.unwrap(), "ADDED c");
    assert_eq!(web.recv().await.unwrap(), "DELETED c");
}

/// What kube's watcher reported, in short.
fn watcher_event(e: &Result<watcher::Event<ConfigMap>, watcher::Error>) -> String {
    let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
    match e {
        Ok(watcher::Event::Init) => "Init".into(),
        Ok(watcher::Event::InitApply(c)) => format!("InitApply {}", name(c)),
        Ok(watcher::Event::InitDone) => "InitDone".into(),
        Ok(watcher::Event::Apply(c)) => format!("Apply {}", name(c)),
        Ok(watcher::Event::Delete(c)) => format!("Delete {}", name(c)),
        Err(watcher::Error::WatchError(s)) => format!("Error {}", s.code),
        Err(e) => format!("Error {e}"),
    }
}

async fn run_watcher(
    api: Api<ConfigMap>,
    config: watcher::Config,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config));
        while let Some(e) = stream.next().await {
            if tx.send(watcher_event(&e)).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn kube_watcher_sees_changes_and_relists_after_gone() {
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let server = TestApiServer::builder()
            .bookmark_interval(Duration::from_millis(200))
            .start()
            .await
            .unwrap();
        let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
        api.create(&PostParams::default(), &config_map("a", json!({})))
            .await
            .unwrap();
        let mut events = run_watcher(api.clone(), config).await;
        assert_eq!(events.recv().await.unwrap(), "Init");
        assert_eq!(events.recv().await.unwrap(), "InitApply a");
        assert_eq!(events.recv().await.unwrap(), "InitDone");

        api.create(&PostParams::default(), &config_map("b", json!({})))
            .await
            .unwrap();
        assert_eq!(events.recv().await.unwrap(), "Apply b");
        api.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap();
        assert_eq!(events.recv().await.unwrap(), "Apply b");
        api.delete("a", &DeleteParams::default()).await.unwrap();
        assert_eq!(events.recv().await.unwrap(), "Delete a");

        // The server loses its history: the watcher's resume gets 410 and it relists,
        // seeing the object created meanwhile.
        server.compact();
        api.create(&PostParams::default(), &config_map("c", json!({})))
            .await
            .unwrap();
        next_matching(&mut events, |e| e == "Error 410").await;
        next_matching(&mut events, |e| e == "Init").await;
        let mut relisted = Vec::new();
        for _ in 0..10 {
            match events.recv().await.unwrap() {
                e if e == "InitDone" => break,
                e => relisted.push(e),
            }
        }
        assert_eq!(relisted, ["InitApply b", "InitApply c"]);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn reflector_store_converges_across_a_relist() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // Errors (the 410 below) are part of the stream; the watcher recovers itself.
        while stream.next().await.is_some() {}
    });
    let names = |reader: &reflector::Store<ConfigMap>| {
        let mut n: Vec<String> = reader
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        n.sort();
        n
    };
    for n in ["x", "y"] {
        api.create(&PostParams::default(), &config_map(n, json!({})))
            .await
            .unwrap();
    }
    eventually(WAIT, || async {
        (names(&reader) == ["x", "y"]).then_some(())
    })
    .await
    .unwrap();
    server.compact();
    api.delete("x", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &config_map("z", json!({})))
        .await
        .unwrap();
    eventually(WAIT, || async {
        (names(&reader) == ["y", "z"]).then_some(())
    })
    .await
    .unwrap();
    task.abort();
}

#[tokio::test]
async fn metadata_only_reads_and_watches() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().unwrap(), "default");
    api.create(
        &PostParams::default(),
        &config_map("m", json!({"app": "x"})),
    )
    .await
    .unwrap();
    let meta = api.get_metadata("m").await.unwrap();
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
    assert_eq!(meta.metadata.labels.unwrap()["app"], "x");
    let list = api.list_metadata(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);

    let (tx, mut rx) = mpsc::unbounded_channel();
    // kube asks for metadata only when the Api is of PartialObjectMeta.
    let watch_api: Api<PartialObjectMeta<ConfigMap>> =
        Api::namespaced(server.client().unwrap(), "default");
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(watch_api, watcher::Config::default()));
        while let Some(Ok(e)) = stream.next().await {
            if let watcher::Event::Apply(m) | watcher::Event::InitApply(m) = e
                && tx.send(m.metadata.name.unwrap_or_default()).is_err()
            {
                return;
            }
        }
    });
    assert_eq!(rx.recv().await.unwrap(), "m");
    api.create(&PostParams::default(), &config_map("n", json!({})))
        .await
        .unwrap();
    assert_eq!(next_matching(&mut rx, |n| n == "n").await, "n");
}
