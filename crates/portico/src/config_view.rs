//! `portico config view`: the keys of the `portico-config` ConfigMap (what the Helm
//! chart set), sorted, one per line, like `cilium config view`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use portico_api::k8s::ConfigMap;
use portico_api::kube::api::Api;

use crate::status::{CONFIG_MAP, StatusError, client};

/// Reads the ConfigMap of `namespace` and renders it.
pub async fn run(kubeconfig: Option<&Path>, namespace: &str) -> Result<String, StatusError> {
    let client = client(kubeconfig).await?;
    let config = Api::<ConfigMap>::namespaced(client, namespace)
        .get_opt(CONFIG_MAP)
        .await
        .map_err(|e| StatusError::Kube(format!("reading {namespace}/{CONFIG_MAP}: {e}")))?
        .ok_or_else(|| {
            StatusError::Kube(format!(
                "no ConfigMap {CONFIG_MAP} in namespace {namespace}: is Portico installed there?"
            ))
        })?;
    Ok(render(&config.data.unwrap_or_default()))
}

/// `key   value` lines, keys sorted, values aligned.
pub fn render(data: &BTreeMap<String, String>) -> String {
    let width = data.keys().map(String::len).max().unwrap_or(0) + 3;
    let mut out = String::new();
    for (key, value) in data {
        let _ = writeln!(out, "{key:<width$}{value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_aligned() {
        let data = BTreeMap::from([
            ("enable-gateway-api".to_owned(), "true".to_owned()),
            ("agent".to_owned(), "false".to_owned()),
        ]);
        assert_eq!(
            render(&data),
            "agent                false\nenable-gateway-api   true\n"
        );
    }
}
