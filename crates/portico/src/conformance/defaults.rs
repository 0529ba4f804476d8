//! CRD defaulting, as the API server does it for custom resources.
//!
//! Upstream manifests lean on the defaults in the Gateway API CRDs: a parentRef without
//! `group`/`kind`, a rule without `matches`, a listener without `allowedRoutes`. In a
//! cluster the API server fills those in before anyone reads the object, and
//! controllers echo them back (a route's `status.parents[].parentRef` carries
//! `group: gateway.networking.k8s.io`, `kind: Gateway` because the stored spec does).
//! So the runner's API server applies them too, from the CRDs themselves rather than a
//! hand-written list.
//!
//! The rule is Kubernetes' structural defaulting ("Defaulting" in the
//! CustomResourceDefinition docs): "Defaulting happens on the object [...] when reading
//! from etcd, when writing [...]. Default values [...] are applied to unset fields", and
//! it recurses through `properties`, `items` and `additionalProperties`, into defaulted
//! values too. Only `spec` is defaulted here: statuses come from the translator.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The `openAPIV3Schema` of each (group, version, kind) the CRDs define.
#[derive(Debug, Default)]
pub(crate) struct Defaulter {
    schemas: BTreeMap<(String, String, String), Value>,
}

impl Defaulter {
    /// Reads every CRD in `dir` (`*.yaml`; other kinds in the files are skipped).
    pub(crate) fn load(dir: &Path) -> Result<Self, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("CRD folder {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut defaulter = Self::default();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("CRD {}: {e}", path.display()))?;
            for document in serde_yaml_ng::Deserializer::from_str(&text) {
                let crd = Value::deserialize(document)
                    .map_err(|e| format!("CRD {}: {e}", path.display()))?;
                defaulter.add(&crd);
            }
        }
        Ok(defaulter)
    }

    fn add(&mut self, crd: &Value) {
        if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return;
        }
        let spec = &crd["spec"];
        let (Some(group), Some(kind)) = (
            spec["group"].as_str(),
            spec.pointer("/names/kind").and_then(Value::as_str),
        ) else {
            return;
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            let (Some(name), Some(schema)) = (
                version["name"].as_str(),
                version.pointer("/schema/openAPIV3Schema"),
            ) else {
                continue;
            };
            self.schemas.insert(
                (group.to_owned(), name.to_owned(), kind.to_owned()),
                schema.clone(),
            );
        }
    }

    /// How many (group, version, kind) schemas are known.
    pub(crate) fn len(&self) -> usize {
        self.schemas.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Fills the unset fields of `object.spec` that its CRD gives a default.
    pub(crate) fn apply(&self, object: &mut Value) {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let key = (group.to_owned(), version.to_owned(), kind.to_owned());
        let Some(schema) = self.schemas.get(&key) else {
            return;
        };
        if let (Some(spec), Some(spec_schema)) =
            (object.get_mut("spec"), schema.pointer("/properties/spec"))
        {
            default(spec, spec_schema);
        }
    }
}

fn default(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    if !map.contains_key(name)
                        && let Some(d) = property.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                }
                for (name, field) in map.iter_mut() {
                    if let Some(property) = properties.get(name) {
                        default(field, property);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for field in map.values_mut() {
                    default(field, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn defaulter() -> Defaulter {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "spec": {
                "group": "gateway.networking.k8s.io",
                "names": {"kind": "HTTPRoute"},
                "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                    "properties": {"spec": {"properties": {
                        "parentRefs": {"items": {"properties": {
                            "group": {"default": "gateway.networking.k8s.io", "type": "string"},
                            "kind": {"default": "Gateway", "type": "string"},
                            "name": {"type": "string"}
                        }}},
                        "rules": {"default": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
                                  "items": {"properties": {"matches": {"items": {"properties": {
                                      "path": {"default": {"type": "PathPrefix", "value": "/"},
                                               "properties": {"type": {"default": "PathPrefix"}}}}}}}}}
                    }}}
                }}}]
            }
        });
        let mut d = Defaulter::default();
        d.add(&crd);
        d
    }

    #[test]
    fn unset_fields_get_their_default_recursively() {
        let d = defaulter();
        let mut route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {"parentRefs": [{"name": "gw"}, {"name": "x", "kind": "ListenerSet"}],
                     "rules": [{"matches": [{"path": {"value": "/a"}}, {}]}]}
        });
        d.apply(&mut route);
        assert_eq!(
            route["spec"]["parentRefs"][0]["group"],
            "gateway.networking.k8s.io"
        );
        assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Gateway");
        assert_eq!(route["spec"]["parentRefs"][1]["kind"], "ListenerSet");
        assert_eq!(
            route["spec"]["rules"][0]["matches"][0]["path"]["type"],
            "PathPrefix"
        );
        assert_eq!(
            route["spec"]["rules"][0]["matches"][0]["path"]["value"],
            "/a"
        );
        assert_eq!(
            route["spec"]["rules"][0]["matches"][1]["path"]["value"],
            "/"
        );
    }

    #[test]
    fn other_versions_and_kinds_are_untouched() {
        let d = defaulter();
        let mut other = json!({"apiVersion": "v1", "kind": "Service", "spec": {}});
        d.apply(&mut other);
        assert_eq!(other["spec"], json!({}));
    }

    #[test]
    fn the_real_crds_load_when_present() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/gateway-api/crds/standard");
        if !dir.is_dir() {
            eprintln!("SKIPPED: {} not found", dir.display());
            return;
        }
        let d = Defaulter::load(&dir).unwrap();
        assert!(d.len() >= 7, "{}", d.len());
        let mut gw = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "g"},
            "spec": {"gatewayClassName": "c", "listeners": [{"name": "l", "port": 80, "protocol": "HTTP"}]}
        });
        d.apply(&mut gw);
        assert_eq!(
            gw["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"],
            "Same"
        );
    }
}
