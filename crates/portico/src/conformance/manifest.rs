//! Manifests: where a path points, and the objects in the file.
//!
//! CASES.md: "A manifest path is relative to [the data folder], unless it starts with
//! `./`, then it is relative to the case file." `{GATEWAY_CLASS_NAME}` is replaced by
//! our GatewayClass before the YAML is parsed, as upstream's applier does.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The placeholder upstream manifests use for the GatewayClass under test.
pub(crate) const GATEWAY_CLASS_PLACEHOLDER: &str = "{GATEWAY_CLASS_NAME}";

/// Where manifest paths are resolved.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRoots {
    /// The data folder (`--data`).
    pub(crate) data: PathBuf,
    /// The folder of the case file, for `./` paths.
    pub(crate) case_dir: PathBuf,
}

impl ManifestRoots {
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        match path.strip_prefix("./") {
            Some(rest) => self.case_dir.join(rest),
            None => self.data.join(path),
        }
    }
}

/// Reads the objects of one manifest, with the placeholder replaced. Empty documents
/// (a trailing `---`, comments only) are skipped; anything else must be a Kubernetes
/// object with `apiVersion`, `kind` and `metadata.name`.
pub(crate) fn read(path: &Path, class_name: &str) -> Result<Vec<Value>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("manifest {}: {e}", path.display()))?;
    parse(&text.replace(GATEWAY_CLASS_PLACEHOLDER, class_name))
        .map_err(|e| format!("manifest {}: {e}", path.display()))
}

pub(crate) fn parse(text: &str) -> Result<Vec<Value>, String> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {index}: {e}"))?;
        if value.is_null() {
            continue;
        }
        describe(&value).map_err(|e| format!("document {index}: {e}"))?;
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("document {index}: List without items"))?;
            for item in items {
                describe(item).map_err(|e| format!("document {index}: {e}"))?;
                objects.push(item.clone());
            }
        } else {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// `kind name`, or why the value is not an object.
fn describe(value: &Value) -> Result<String, String> {
    if !value.is_object() {
        return Err("not a mapping".to_owned());
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    let kind = field("kind").ok_or("missing `kind`")?;
    field("apiVersion").ok_or_else(|| format!("{kind}: missing `apiVersion`"))?;
    if kind == "List" {
        return Ok(kind.to_owned());
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{kind}: missing `metadata.name`"))?;
    Ok(format!("{kind} {name}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn documents_lists_and_the_placeholder() {
        let text = "# c\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: s}}\n---\n";
        let objects = parse(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["kind"], "Service");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.yaml");
        std::fs::write(
            &path,
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n\
             spec: {gatewayClassName: \"{GATEWAY_CLASS_NAME}\"}\n",
        )
        .unwrap();
        let objects = read(&path, "portico").unwrap();
        assert_eq!(objects[0]["spec"]["gatewayClassName"], "portico");
    }

    #[test]
    fn objects_need_kind_and_name() {
        let err = parse("apiVersion: v1\nkind: Service\nmetadata: {}\n").unwrap_err();
        assert!(err.contains("metadata.name"), "{err}");
        assert!(parse("- a\n").unwrap_err().contains("not a mapping"));
    }

    #[test]
    fn paths_resolve_against_data_or_the_case() {
        let roots = ManifestRoots {
            data: "/data".into(),
            case_dir: "/cases".into(),
        };
        assert_eq!(
            roots.resolve("conformance/x.yaml"),
            Path::new("/data/conformance/x.yaml")
        );
        assert_eq!(roots.resolve("./mine.yaml"), Path::new("/cases/mine.yaml"));
    }
}
