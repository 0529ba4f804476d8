//! A folder of manifests, as the agent reads it for `--from-dir`: the Services and
//! EndpointSlices of every `*.yaml` / `*.yml` file under it, recursively.
//!
//! ```text
//!   DIR/**/*.yaml ──split on `---`──> documents ──kind──> Service | EndpointSlice | List items
//!                                                  (other kinds are ignored: a folder
//!                                                   may hold Gateways and routes too)
//! ```
//!
//! The agent does not use the operator's file provider: that one loads every kind into
//! the translator's inputs, and the agent (a small per-node image, the component that
//! must keep Services working when everything else is down) needs two kinds and no
//! translator. A file that does not parse is reported and skipped; the rest is used.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use portico_api::k8s::{EndpointSlice, Service};
use serde::Deserialize;

/// What a folder holds for the agent.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// Files or documents that could not be read, with why.
    pub errors: Vec<ManifestError>,
}

/// Why a file or one of its documents was skipped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub detail: String,
}

/// Reads every manifest under `dir`. Hidden entries (`.git/`, editor swap files) and
/// symlinked directories are not entered; symlinked files are read (a ConfigMap volume
/// is made of them).
pub fn load_dir(dir: &Path) -> Manifests {
    let mut out = Manifests::default();
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    // Depth-first; symlinked directories are never pushed, so this terminates.
    while let Some(d) = dirs.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) => {
                out.errors.push(error(&d, &e));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if hidden {
                continue;
            }
            if kind.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        match fs::read_to_string(&path) {
            Ok(text) => parse_into(&path, &text, &mut out),
            Err(e) => out.errors.push(error(&path, &e)),
        }
    }
    out
}

fn error(path: &Path, e: &io::Error) -> ManifestError {
    ManifestError {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Adds the Services and EndpointSlices of the YAML stream `text` (read from `path`).
pub fn parse_into(path: &Path, text: &str, out: &mut Manifests) {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        match serde_json::Value::deserialize(document) {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => add_object(path, value, out),
            Err(e) => {
                // A syntax error ends the stream: what follows cannot be split reliably.
                out.errors.push(ManifestError {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                });
                return;
            }
        }
    }
}

fn add_object(path: &Path, value: serde_json::Value, out: &mut Manifests) {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let decoded = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Service") => serde_json::from_value(value).map(|s: Service| out.services.push(s)),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            serde_json::from_value(value).map(|s: EndpointSlice| out.slices.push(s))
        }
        (_, "List") | (_, "ServiceList") | (_, "EndpointSliceList") => {
            if let Some(serde_json::Value::Array(items)) = value.get("items").cloned() {
                for item in items {
                    add_object(path, item, out);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    };
    if let Err(e) = decoded {
        out.errors.push(ManifestError {
            path: path.to_path_buf(),
            detail: format!("{kind}: {e}"),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_slices_and_lists_and_skips_other_kinds_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("apps");
        fs::create_dir(&sub).unwrap();
        fs::write(
            sub.join("web.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  \
             metadata: {name: web-1}\n  addressType: IPv4\n  endpoints: []\n",
        )
        .unwrap();
        fs::write(
            dir.path().join(".web.yaml.swp"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: swap}\n",
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        let m = load_dir(dir.path());
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.services[0].metadata.name.as_deref(), Some("web"));
        assert_eq!(m.slices.len(), 1);
    }

    #[test]
    fn a_broken_document_is_reported_with_its_file_and_the_rest_is_used() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: eighty}]}\n",
        )
        .unwrap();
        let m = load_dir(dir.path());
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.errors.len(), 1);
        assert!(
            m.errors[0].to_string().contains("b.yaml"),
            "{}",
            m.errors[0]
        );
    }
}
