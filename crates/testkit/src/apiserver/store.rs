//! The in-memory store: every object of every resource, one global resourceVersion
//! counter, the retained history of changes and the broadcast that feeds watches.
//!
//! ```text
//! objects: (group, plural) -> (namespace, name) -> object JSON (storage version)
//! rv:      last resourceVersion handed out (each write takes the next one)
//! history: changes with rv in (compacted, rv], oldest first, at most `history_limit`
//! tx:      broadcast of every change as it is committed (watches subscribe under the
//!          same lock that writes take, so replay + live never miss or repeat one)
//! ```
//!
//! A watch from a resourceVersion at or after `compacted` replays history; an older one
//! gets 410 Gone, as a real server whose watch cache (or etcd) has compacted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::resources::{Registry, ResourceType};

/// (group, plural).
pub(crate) type ResKey = (String, String);
/// (namespace or "", name).
pub(crate) type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) res: ResKey,
    pub(crate) event: EventType,
    /// The object after the write (for a delete: its last state, with the delete's rv).
    pub(crate) object: Value,
    /// The object before a modification (selector transitions need it).
    pub(crate) old: Option<Value>,
}

/// What watches hear.
#[derive(Debug, Clone)]
pub(crate) enum Broadcast {
    Change(Arc<Change>),
    /// End every open watch (history was compacted, or the server stops).
    CloseWatches,
}

pub(crate) fn res_key(rt: &ResourceType) -> ResKey {
    (rt.group.clone(), rt.plural.clone())
}

pub(crate) fn obj_key(obj: &Value) -> ObjKey {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) registry: Registry,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Value>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    compacted: u64,
    tx: broadcast::Sender<Broadcast>,
    /// Next ClusterIP and NodePort to hand out (Service defaulting).
    pub(crate) next_cluster_ip: u32,
    pub(crate) next_node_port: u16,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 1,
            tx,
            next_cluster_ip: 10,
            next_node_port: 30000,
        }
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, res: &ResKey, key: &ObjKey) -> Option<&Value> {
        self.objects.get(res).and_then(|m| m.get(key))
    }

    /// Objects of a resource in key order, optionally of one namespace.
    pub(crate) fn list<'a>(
        &'a self,
        res: &ResKey,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(res)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, v)| v)
    }

    /// Every stored object with its resource (for garbage collection and namespaces).
    pub(crate) fn all(&self) -> impl Iterator<Item = (&ResKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(res, m)| m.values().map(move |v| (res, v)))
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Broadcast::Change(change));
    }

    /// Stores `obj` under the next resourceVersion and tells watches. Returns the object
    /// as stored.
    pub(crate) fn put(&mut self, res: &ResKey, mut obj: Value, event: EventType) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = Value::from(rv.to_string());
        let key = obj_key(&obj);
        let old = self
            .objects
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.record(Change {
            rv,
            res: res.clone(),
            event,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object; the DELETED event carries its last state with the delete's rv.
    pub(crate) fn remove(&mut self, res: &ResKey, key: &ObjKey) -> Option<Value> {
        let mut obj = self.objects.get_mut(res)?.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = Value::from(rv.to_string());
        self.record(Change {
            rv,
            res: res.clone(),
            event: EventType::Deleted,
            object: obj.clone(),
            old: None,
        });
        Some(obj)
    }

    /// Replay and subscription for a watch from `since` (None: live only).
    /// `Err(compacted)` when `since` is older than the retained history.
    #[allow(clippy::type_complexity)]
    pub(crate) fn subscribe(
        &self,
        since: Option<u64>,
    ) -> Result<(Vec<Arc<Change>>, broadcast::Receiver<Broadcast>), u64> {
        let replay = match since {
            None => Vec::new(),
            Some(rv) if rv < self.compacted => return Err(self.compacted),
            Some(rv) => self.history.iter().filter(|c| c.rv > rv).cloned().collect(),
        };
        Ok((replay, self.tx.subscribe()))
    }

    /// Forgets all history and ends every watch: the next watch from any resourceVersion
    /// handed out so far gets 410 Gone, so watchers must relist. The counter moves on by
    /// one, as other writes in a real cluster would move it.
    pub(crate) fn compact(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.history.clear();
        let _ = self.tx.send(Broadcast::CloseWatches);
    }

    pub(crate) fn close_watches(&self) {
        let _ = self.tx.send(Broadcast::CloseWatches);
    }

    /// Drops every object of a resource (its CRD was deleted), telling watches.
    pub(crate) fn drop_resource(&mut self, res: &ResKey) {
        let keys: Vec<ObjKey> = self
            .objects
            .get(res)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            self.remove(res, &k);
        }
        self.objects.remove(res);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ResKey {
        (String::new(), "configmaps".into())
    }

    #[test]
    fn history_window_and_gone() {
        let mut s = Store::new(2);
        for i in 0..3 {
            s.put(
                &key(),
                json!({"metadata": {"name": format!("c{i}"), "namespace": "d"}}),
                EventType::Added,
            );
        }
        // rv 2, 3, 4 were handed out; only 3 and 4 are retained.
        assert_eq!(s.current_rv(), 4);
        assert_eq!(s.subscribe(Some(1)).unwrap_err(), 2);
        let (replay, _) = s.subscribe(Some(2)).unwrap();
        assert_eq!(replay.iter().map(|c| c.rv).collect::<Vec<_>>(), vec![3, 4]);
        s.compact();
        assert!(s.subscribe(Some(4)).is_err());
        assert!(s.subscribe(Some(5)).unwrap().0.is_empty());
    }

    #[test]
    fn remove_stamps_the_delete_rv() {
        let mut s = Store::new(10);
        s.put(
            &key(),
            json!({"metadata": {"name": "a", "namespace": "d"}}),
            EventType::Added,
        );
        let gone = s.remove(&key(), &("d".into(), "a".into())).unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert_eq!(s.list(&key(), Some("d")).count(), 0);
    }
}
