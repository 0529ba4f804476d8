//! The suite set-up (`<data>/conformance/setup.yaml`): what upstream's suite does once
//! before the Gateway tests, restated as data. Applied as the environment's objects
//! (cases never roll it back), then the runner waits for `namespaces_ready`.

use serde::Deserialize;
use tokio::time::Instant;

use super::case::GeneratedObject;
use super::checks;
use super::cluster::Owner;
use super::manifest::ManifestRoots;
use super::phases;
use super::target::Target;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupFile {
    pub(crate) gateway: Section,
    /// The mesh profile's set-up; the standalone target has no mesh, so it is read (to
    /// reject typos) and not applied.
    #[serde(rename = "mesh")]
    _mesh: Option<Section>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Section {
    pub(crate) manifests: Vec<String>,
    #[serde(default)]
    pub(crate) generated_objects: Vec<GeneratedObject>,
    #[serde(default)]
    pub(crate) namespaces_ready: Vec<String>,
}

impl SetupFile {
    pub(crate) fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("suite set-up {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("suite set-up {}: {e}", path.display()))
    }
}

/// Applies the base manifests, then the generated objects (they live in namespaces the
/// manifests create), and waits until the namespaces are ready.
pub(crate) async fn run(
    target: &mut Target,
    setup: &SetupFile,
    roots: &ManifestRoots,
    deadline: Instant,
) -> Result<(), String> {
    let section = &setup.gateway;
    phases::apply_manifests(target, roots, &section.manifests, Owner::System)?;
    phases::create_generated(target, &section.generated_objects, Owner::System)?;
    target.check_ports()?;
    target.settle(deadline).await?;
    checks::namespaces_ready(target, &section.namespaces_ready, deadline).await
}
