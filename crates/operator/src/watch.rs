//! Reloading the folder when it changes.
//!
//! ```text
//!   inotify (notify, recursive) ─> mpsc ─> task: the first change starts the quiet
//!         period; every change during it restarts it; when the folder has been quiet
//!         for `debounce`: reload the whole folder (blocking pool), publish on the watch
//!         channel if the objects or errors changed; stop on shutdown, when every
//!         receiver is gone, or when the watcher stops
//! ```
//!
//! Reloading the whole folder rather than the changed paths is deliberate: it makes every
//! way of changing it equivalent: atomic saves (write a temp file, rename it over),
//! editors' swap files, directories moved in or out, a ConfigMap volume swapping its
//! hidden `..data` link. Files whose bytes did not change are not parsed again
//! ([`crate::file::ParseCache`]), and reloads that change nothing publish nothing.
//!
//! The quiet period is a timer in the task rather than a polling debouncer: a change is
//! picked up `debounce` after the last event, not up to a poll interval later, and an
//! idle folder costs no wake-ups.

use std::path::PathBuf;
use std::time::Duration;

use notify_debouncer_full::notify::{
    self, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::provider::{FileProvider, ProviderEvent};

/// How long the folder must be quiet before it is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// A folder being watched.
#[derive(Debug)]
pub struct Watching {
    /// The state of the folder when watching started (generation 1).
    pub initial: ProviderEvent,
    /// Every later state; holds `initial` until the first change.
    pub updates: watch::Receiver<ProviderEvent>,
    /// The watch task; it ends on shutdown or when `updates` (and its clones) are dropped.
    pub task: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("loading {} failed: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: JoinError,
    },
}

type Change = notify::Result<notify::Event>;

impl FileProvider {
    /// Loads `dir` and keeps reloading it when it changes, until `shutdown` is cancelled
    /// or the receiver is dropped. Must be called within a tokio runtime.
    ///
    /// Fails only when `dir` cannot be watched (it does not exist, or inotify is out of
    /// watches); problems with its files are in the events.
    pub async fn watch(
        dir: impl Into<PathBuf>,
        debounce: Duration,
        shutdown: CancellationToken,
    ) -> Result<Watching, WatchError> {
        let dir = dir.into();
        let notify_error = |source| WatchError::Notify {
            path: dir.clone(),
            source,
        };
        // Watch before the first load, so that a change made during it is not missed.
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |change: Change| {
            // Reading a file raises Access events, and the reload reads every file:
            // reloading on them would re-read the folder forever.
            if let Ok(event) = &change
                && matches!(event.kind, EventKind::Access(_))
            {
                return;
            }
            // Fails only once the task has ended: nobody is listening any more.
            let _ = changes_tx.send(change);
        })
        .map_err(notify_error)?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(notify_error)?;

        let mut provider = FileProvider::new(dir.clone());
        let (provider, initial) = tokio::task::spawn_blocking(move || {
            let event = provider.reload().unwrap_or_else(|| provider.event());
            (provider, event)
        })
        .await
        .map_err(|source| WatchError::Load {
            path: dir.clone(),
            source,
        })?;

        info!(dir = %dir.display(), ?debounce, "file provider: watching");
        let (updates_tx, updates) = watch::channel(initial.clone());
        let task = tokio::spawn(run(
            provider, watcher, debounce, changes, updates_tx, shutdown,
        ));
        Ok(Watching {
            initial,
            updates,
            task,
        })
    }
}

async fn run(
    mut provider: FileProvider,
    watcher: RecommendedWatcher,
    debounce: Duration,
    mut changes: mpsc::UnboundedReceiver<Change>,
    updates: watch::Sender<ProviderEvent>,
    shutdown: CancellationToken,
) {
    // Dropping the watcher stops the watch: keep it for as long as the task runs.
    let _watcher = watcher;
    'changes: loop {
        let change = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = updates.closed() => break,
            change = changes.recv() => change,
        };
        let Some(change) = change else {
            warn!(dir = %provider.dir().display(), "file provider: the watcher stopped");
            break;
        };
        note(change);
        // Quiet for `debounce`: every change meanwhile is covered by the same reload.
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'changes,
                change = changes.recv() => match change {
                    Some(change) => note(change),
                    None => break,
                },
                () = tokio::time::sleep(debounce) => break,
            }
        }
        let reloaded = tokio::task::spawn_blocking(move || {
            let event = provider.reload();
            (provider, event)
        })
        .await;
        let event;
        (provider, event) = match reloaded {
            Ok(reloaded) => reloaded,
            Err(e) => {
                error!(error = %e, "file provider: reload failed, watching stops");
                return;
            }
        };
        if let Some(event) = event
            && updates.send(event).is_err()
        {
            break;
        }
    }
    debug!(dir = %provider.dir().display(), "file provider: watch ended");
}

/// Logs a change. Errors (such as an overflowing inotify queue) still lead to a reload:
/// reading the whole folder recovers from lost events.
fn note(change: Change) {
    match change {
        Ok(event) => {
            debug!(kind = ?event.kind, paths = ?event.paths, "file provider: change");
        }
        Err(e) => warn!(error = %e, "file provider: watch error"),
    }
}
