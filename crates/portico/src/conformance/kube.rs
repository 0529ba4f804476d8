//! The kube target: the cases against a cluster where Portico is installed (the Helm
//! chart on kind or EKS, or `portico dev-cluster`), reached through a kubeconfig.
//! Nothing runs on this host but the runner.
//!
//! ```text
//!   runner ─apply─> Cluster (mirror, rollback journal) ─changes─> api.rs ─SSA─> API server
//!                     upstream echo images ──> --echo-image         │
//!                                                                   ▼
//!        the cluster: Deployments -> echo pods, EndpointSlices; Portico: statuses,
//!                     a Service per Gateway -> status.addresses, proxies
//!   snapshot.rs polls the statuses and the Pods (readiness; pod -> Deployment ->
//!     Services, for the backend checks)
//!   requests ──> the Gateway's status.addresses : listener port, with the case's Host
//!                header and SNI (as `curl --resolve` would)
//! ```
//!
//! The runner-side pieces are the local-cluster target's: the [`Remote`] half of it
//! (writer, poller, settling on `observedGeneration`), the kubelet as a view of the
//! cluster's pods ([`super::kubelet::Kubelet::remote`]). Each case's objects are
//! deleted after it (the journal's rollback, written to the server); at the end the
//! namespaces the run created go too, unless `--keep`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use portico_api::k8s_openapi::api::core::v1::Namespace;
use portico_api::kube::ResourceExt;
use portico_api::kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::cluster::{Cluster, Key};
use super::local_cluster::snapshot::Probes;
use super::local_cluster::{Remote, api, client_for};

/// Time allowed for the start: the API server answers, the Gateway API kinds are
/// served.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on the first request (a wrong kubeconfig fails here, not at the first case).
const FIRST_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The echo image a build uses by default: the chart's image name (`make images`:
/// `<prefix>/echo:<tag>`) with this build's version, as `portico dev-cluster` names its
/// images.
pub const DEFAULT_ECHO_IMAGE: &str = concat!("portico/echo:", env!("CARGO_PKG_VERSION"));

/// How the kube target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// The kubeconfig (`None`: `KUBECONFIG`, else `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Its context (`None`: the current one).
    pub context: Option<String>,
    /// What runs the cases' echo backends instead of the upstream echo servers.
    pub echo_image: String,
}

#[derive(Debug)]
pub(crate) struct KubeCluster {
    pub(crate) remote: Remote,
    /// Namespaces that existed before the run: never deleted by it.
    existing_namespaces: BTreeSet<String>,
}

impl KubeCluster {
    pub(crate) async fn start(config: &KubeConfig) -> Result<Self, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = client_for(config.kubeconfig.as_deref(), config.context.as_deref()).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let existing_namespaces =
            match tokio::time::timeout(FIRST_READ_TIMEOUT, namespaces.list(&ListParams::default()))
                .await
            {
                Ok(Ok(list)) => list.items.iter().map(ResourceExt::name_any).collect(),
                Ok(Err(e)) => return Err(format!("listing the cluster's namespaces: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the API server did not answer within {FIRST_READ_TIMEOUT:?}"
                    ));
                }
            };
        let writer = api::Writer::new(client.clone()).with_echo_image(config.echo_image.clone());
        let probes = Probes {
            proxy: None,
            pods: true,
        };
        let remote = Remote::start(client, writer, probes, deadline)
            .await
            .map_err(|e| format!("{e} (is Portico installed, with the Gateway API CRDs?)"))?;
        tracing::info!(echo_image = %config.echo_image, "cluster reached");
        Ok(Self {
            remote,
            existing_namespaces,
        })
    }

    /// Stops reading; unless `keep`, deletes the namespaces the run created (and
    /// everything in them: the suite set-up's objects).
    pub(crate) async fn shutdown(mut self, cluster: &Cluster, keep: bool) {
        self.remote.stop().await;
        if keep {
            return;
        }
        let created: Vec<Key> = cluster
            .list("Namespace")
            .filter(|(key, _)| !self.existing_namespaces.contains(&key.name))
            .map(|(key, _)| key.clone())
            .collect();
        for key in created {
            if let Err(error) = self.remote.writer().delete(&key, "v1").await {
                tracing::warn!(%error, "cleaning up");
            }
        }
    }
}
