use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary names unique within the process; the pid makes them unique across
/// test processes sharing a folder.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Writes `dir/name` atomically: the contents go to a hidden temporary file in the same
/// folder, are synced, then renamed over the target. A file watcher (the standalone
/// provider) therefore sees either the old or the new file, never a half-written one;
/// the temporary name starts with a dot and does not end in `.yaml`, so loaders that skip
/// hidden or foreign files ignore it. Returns the path written.
pub fn write_file(
    dir: impl AsRef<Path>,
    name: &str,
    contents: impl AsRef<[u8]>,
) -> std::io::Result<PathBuf> {
    let dir = dir.as_ref();
    let target = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(contents.as_ref())?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, &target)) {
        Ok(()) => Ok(target),
        Err(error) => {
            // Best effort: the original error is the one worth reporting.
            let _ = std::fs::remove_file(&tmp);
            Err(error)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scratch_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portico-testkit-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_and_replaces_without_leftovers() {
        let dir = scratch_dir("write-file");
        let path = write_file(&dir, "route.yaml", "a: 1\n").unwrap();
        assert_eq!(path, dir.join("route.yaml"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 1\n");

        write_file(&dir, "route.yaml", b"a: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 2\n");

        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["route.yaml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let dir = scratch_dir("write-file-missing").join("absent");
        let err = write_file(&dir, "x", "y").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
