//! What can go wrong loading a folder of manifests. Errors are data for the caller (the CLI
//! prints them): each names the file, the line when there is one, and the object when it is
//! known, as `route.yaml:12: HTTPRoute echo/foo: spec.rules[0]...: missing field `name``.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while loading a folder. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A directory could not be listed: the files below it keep their last good objects.
    #[error("{}: cannot list directory: {message}", path.display())]
    ListDir { path: PathBuf, message: String },

    /// A file could not be read (permissions, not UTF-8...): it keeps its last good objects.
    #[error("{}: cannot read file: {message}", path.display())]
    ReadFile { path: PathBuf, message: String },

    /// The file is not valid YAML: none of it is loaded, it keeps its last good objects.
    #[error("{}:{line}: invalid YAML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A document that is not a Kubernetes object (no `kind`, not a mapping...): skipped.
    #[error("{}:{line}: {message}", path.display())]
    Document {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// An object of a known kind that does not decode or is not valid: skipped, the other
    /// objects of its file load.
    #[error("{}:{line}: {}: {message}", path.display(), ObjectName { kind, name })]
    Object {
        path: PathBuf,
        line: usize,
        kind: String,
        /// `namespace/name` or `name`, when the document has one.
        name: Option<String>,
        message: String,
    },

    /// The same object (kind, namespace and name) is declared twice: the first one, in
    /// path order, is kept.
    #[error(
        "{}:{line}: {kind} {name}: declared again (first at {}:{first_line}); this one is ignored",
        path.display(),
        first_path.display()
    )]
    Duplicate {
        path: PathBuf,
        line: usize,
        kind: String,
        name: String,
        first_path: PathBuf,
        first_line: usize,
    },
}

impl LoadError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::ListDir { path, .. }
            | LoadError::ReadFile { path, .. }
            | LoadError::Syntax { path, .. }
            | LoadError::Document { path, .. }
            | LoadError::Object { path, .. }
            | LoadError::Duplicate { path, .. } => path,
        }
    }

    /// The line the error is about, when it is about a place in a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::ListDir { .. } | LoadError::ReadFile { .. } => None,
            LoadError::Syntax { line, .. }
            | LoadError::Document { line, .. }
            | LoadError::Object { line, .. }
            | LoadError::Duplicate { line, .. } => Some(*line),
        }
    }
}

/// `HTTPRoute echo/foo`, or just `HTTPRoute` when the object has no name.
struct ObjectName<'a> {
    kind: &'a str,
    name: &'a Option<String>,
}

impl fmt::Display for ObjectName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "{} {name}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}
