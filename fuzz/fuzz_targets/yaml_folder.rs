//! Loading a folder of manifests, and reloading it after a file broke: the input is
//! several files in one text, each starting with a line `#### <relative path>` (seeds:
//! the example folders, the manifests of e2e/cases). Never panics; errors name a file
//! of the folder; a file that stops parsing keeps its last good objects; reloading an
//! unchanged folder publishes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_operator::{FileProvider, load_dir};

const MARK: &str = "#### ";
const MAX_FILES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = split(text);
    if files.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir for the fuzz input");
    portico_fuzz::write_files(dir.path(), &files);

    let loaded = load_dir(dir.path());
    for e in &loaded.errors {
        assert!(
            e.path().starts_with(dir.path()),
            "error outside the folder: {e}"
        );
    }
    for path in loaded.files.keys() {
        assert!(
            !loaded.unreadable.contains(path),
            "{} both loaded and unreadable",
            path.display()
        );
    }

    let mut provider = FileProvider::new(dir.path());
    let first = provider.reload().expect("the first reload publishes");
    assert_eq!(first.generation, 1);
    assert!(
        provider.reload().is_none(),
        "an unchanged folder published a new event"
    );
    let objects = provider.store().len();

    // Break every file that loaded: the objects must stay (last good state).
    let broken: Vec<(String, String)> = files
        .iter()
        .filter(|(name, _)| loaded.files.contains_key(&dir.path().join(name)))
        .map(|(name, _)| (name.clone(), "kind: [unclosed\n".to_owned()))
        .collect();
    portico_fuzz::write_files(dir.path(), &broken);
    let event = provider
        .reload()
        .or_else(|| Some(provider.event()))
        .expect("an event");
    assert_eq!(
        provider.store().len(),
        objects,
        "broken files lost their last good objects (errors: {:?})",
        event.errors
    );
});

/// `#### name` lines start files; text before the first one is ignored. Names keep
/// `[A-Za-z0-9._/-]`, lose leading dots and slashes and any `..`, and end in `.yaml`
/// when they name no manifest (so that the folder walk reads them).
fn split(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix(MARK) {
            if files.len() == MAX_FILES {
                break;
            }
            let mut name: String = name
                .trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
                .collect();
            while name.contains("..") {
                name = name.replace("..", ".");
            }
            let name = name.trim_start_matches(['.', '/']).trim_end_matches('/');
            let name = match name {
                "" => format!("file{}.yaml", files.len()),
                n if n.ends_with(".yaml") || n.ends_with(".yml") => n.to_owned(),
                n => format!("{n}.yaml"),
            };
            if files.iter().any(|(n, _)| {
                *n == name
                    || n.starts_with(&format!("{name}/"))
                    || name.starts_with(&format!("{n}/"))
            }) {
                continue;
            }
            files.push((name, String::new()));
        } else if let Some((_, content)) = files.last_mut() {
            content.push_str(line);
        }
    }
    files
}
