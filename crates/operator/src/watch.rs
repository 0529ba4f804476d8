//! Reloading the folder when it changes.
//!
//! ```text
//!   inotify (notify, recursive) ─> debouncer (quiet for `debounce`) ─> mpsc ─┐
//!                                                                            ▼
//!   task: drain the batch, reload the whole folder (blocking pool), publish on the
//!         watch channel if the objects or errors changed; stop on shutdown, when every
//!         receiver is gone, or when the debouncer stops
//! ```
//!
//! Reloading the whole folder rather than the changed paths is deliberate: the folder is
//! small, and it makes every way of changing it equivalent: atomic saves (write a temp
//! file, rename it over), editors' swap files, directories moved in or out, a ConfigMap
//! volume swapping its hidden `..data` link. Reloads that change nothing publish nothing.

use std::path::PathBuf;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::provider::{FileProvider, ProviderEvent};

/// How long the folder must be quiet before it is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// The debouncer polls at a quarter of its timeout: below this it would spin.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

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
        source: notify_debouncer_full::notify::Error,
    },
    #[error("loading {} failed: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: JoinError,
    },
}

type FolderDebouncer = Debouncer<RecommendedWatcher, RecommendedCache>;

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
        let mut debouncer = new_debouncer(
            debounce.max(MIN_DEBOUNCE),
            None,
            move |batch: DebounceEventResult| {
                // Reading a file raises Access events, and the reload reads every file:
                // reloading on them would re-read the folder forever.
                if let Ok(events) = &batch
                    && events.iter().all(|e| {
                        matches!(e.kind, notify_debouncer_full::notify::EventKind::Access(_))
                    })
                {
                    return;
                }
                // Fails only once the task has ended: nobody is listening any more.
                let _ = changes_tx.send(batch);
            },
        )
        .map_err(notify_error)?;
        debouncer
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
        let task = tokio::spawn(run(provider, debouncer, changes, updates_tx, shutdown));
        Ok(Watching {
            initial,
            updates,
            task,
        })
    }
}

async fn run(
    mut provider: FileProvider,
    debouncer: FolderDebouncer,
    mut changes: mpsc::UnboundedReceiver<DebounceEventResult>,
    updates: watch::Sender<ProviderEvent>,
    shutdown: CancellationToken,
) {
    // Dropping the debouncer stops the watch: keep it for as long as the task runs.
    let _debouncer = debouncer;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = updates.closed() => break,
            batch = changes.recv() => batch,
        };
        let Some(batch) = batch else {
            warn!(dir = %provider.dir().display(), "file provider: the watcher stopped");
            break;
        };
        note(batch);
        // Everything queued meanwhile is covered by the same reload.
        while let Ok(batch) = changes.try_recv() {
            note(batch);
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

/// Logs a batch from the debouncer. Errors (such as an overflowing inotify queue) still
/// lead to a reload: reading the whole folder recovers from lost events.
fn note(batch: DebounceEventResult) {
    match batch {
        Ok(events) => {
            for event in &events {
                debug!(kind = ?event.kind, paths = ?event.paths, "file provider: change");
            }
        }
        Err(errors) => {
            for e in errors {
                warn!(error = %e, "file provider: watch error");
            }
        }
    }
}
