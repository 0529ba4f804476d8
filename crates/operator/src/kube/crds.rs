//! The start-up check that the Gateway API CRDs the operator watches are installed.
//!
//! Without them every watch would fail with a 404 that names a URL, not a fix. Reference
//! scenario S1 installs the CRDs before the controller; when someone forgets, the operator
//! says exactly which CRDs are missing (`httproutes.gateway.networking.k8s.io`) and keeps
//! checking with backoff, so that installing them is enough to get it going.
//!
//! A CRD counts as installed when it serves the version our types are generated for.
//! ListenerSets are optional: their CRD joined the standard channel in v1.5, and a
//! cluster with older CRDs runs without them (the kind is then not watched).
//! GRPCRoutes, TLSRoutes, TCPRoutes and UDPRoutes are watched when their CRD is there
//! ([`kind_served`], asked by the provider itself): a cluster with the HTTP profile only
//! runs without them.
//! The GatewayClass CRD's `gateway.networking.k8s.io/bundle-version` annotation is read
//! on the way: the translator reports on it in the GatewayClass `SupportedVersion`
//! condition.

use std::fmt;
use std::time::Duration;

use kube::{Api, Client};
use portico_api::gateway::{Gateway, GatewayClass, HttpRoute, ListenerSet, ReferenceGrant};
use portico_api::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use portico_api::kube::Resource;
use portico_api::names;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The first wait between two checks; doubled after each failed one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two checks.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A CRD the operator needs: its name and the version it must serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredCrd {
    /// `<plural>.<group>`, the CRD's `metadata.name`.
    pub name: String,
    pub version: String,
}

impl fmt::Display for RequiredCrd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.version)
    }
}

fn required<K: Resource<DynamicType = ()>>() -> RequiredCrd {
    RequiredCrd {
        name: format!("{}.{}", K::plural(&()), K::group(&())),
        version: K::version(&()).into_owned(),
    }
}

/// The CRDs of every Gateway API kind the Kubernetes provider watches.
pub fn required_crds() -> Vec<RequiredCrd> {
    vec![
        required::<GatewayClass>(),
        required::<Gateway>(),
        required::<HttpRoute>(),
        required::<ReferenceGrant>(),
    ]
}

/// The CRDs of kinds that are watched only when installed.
pub fn optional_crds() -> Vec<RequiredCrd> {
    vec![required::<ListenerSet>()]
}

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error(
        "Gateway API CRDs missing: {}; install them (for example the standard channel of Gateway API {})",
        list(.missing),
        names::GATEWAY_API_BUNDLE_VERSION
    )]
    Missing { missing: Vec<RequiredCrd> },
    #[error("cannot read CustomResourceDefinitions: {0}")]
    Api(#[from] kube::Error),
}

fn list(crds: &[RequiredCrd]) -> String {
    crds.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledCrds {
    /// The GatewayClass CRD's bundle-version annotation.
    pub bundle_version: Option<String>,
    /// Whether the ListenerSet CRD serves our version (else ListenerSets are not
    /// watched).
    pub listener_sets: bool,
}

/// Whether the CRD of kind `K` is installed and serves the version of our types.
pub(crate) async fn kind_served<K: Resource<DynamicType = ()>>(
    client: &Client,
) -> Result<bool, kube::Error> {
    let crd = required::<K>();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(api
        .get_opt(&crd.name)
        .await?
        .is_some_and(|found| serves(&found, &crd.version)))
}

/// Whether `crd` serves `version`.
fn serves(crd: &CustomResourceDefinition, version: &str) -> bool {
    crd.spec
        .versions
        .iter()
        .any(|v| v.name == version && v.served)
}

/// Checks once that every required CRD is installed and serves our version.
pub async fn check_crds(client: &Client) -> Result<InstalledCrds, CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    let mut bundle_version = None;
    let class_crd = required::<GatewayClass>().name;
    for crd in required_crds() {
        match api.get_opt(&crd.name).await? {
            Some(found) if serves(&found, &crd.version) => {
                if crd.name == class_crd {
                    bundle_version = found
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(names::BUNDLE_VERSION_ANNOTATION))
                        .cloned();
                }
            }
            _ => missing.push(crd),
        }
    }
    let mut listener_sets = false;
    for crd in optional_crds() {
        let installed = api
            .get_opt(&crd.name)
            .await?
            .is_some_and(|found| serves(&found, &crd.version));
        if !installed {
            info!(crd = %crd, "optional CRD not installed, its kind is not watched");
        }
        listener_sets = installed;
    }
    if missing.is_empty() {
        Ok(InstalledCrds {
            bundle_version,
            listener_sets,
        })
    } else {
        Err(CrdError::Missing { missing })
    }
}

/// Checks until every required CRD is installed, logging what is missing each time and
/// waiting longer between checks (up to [`MAX_BACKOFF`]). `None` when `shutdown` came
/// first.
pub async fn wait_for_crds(client: &Client, shutdown: &CancellationToken) -> Option<InstalledCrds> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match check_crds(client).await {
            Ok(found) => {
                info!(bundle_version = ?found.bundle_version, "Gateway API CRDs installed");
                return Some(found);
            }
            Err(e) => warn!(error = %e, retry_in = ?backoff, "waiting for Gateway API CRDs"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_crds_are_named_as_kubectl_names_them() {
        let names: Vec<String> = required_crds().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "gatewayclasses.gateway.networking.k8s.io",
                "gateways.gateway.networking.k8s.io",
                "httproutes.gateway.networking.k8s.io",
                "referencegrants.gateway.networking.k8s.io",
            ]
        );
    }

    #[test]
    fn the_error_names_every_missing_crd() {
        let e = CrdError::Missing {
            missing: vec![required::<HttpRoute>(), required::<ReferenceGrant>()],
        };
        let shown = e.to_string();
        assert!(
            shown.contains("httproutes.gateway.networking.k8s.io (v1)"),
            "{shown}"
        );
        assert!(
            shown.contains("referencegrants.gateway.networking.k8s.io"),
            "{shown}"
        );
        assert!(!shown.contains("gateways."), "{shown}");
    }
}
