//! `--from-dir`: a folder of manifests, reloaded when it changes.
//!
//! ```text
//!   inotify (notify, recursive) ─> debouncer (quiet for `debounce`) ─> reload the folder
//!      (blocking pool) ─> Inventory ─> watch channel, when it differs from the last one
//! ```
//!
//! The whole folder is reloaded on any change, as the operator's file provider does:
//! atomic saves, editors' swap files and ConfigMap volumes swapping their `..data` link
//! all look the same that way. Problems with files are logged and the rest is used.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::inventory::Inventory;
use crate::manifests::load_dir;
use crate::watch_kube::Snapshots;

/// How long the folder must be quiet before it is reloaded, by default.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// Why a folder cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", path.display())]
pub struct WatchDirError {
    path: PathBuf,
    #[source]
    source: notify_debouncer_full::notify::Error,
}

/// The inventory of `dir`, now and whenever it changes, until `shutdown`. Must be called
/// within a tokio runtime.
pub fn spawn(
    dir: PathBuf,
    debounce: Duration,
    shutdown: CancellationToken,
) -> Result<(Snapshots, JoinHandle<()>), WatchDirError> {
    let err = |source| WatchDirError {
        path: dir.clone(),
        source,
    };
    // Watch before the first load, so that a change made during it is not missed.
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(
        debounce.max(Duration::from_millis(10)),
        None,
        move |batch: DebounceEventResult| {
            // Our own reads raise Access events: reloading on them would loop forever.
            if let Ok(events) = &batch
                && events
                    .iter()
                    .all(|e| matches!(e.kind, EventKind::Access(_)))
            {
                return;
            }
            let _ = changes_tx.send(());
        },
    )
    .map_err(err)?;
    debouncer
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(err)?;
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        // Owned by the task: dropping it stops the inotify thread.
        let _debouncer = debouncer;
        let mut last: Option<Arc<Inventory>> = None;
        loop {
            let d = dir.clone();
            let loaded = tokio::task::spawn_blocking(move || load_dir(&d)).await;
            match loaded {
                Ok(m) => {
                    for e in &m.errors {
                        warn!(error = %e, "skipping a manifest");
                    }
                    let inv = Arc::new(Inventory::from_manifests(m));
                    if last.as_deref() != Some(&*inv) {
                        info!(
                            dir = %dir.display(),
                            services = inv.services.len(),
                            slices = inv.slices.len(),
                            "folder loaded"
                        );
                        last = Some(inv.clone());
                        tx.send_replace(Some(inv));
                    }
                }
                Err(e) => warn!(error = %e, "loading the folder failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                change = changes.recv() => if change.is_none() { break },
            }
            // Drain what else arrived: one reload covers it.
            while changes.try_recv().is_ok() {}
        }
    });
    Ok((rx, task))
}
