//! The agent's Kubernetes client, which must reach the API server without kube-proxy.
//!
//! With kube-proxy removed the agent is what makes Services work, so it cannot dial the
//! `kubernetes` Service (10.96.0.1) before it has programmed it. Like Cilium's
//! `k8sServiceHost` / `k8sServicePort`, the API server's own address is configured:
//!
//! ```text
//!   --k8s-api-server https://<host>:<port>   the address (a node IP, a load balancer, ...)
//!   auth, in-cluster: the pod's service-account token and CA, as files (re-read on
//!                     rotation by kube), never KUBERNETES_SERVICE_HOST
//!   or --kubeconfig FILE: its credentials; --k8s-api-server still overrides its server
//! ```

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Where a pod finds its service-account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API server.
#[derive(Debug, Clone, Default)]
pub struct KubeClientConfig {
    /// The API server's address, `https://host:port` (`http://` for tests).
    pub api_server: Option<String>,
    /// A kubeconfig whose credentials (and server, unless `api_server`) are used.
    pub kubeconfig: Option<PathBuf>,
    /// The directory of `token` and `ca.crt` (default [`SERVICE_ACCOUNT_DIR`]); files
    /// that do not exist are not used.
    pub service_account_dir: Option<PathBuf>,
}

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error(
        "neither --k8s-api-server nor --kubeconfig is set: the agent does not use the `kubernetes` Service (it may be what the agent is about to program)"
    )]
    NoServer,
    #[error("--k8s-api-server {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("building the client: {0}")]
    Client(#[source] kube::Error),
}

impl KubeClientConfig {
    /// The kube config this describes.
    pub async fn config(&self) -> Result<Config, KubeClientError> {
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| KubeClientError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| KubeClientError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            None => {
                let url = self.api_server.as_ref().ok_or(KubeClientError::NoServer)?;
                let mut config = Config::new(parse_url(url)?);
                let dir = self
                    .service_account_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
                let (token, ca) = (dir.join("token"), dir.join("ca.crt"));
                if token.exists() {
                    config.auth_info.token_file = Some(token.to_string_lossy().into_owned());
                }
                if ca.exists() {
                    config.root_cert_file = Some(ca);
                }
                if let Ok(ns) = std::fs::read_to_string(dir.join("namespace")) {
                    config.default_namespace = ns.trim().to_owned();
                }
                config
            }
        };
        if let Some(url) = &self.api_server {
            config.cluster_url = parse_url(url)?;
        }
        Ok(config)
    }

    /// A client for the API server.
    pub async fn client(&self) -> Result<Client, KubeClientError> {
        Client::try_from(self.config().await?).map_err(KubeClientError::Client)
    }
}

fn parse_url(url: &str) -> Result<http::Uri, KubeClientError> {
    let bad = |detail: String| KubeClientError::BadUrl {
        url: url.to_owned(),
        detail,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    match uri.scheme_str() {
        Some("https" | "http") if uri.host().is_some() => Ok(uri),
        _ => Err(bad("expected http(s)://host:port".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_configured_server_and_service_account_files_are_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0k3n").unwrap();
        std::fs::write(dir.path().join("namespace"), "portico-system\n").unwrap();
        let cfg = KubeClientConfig {
            api_server: Some("https://192.0.2.10:6443".into()),
            kubeconfig: None,
            service_account_dir: Some(dir.path().to_path_buf()),
        };
        let config = cfg.config().await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://192.0.2.10:6443/");
        assert_eq!(config.default_namespace, "portico-system");
        assert!(config.auth_info.token_file.is_some());
        // No ca.crt in the directory: none configured (the system roots apply).
        assert!(config.root_cert_file.is_none());
    }

    #[tokio::test]
    async fn no_server_and_bad_urls_are_refused() {
        assert!(matches!(
            KubeClientConfig::default().config().await,
            Err(KubeClientError::NoServer)
        ));
        let cfg = KubeClientConfig {
            api_server: Some("kubernetes.default.svc".into()),
            ..Default::default()
        };
        assert!(matches!(
            cfg.config().await,
            Err(KubeClientError::BadUrl { .. })
        ));
    }
}
