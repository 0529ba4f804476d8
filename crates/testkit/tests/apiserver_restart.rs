//! The test API server going away and coming back on the same port with the same
//! objects: connections are refused meanwhile, and a `kube::runtime::watcher` that
//! kept retrying resumes and sees what changed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use portico_testkit::apiserver::TestApiServer;
use portico_testkit::eventually;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn stopped_server_refuses_then_resumes_with_its_objects() {
    let mut server = TestApiServer::start().await.unwrap();
    let addr = server.addr();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client().unwrap());
    api.create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();

    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff();
    let errors = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let errors = errors.clone();
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if item.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    eventually(WAIT, || async {
        store
            .get(&ObjectRef::new("before").within("default"))
            .map(|_| ())
    })
    .await
    .unwrap();

    server.stop_serving().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    // The watcher notices and retries (with backoff) while the server is away.
    eventually(WAIT, || async {
        (errors.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .unwrap();
    let rv_before = server.resource_version();

    server.resume_serving().await.unwrap();
    assert_eq!(server.addr(), addr);
    assert_eq!(server.resource_version(), rv_before);
    api.get("before").await.unwrap();
    api.create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    eventually(WAIT, || async {
        store
            .get(&ObjectRef::new("after").within("default"))
            .map(|_| ())
    })
    .await
    .unwrap();
    task.abort();
    server.shutdown().await;
}
