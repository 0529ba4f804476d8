//! The file provider: a folder of manifests, as the translator's inputs.
//!
//! ```text
//!   load_dir_cached(dir) ──> per file: parsed objects | unreadable | gone
//!                        │
//!   last good ───────────┤  parsed      -> its new objects
//!   (path -> objects)    │  unreadable  -> its previous objects, if it ever parsed
//!                        │  gone        -> nothing
//!                        ▼
//!   Store (first declaration of a (kind, namespace, name) wins; Namespaces that objects
//!          live in but that no file declares are synthesized)
//!                        │ changed objects or errors?
//!                        ▼
//!   ProviderEvent { inputs, errors, generation }
//! ```
//!
//! Keeping the last good objects of a file that stopped parsing means a half-saved edit
//! never takes routes down; the error says why the edit is not live yet.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::Inputs;
use crate::file::{LoadError, LoadedObject, ParseCache, load_dir_cached, synthesized_namespace};
use crate::object::{Object, ObjectKey};
use crate::store::Store;

/// One state of the folder: what the translator should run on, and what could not be
/// loaded. `generation` increases by one with every published event, starting at 1.
#[derive(Clone)]
pub struct ProviderEvent {
    /// Shared: an event is cloned by every receiver, and a snapshot can be large.
    pub inputs: Arc<Inputs>,
    pub errors: Vec<LoadError>,
    pub generation: u64,
}

impl fmt::Debug for ProviderEvent {
    /// Counts rather than objects: a snapshot can be large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inputs;
        f.debug_struct("ProviderEvent")
            .field("generation", &self.generation)
            .field("gateway_classes", &i.gateway_classes.len())
            .field("gateways", &i.gateways.len())
            .field("http_routes", &i.http_routes.len())
            .field("reference_grants", &i.reference_grants.len())
            .field("services", &i.services.len())
            .field("endpoint_slices", &i.endpoint_slices.len())
            .field("namespaces", &i.namespaces.len())
            .field("errors", &self.errors)
            .finish()
    }
}

/// The folder's last good state, reloaded on demand (see [`FileProvider::watch`] for
/// reloading on change).
#[derive(Debug)]
pub struct FileProvider {
    dir: PathBuf,
    /// Per file, the objects of its last successful parse.
    files: BTreeMap<PathBuf, Arc<[LoadedObject]>>,
    /// Per file, its last parse: unchanged files are not parsed again.
    cache: ParseCache,
    store: Store,
    /// `store` as the translator reads it, taken once per change.
    snapshot: Arc<Inputs>,
    errors: Vec<LoadError>,
    generation: u64,
}

impl FileProvider {
    /// A provider for `dir`; nothing is read until [`reload`](Self::reload).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            cache: ParseCache::default(),
            store: Store::default(),
            snapshot: Arc::default(),
            errors: Vec::new(),
            generation: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The objects currently published.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Re-reads the folder. Returns the new event when the objects or the errors changed
    /// (always on the first call), `None` when the folder says the same as before.
    pub fn reload(&mut self) -> Option<ProviderEvent> {
        let started = Instant::now();
        let mut result = load_dir_cached(&self.dir, &mut self.cache);
        let loaded = started.elapsed();
        for (path, objects) in &self.files {
            let kept = !result.files.contains_key(path)
                && result.unreadable.iter().any(|u| path.starts_with(u));
            if kept {
                info!(
                    path = %path.display(),
                    objects = objects.len(),
                    "file provider: keeping the last good objects of a file that does not load"
                );
                result.files.insert(path.clone(), objects.clone());
            }
        }
        let mut errors = result.errors;
        let store = build_store(&result.files, &mut errors);
        errors.sort_by(|a, b| (a.path(), a.line()).cmp(&(b.path(), b.line())));
        self.files = result.files;

        let built = started.elapsed();
        let changed = self.generation == 0 || store != self.store || errors != self.errors;
        self.store = store;
        self.errors = errors;
        let compared = started.elapsed();
        debug!(
            load_ms = ms(loaded),
            store_ms = ms(built - loaded),
            compare_ms = ms(compared - built),
            changed,
            "file provider: reloaded"
        );
        if !changed {
            return None;
        }
        self.generation += 1;
        self.snapshot = Arc::new(self.store.snapshot());
        for e in &self.errors {
            warn!(error = %e, "file provider: not loaded");
        }
        info!(
            dir = %self.dir.display(),
            generation = self.generation,
            objects = self.store.len(),
            errors = self.errors.len(),
            "file provider: new snapshot"
        );
        let event = self.event();
        debug!(
            snapshot_ms = ms(started.elapsed() - compared),
            "file provider: snapshot taken"
        );
        Some(event)
    }

    /// The current state as an event (the last one published, or an empty generation 0
    /// before the first reload).
    pub fn event(&self) -> ProviderEvent {
        ProviderEvent {
            inputs: self.snapshot.clone(),
            errors: self.errors.clone(),
            generation: self.generation,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Puts every file's objects into a fresh store, in path then document order.
fn build_store(
    files: &BTreeMap<PathBuf, Arc<[LoadedObject]>>,
    errors: &mut Vec<LoadError>,
) -> Store {
    let mut store = Store::default();
    // Where each (kind, key) was first declared, to name it when it is declared again.
    let mut first: BTreeMap<(String, ObjectKey), (&Path, usize)> = BTreeMap::new();
    for (path, objects) in files {
        for loaded in objects.iter() {
            let id = (loaded.object.kind().into_owned(), loaded.object.key());
            if let Some((first_path, first_line)) = first.get(&id) {
                errors.push(LoadError::Duplicate {
                    path: path.clone(),
                    line: loaded.line,
                    kind: id.0,
                    name: id.1.to_string(),
                    first_path: first_path.to_path_buf(),
                    first_line: *first_line,
                });
                continue;
            }
            first.insert(id, (path, loaded.line));
            store.apply(loaded.object.clone());
        }
    }
    for ns in store.namespaces_in_use() {
        let ns = Object::Namespace(synthesized_namespace(&ns));
        if !store.contains(&ns) {
            store.apply(ns);
        }
    }
    store
}
