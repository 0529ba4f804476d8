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

mod decode;
mod documents;
mod error;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// below it), in document order.
    pub files: BTreeMap<PathBuf, Vec<LoadedObject>>,
    /// Files that exist but could not be read or parsed, and directories that could not
    /// be listed: whatever was loaded from them before is still their best known content.
    pub unreadable: BTreeSet<PathBuf>,
    /// Every problem, in path then line order.
    pub errors: Vec<LoadError>,
}

/// Loads every manifest under `dir`. Never fails as a whole: problems are in the result.
pub fn load_dir(dir: &Path) -> LoadResult {
    let listing = walk::list(dir);
    let mut result = LoadResult::default();
    for (path, e) in listing.failed_dirs {
        result.errors.push(LoadError::ListDir {
            path: path.clone(),
            message: e.to_string(),
        });
        result.unreadable.insert(path);
    }
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
        match parse_file(&path, &text) {
            Ok(contents) => {
                result.errors.extend(contents.errors);
                result.files.insert(path, contents.objects);
            }
            Err(e) => {
                result.errors.push(e);
                result.unreadable.insert(path);
            }
        }
    }
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
