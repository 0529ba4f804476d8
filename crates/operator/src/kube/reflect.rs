//! A reflector (watch + in-memory store) that wakes one [`Notify`] on every change: the
//! shape of controllers that recompute a whole plan per pass (LB-IPAM, cert-sync) rather
//! than react to single events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Starts a reflector for `api` with `config`; returns its store and whether its first
/// list is done. `changed` is notified when the first list completes and on every later
/// change; watch errors are logged with `component` and retried with backoff.
pub fn spawn_reflector<K>(
    component: &'static str,
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    shutdown: &CancellationToken,
) -> (Store<K>, Arc<AtomicBool>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let synced = Arc::new(AtomicBool::new(false));
    let kind = K::kind(&()).into_owned();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let (changed, shutdown, flag) = (changed.clone(), shutdown.clone(), synced.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => break,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(watcher::Event::InitDone)) => {
                    flag.store(true, Ordering::Release);
                    changed.notify_one();
                }
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                Some(Ok(_)) => changed.notify_one(),
                Some(Err(e)) => warn!(component, kind, error = %e, "watch failed, retrying"),
                None => break,
            }
        }
    });
    (reader, synced)
}
