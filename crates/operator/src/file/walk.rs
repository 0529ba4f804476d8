//! Which files of the folder are manifests: every `*.yaml` / `*.yml`, recursively, in path
//! order, except hidden entries (`.git/`, `.#route.yaml` Emacs locks, `.route.yaml.swp`)
//! and editor leftovers (`route.yaml~`, `#route.yaml#`).
//!
//! Symlinked files are read (a ConfigMap volume is made of them: `route.yaml ->
//! ..data/route.yaml`, the hidden `..data` being swapped atomically on update); symlinked
//! directories are not entered, which rules out cycles.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::debug;

/// The manifests found under a root, and the directories that could not be listed.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) failed_dirs: Vec<(PathBuf, io::Error)>,
}

/// Lists the manifests under `root`, sorted by path.
pub(crate) fn list(root: &Path) -> Listing {
    let mut listing = Listing::default();
    // Depth-first with an explicit stack: depth is bounded by the file system, and
    // symlinked directories are never pushed, so this terminates.
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match read_dir_sorted(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                listing.failed_dirs.push((dir, e));
                continue;
            }
        };
        for path in entries {
            let Some(name) = path.file_name() else {
                continue;
            };
            if is_ignored(name) {
                debug!(path = %path.display(), "ignoring hidden or editor temp file");
                continue;
            }
            let Ok(link_meta) = fs::symlink_metadata(&path) else {
                // Gone since the listing: nothing to load.
                continue;
            };
            if link_meta.is_dir() {
                dirs.push(path);
            } else if link_meta.file_type().is_symlink() {
                match fs::metadata(&path) {
                    Ok(target) if target.is_file() && is_manifest(name) => listing.files.push(path),
                    Ok(target) if target.is_dir() => {
                        debug!(path = %path.display(), "not entering symlinked directory")
                    }
                    Ok(_) => {}
                    Err(e) => debug!(path = %path.display(), error = %e, "broken symlink"),
                }
            } else if link_meta.is_file() && is_manifest(name) {
                listing.files.push(path);
            }
        }
    }
    listing.files.sort();
    listing
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

/// Hidden entries and the temporary files editors write next to the one being edited.
pub(crate) fn is_ignored(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || [".swp", ".swx", ".swo", ".tmp", ".bak"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// `*.yaml` or `*.yml`, in any case.
pub(crate) fn is_manifest(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn editor_files_are_ignored() {
        for name in [
            ".#route.yaml",
            ".route.yaml.swp",
            "route.yaml~",
            "#route.yaml#",
            ".hidden.yaml",
            "route.yaml.tmp",
        ] {
            assert!(is_ignored(OsStr::new(name)), "{name} should be ignored");
        }
        for name in ["route.yaml", "gateway.yml", "a.b.yaml"] {
            assert!(!is_ignored(OsStr::new(name)), "{name} should be read");
            assert!(is_manifest(OsStr::new(name)), "{name} is a manifest");
        }
        for name in ["README.md", "route.json", "yaml"] {
            assert!(!is_manifest(OsStr::new(name)), "{name} is not a manifest");
        }
        assert!(is_manifest(OsStr::new("ROUTE.YAML")));
    }

    #[test]
    fn lists_recursively_in_path_order_skipping_hidden_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        for f in [
            "z.yaml",
            "a.yml",
            "b/c/d.yaml",
            "b/x.txt",
            ".git/config.yaml",
            ".#z.yaml",
        ] {
            fs::write(root.join(f), "").unwrap();
        }
        let listing = list(root);
        assert!(listing.failed_dirs.is_empty());
        let rel: Vec<String> = listing
            .files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["a.yml", "b/c/d.yaml", "z.yaml"]);
    }

    #[test]
    fn symlinked_files_are_read_symlinked_dirs_are_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("..data")).unwrap();
        fs::write(root.join("..data/route.yaml"), "").unwrap();
        std::os::unix::fs::symlink("..data/route.yaml", root.join("route.yaml")).unwrap();
        std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
        std::os::unix::fs::symlink("missing.yaml", root.join("broken.yaml")).unwrap();
        let listing = list(root);
        assert_eq!(listing.files, [root.join("route.yaml")]);
    }

    #[test]
    fn a_missing_root_is_a_failed_dir() {
        let dir = tempfile::tempdir().unwrap();
        let listing = list(&dir.path().join("nope"));
        assert!(listing.files.is_empty());
        assert_eq!(listing.failed_dirs.len(), 1);
    }
}
