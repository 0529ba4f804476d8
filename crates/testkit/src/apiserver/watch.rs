//! Watches: a streaming response of JSON lines `{"type": ..., "object": ...}`.
//!
//! ```text
//! resourceVersion unset, "" or "0"  synthetic ADDED for every current object, then live
//! resourceVersion N                 every change after N from history, then live;
//!                                   N older than the history: one ERROR event carrying
//!                                   a 410 Expired Status, then the end (kube's watcher
//!                                   relists on that)
//! sendInitialEvents=true            current state as ADDED, then a BOOKMARK annotated
//!                                   k8s.io/initial-events-end, then live
//! allowWatchBookmarks=true          BOOKMARK every `bookmark_interval` and before a
//!                                   timeout closes the stream
//! ```
//!
//! Selectors apply to both sides of a change, as in the real watch cache: an object
//! that starts matching arrives as ADDED, one that stops matching leaves as DELETED.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::read::{ListQuery, Scope, present, to_partial};
use super::store::{Broadcast, Change, EventType, Store, res_key};

/// Parameters of a watch request.
#[derive(Debug, Clone)]
pub(crate) struct WatchQuery {
    pub(crate) list: ListQuery,
    pub(crate) resource_version: Option<String>,
    pub(crate) bookmarks: bool,
    pub(crate) send_initial_events: bool,
    pub(crate) timeout: Duration,
    /// Objects as PartialObjectMetadata.
    pub(crate) metadata_only: bool,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(s: &Scope, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": s.rt.kind, "apiVersion": s.rt.api_version(&s.version), "metadata": meta}),
    )
}

fn shown(s: &Scope, q: &WatchQuery, o: &Value) -> Value {
    let full = present(&s.rt, &s.version, o);
    if q.metadata_only {
        to_partial(&full)
    } else {
        full
    }
}

/// What a change looks like to this watch, if anything.
fn translate(s: &Scope, q: &WatchQuery, c: &Change) -> Option<Bytes> {
    if c.res != res_key(&s.rt) {
        return None;
    }
    let visible = |o: &Value| {
        s.namespace
            .as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
            && q.list.matches(o)
    };
    let now = visible(&c.object);
    let kind = match c.event {
        EventType::Added if now => "ADDED",
        EventType::Deleted if now => "DELETED",
        EventType::Modified => match (c.old.as_ref().is_some_and(visible), now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
        _ => return None,
    };
    Some(line(kind, &shown(s, q, &c.object)))
}

/// Starts a watch: computes its first lines and subscription under the store lock
/// (held by the caller), then streams from a task. The receiver yields the body.
pub(crate) fn open(
    store: &Store,
    s: Scope,
    q: WatchQuery,
    bookmark_interval: Duration,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let current = store.current_rv();
    let since = match q.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{text}\": must be a number"
            ))
        })?),
    };
    let (tx, rx) = mpsc::channel(256);
    let mut first: Vec<Bytes> = Vec::new();
    let snapshot = since.is_none() || q.send_initial_events;
    let subscription = if snapshot {
        for o in store
            .list(&res_key(&s.rt), s.namespace.as_deref())
            .filter(|o| q.list.matches(o))
        {
            first.push(line("ADDED", &shown(&s, &q, o)));
        }
        if q.send_initial_events {
            first.push(bookmark(&s, current, true));
        }
        store.subscribe(None)
    } else {
        store.subscribe(since)
    };
    let live = match subscription {
        Ok((replay, live)) => {
            first.extend(replay.iter().filter_map(|c| translate(&s, &q, c)));
            Some(live)
        }
        Err(compacted) => {
            let gone = ApiError::gone(format!(
                "too old resource version: {} ({compacted})",
                since.unwrap_or_default()
            ));
            first.push(line("ERROR", &gone.to_status()));
            None
        }
    };
    tokio::spawn(stream(s, q, first, live, current, tx, bookmark_interval));
    Ok(rx)
}

async fn stream(
    s: Scope,
    q: WatchQuery,
    first: Vec<Bytes>,
    live: Option<broadcast::Receiver<Broadcast>>,
    mut last_rv: u64,
    tx: mpsc::Sender<Bytes>,
    bookmark_interval: Duration,
) {
    for b in first {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    let Some(mut live) = live else {
        return;
    };
    let deadline = tokio::time::sleep(q.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(bookmark_interval);
    ticker.tick().await;
    loop {
        let out = tokio::select! {
            msg = live.recv() => match msg {
                Ok(Broadcast::Change(c)) => {
                    last_rv = last_rv.max(c.rv);
                    translate(&s, &q, &c)
                }
                // Closed, lagged (the client reads too slowly to keep up) or told to
                // stop: end the stream, the client resumes from its last version.
                Ok(Broadcast::CloseWatches) | Err(_) => return,
            },
            _ = ticker.tick(), if q.bookmarks => Some(bookmark(&s, last_rv, false)),
            _ = &mut deadline => {
                if q.bookmarks {
                    let _ = tx.send(bookmark(&s, last_rv, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        };
        if let Some(b) = out
            && tx.send(b).await.is_err()
        {
            return;
        }
    }
}
