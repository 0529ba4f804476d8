//! Reading a folder of Kubernetes manifests.
//!
//! ```text
//!   dir/ ──walk──> *.yaml, *.yml (sorted; hidden and editor temp files skipped)
//!                    │ read, parse the whole file (a syntax error rejects the file)
//!                    │ cut into documents (`---`), each with its first line
//!                    ▼
//!                  decode by apiVersion + kind ──> LoadedObject { line, object }
//!                    │                              (unknown kinds skipped)
//!                    ▼
//!   LoadResult { files: path -> [LoadedObject], unreadable: {paths}, errors: [LoadError] }
//! ```
//!
//! A file that does not parse, or cannot be read, is reported in `errors` and listed in
//! `unreadable` (so that the provider keeps its last good objects); an invalid object is
//! reported and skipped while the rest of its file loads.
//!
//! [`load_dir_cached`] remembers each file's parse by the sha256 of its bytes: a folder
//! with one large file of routes and one new small file re-reads both but parses only
//! the new one (at 5,000 routes parsing was ~95% of a reload).

mod decode;
mod documents;
mod error;
mod walk;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use tracing::debug;

use crate::object::Object;

pub use decode::DEFAULT_NAMESPACE;
pub(crate) use decode::synthesized_namespace;
pub use error::LoadError;

/// An object and the line its document starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedObject {
    pub line: usize,
    pub object: Object,
}

/// What a file that parses holds: its valid objects and the errors of the invalid ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileContents {
    pub objects: Vec<LoadedObject>,
    pub errors: Vec<LoadError>,
}

/// What a folder holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    /// The objects of every file that parsed, by path (the folder joined with the path
    /// below it), in document order; shared with the [`ParseCache`] that produced them.
    pub files: BTreeMap<PathBuf, Arc<[LoadedObject]>>,
    /// Files that exist but could not be read or parsed, and directories that could not
    /// be listed: whatever was loaded from them before is still their best known content.
    pub unreadable: BTreeSet<PathBuf>,
    /// Every problem, in path then line order.
    pub errors: Vec<LoadError>,
}

/// Loads every manifest under `dir`. Never fails as a whole: problems are in the result.
pub fn load_dir(dir: &Path) -> LoadResult {
    load_dir_cached(dir, &mut ParseCache::default())
}

/// The last parse of each file, by path, keyed by the sha256 of the bytes it parsed.
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<PathBuf, CachedParse>,
}

#[derive(Debug)]
struct CachedParse {
    digest: [u8; 32],
    parsed: Result<(Arc<[LoadedObject]>, Vec<LoadError>), LoadError>,
}

impl ParseCache {
    /// The parse of `text` read from `path`: from the cache when the bytes are the same
    /// as last time.
    fn parse(&mut self, path: &Path, text: &str) -> &CachedParse {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let hit = self.files.get(path).is_some_and(|c| c.digest == digest);
        if !hit {
            let parsed = parse_file(path, text).map(|c| (Arc::from(c.objects), c.errors));
            self.files
                .insert(path.to_path_buf(), CachedParse { digest, parsed });
        } else {
            debug!(path = %path.display(), "unchanged since the last load, not parsed again");
        }
        &self.files[path]
    }

    /// How many files have a parse remembered.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// [`load_dir`], parsing only the files whose bytes changed since `cache` last saw them;
/// files no longer in the folder (or no longer readable) leave the cache.
pub fn load_dir_cached(dir: &Path, cache: &mut ParseCache) -> LoadResult {
    let listing = walk::list(dir);
    let mut result = LoadResult::default();
    for (path, e) in listing.failed_dirs {
        result.errors.push(LoadError::ListDir {
            path: path.clone(),
            message: e.to_string(),
        });
        result.unreadable.insert(path);
    }
    let mut seen = BTreeSet::new();
    for path in listing.files {
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!(path = %path.display(), "file removed while loading");
                continue;
            }
            Err(e) => {
                result.errors.push(LoadError::ReadFile {
                    path: path.clone(),
                    message: e.to_string(),
                });
                result.unreadable.insert(path);
                continue;
            }
        };
        match &cache.parse(&path, &text).parsed {
            Ok((objects, errors)) => {
                result.errors.extend(errors.iter().cloned());
                result.files.insert(path.clone(), objects.clone());
            }
            Err(e) => {
                result.errors.push(e.clone());
                result.unreadable.insert(path.clone());
            }
        }
        seen.insert(path);
    }
    cache.files.retain(|path, _| seen.contains(path));
    result
}

/// Decodes the text of one file; `path` only names it in errors. `Err` when the file is
/// not valid YAML (nothing of it is loaded).
pub fn parse_file(path: &Path, text: &str) -> Result<FileContents, LoadError> {
    documents::check_syntax(text).map_err(|e| LoadError::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    let mut contents = FileContents::default();
    for doc in documents::split(text) {
        decode::decode_document(path, &doc, &mut contents);
    }
    Ok(contents)
}
