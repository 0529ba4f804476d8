//! Services and EndpointSlices from the Kubernetes API: two kube-runtime watchers feeding
//! one [`Inventory`], published on a watch channel.
//!
//! ```text
//!   watcher(Service)       ─┐ Init / InitApply / InitDone / Apply / Delete
//!   watcher(EndpointSlice) ─┴─> Inventory (one index per kind) ──Arc snapshot──> watch channel
//! ```
//!
//! Nothing is published until both kinds have been listed once: an agent that programmed
//! the Services before their EndpointSlices arrived would, for a moment, make every
//! Service refuse connections (no backends). A relist (after a 410 Gone, or a lost
//! connection) swaps an index atomically at its `InitDone`, so the datapath never sees a
//! half-listed kind either. The receiver sees the latest snapshot only: a burst of events
//! costs one datapath sync.
//!
//! The client must reach the API server without kube-proxy: see [`crate::kube_client`].

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use portico_api::k8s::{EndpointSlice, Service};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::inventory::Inventory;

/// A snapshot of what a source knows; `None` until it has a complete first state.
pub type Snapshots = watch::Receiver<Option<Arc<Inventory>>>;

/// One watch event of either kind. Boxed: a Service is several times the size of an
/// EndpointSlice, and events move through the merged stream by value.
enum Change {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

/// How long to wait before watching again after an error (the watcher's own backoff
/// handles the common cases; this bounds a tight loop on a persistent error).
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Starts watching Services and EndpointSlices in every namespace through `client`, until
/// `shutdown`.
pub fn spawn(client: Client, shutdown: CancellationToken) -> (Snapshots, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let services = watcher::watcher(Api::<Service>::all(client.clone()), Default::default())
            .map_ok(|e| Change::Service(Box::new(e)))
            .boxed();
        let slices = watcher::watcher(Api::<EndpointSlice>::all(client), Default::default())
            .map_ok(|e| Change::Slice(Box::new(e)))
            .boxed();
        let mut changes = futures::stream::select(services, slices);
        let mut state = State::default();
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = changes.next() => next,
            };
            match next {
                None => break,
                Some(Ok(change)) => {
                    if state.apply(change) {
                        tx.send_replace(Some(Arc::new(state.inventory.clone())));
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, "kubernetes source: watch error, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        }
        debug!("kubernetes source: stopped");
    });
    (rx, task)
}

/// The inventory and the relists in progress.
#[derive(Default)]
struct State {
    inventory: Inventory,
    services_listed: bool,
    slices_listed: bool,
    relisting_services: Option<Vec<Service>>,
    relisting_slices: Option<Vec<EndpointSlice>>,
}

impl State {
    /// Applies one event; returns whether there is a new complete state to publish.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Service(e) => match *e {
                Event::Init => self.relisting_services = Some(Vec::new()),
                Event::InitApply(s) => self.relisting_services.get_or_insert_default().push(s),
                Event::InitDone => {
                    let listed = self.relisting_services.take().unwrap_or_default();
                    info!(
                        services = listed.len(),
                        "kubernetes source: services listed"
                    );
                    self.inventory.services.reset(listed);
                    self.services_listed = true;
                }
                Event::Apply(s) => self.inventory.services.apply(s),
                Event::Delete(s) => {
                    self.inventory.services.delete(&s);
                }
            },
            Change::Slice(e) => match *e {
                Event::Init => self.relisting_slices = Some(Vec::new()),
                Event::InitApply(s) => self.relisting_slices.get_or_insert_default().push(s),
                Event::InitDone => {
                    let listed = self.relisting_slices.take().unwrap_or_default();
                    info!(
                        slices = listed.len(),
                        "kubernetes source: endpoint slices listed"
                    );
                    self.inventory.slices.reset(listed);
                    self.slices_listed = true;
                }
                Event::Apply(s) => self.inventory.slices.apply(s),
                Event::Delete(s) => {
                    self.inventory.slices.delete(&s);
                }
            },
        }
        let relisting = self.relisting_services.is_some() || self.relisting_slices.is_some();
        self.services_listed && self.slices_listed && !relisting
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portico_api::k8s::ObjectMeta;

    use super::*;

    fn svc(name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn nothing_is_published_until_both_kinds_are_listed_and_relists_swap_at_their_end() {
        let mut state = State::default();
        assert!(!state.apply(Change::Service(Box::new(Event::Init))));
        assert!(!state.apply(Change::Service(Box::new(Event::InitApply(svc("a"))))));
        assert!(!state.apply(Change::Service(Box::new(Event::InitDone))));
        assert!(!state.apply(Change::Slice(Box::new(Event::Init))));
        assert!(state.apply(Change::Slice(Box::new(Event::InitDone))));
        assert_eq!(state.inventory.services.len(), 1);
        assert!(state.apply(Change::Service(Box::new(Event::Apply(svc("b"))))));
        assert_eq!(state.inventory.services.len(), 2);

        // A relist: the old index stays until the new one is complete.
        assert!(!state.apply(Change::Service(Box::new(Event::Init))));
        assert!(!state.apply(Change::Service(Box::new(Event::InitApply(svc("b"))))));
        assert_eq!(state.inventory.services.len(), 2);
        assert!(state.apply(Change::Service(Box::new(Event::InitDone))));
        assert_eq!(state.inventory.services.len(), 1);
        assert!(state.apply(Change::Service(Box::new(Event::Delete(svc("b"))))));
        assert!(state.inventory.services.is_empty());
    }
}
