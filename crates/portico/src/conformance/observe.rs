//! What the runner reads back from standalone: statuses as Gateway API shapes, and
//! whether standalone has caught up with the API server.
//!
//! ```text
//!   Standalone::observe() ──> Observed { inputs, output.statuses, load errors, ... }
//!        │
//!        ├── View: statuses as JSON (the translator's serialized Statuses: maps
//!        │         gateways / httpRoutes / grpcRoutes / ... keyed "namespace/name"),
//!        │         read into the status types below; a new route kind the translator
//!        │         learns shows up without a change here
//!        └── synced(cluster): every object standalone reads is in its inputs at the
//!                  resourceVersion the API server has, nothing deleted lingers
//! ```
//!
//! Checks wait for `synced` before they poll, so "the status says X" is about the
//! objects as the case left them, not an earlier state.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::standalone::Observed;
use portico_api::kube::Resource;
use serde::Deserialize;
use serde_json::Value;

use super::cluster::{Cluster, Key};

/// A condition as statuses carry it (`lastTransitionTime` aside).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition {
    #[serde(rename = "type")]
    pub(crate) type_: String,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) message: String,
    pub(crate) observed_generation: Option<i64>,
}

impl Condition {
    pub(crate) fn brief(&self) -> String {
        let generation = self
            .observed_generation
            .map_or_else(|| "none".to_owned(), |g| g.to_string());
        format!(
            "{}={} reason {} (observedGeneration {generation})",
            self.type_, self.status, self.reason
        )
    }
}

pub(crate) fn brief_all(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return "no conditions".to_owned();
    }
    conditions
        .iter()
        .map(Condition::brief)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectStatus {
    #[serde(default)]
    pub(crate) conditions: Vec<Condition>,
    #[serde(default)]
    pub(crate) addresses: Vec<Address>,
    #[serde(default)]
    pub(crate) listeners: Vec<ListenerStatus>,
    #[serde(default)]
    pub(crate) parents: Vec<ParentStatus>,
    /// Policies (BackendTLSPolicy): one entry per ancestor (Gateway) the policy
    /// affects, each with its own conditions.
    #[serde(default)]
    pub(crate) ancestors: Vec<AncestorStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Address {
    #[serde(default)]
    pub(crate) value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListenerStatus {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) supported_kinds: Vec<RouteGroupKind>,
    #[serde(default)]
    pub(crate) attached_routes: i64,
    #[serde(default)]
    pub(crate) conditions: Vec<Condition>,
}

/// A supported kind; cases name kinds only, so the group is not read.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RouteGroupKind {
    pub(crate) kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParentStatus {
    pub(crate) parent_ref: ParentRef,
    #[serde(default)]
    pub(crate) controller_name: String,
    #[serde(default)]
    pub(crate) conditions: Vec<Condition>,
}

/// A policy's `status.ancestors[]` entry (Gateway API PolicyAncestorStatus).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AncestorStatus {
    pub(crate) ancestor_ref: ParentRef,
    #[serde(default)]
    pub(crate) conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParentRef {
    pub(crate) group: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) section_name: Option<String>,
    pub(crate) port: Option<i64>,
}

impl ParentRef {
    pub(crate) fn brief(&self) -> String {
        let mut out = format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or("<route namespace>"),
            self.name
        );
        if let Some(s) = &self.section_name {
            out.push_str(&format!(" section {s}"));
        }
        if let Some(p) = self.port {
            out.push_str(&format!(" port {p}"));
        }
        out
    }
}

/// The statuses of one observed state: what standalone went live with, or what the
/// API server holds (the local-cluster target).
#[derive(Debug, Clone)]
pub(crate) struct View {
    observed: Option<Arc<Observed>>,
    statuses: Value,
    problems: Vec<String>,
}

impl View {
    pub(crate) fn new(observed: Arc<Observed>) -> Self {
        let statuses = serde_json::to_value(&observed.output.statuses).unwrap_or(Value::Null);
        Self {
            observed: Some(observed),
            statuses,
            problems: Vec::new(),
        }
    }

    /// Statuses read from an API server, in the translator's serialized shape (maps per
    /// kind keyed "namespace/name"), and what went wrong reading them.
    pub(crate) fn from_statuses(statuses: Value, problems: Vec<String>) -> Self {
        Self {
            observed: None,
            statuses,
            problems,
        }
    }

    /// The status of an object, if the translator wrote one.
    pub(crate) fn status(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjectStatus> {
        let map = self.statuses.get(map_name(kind))?;
        let found = map
            .get(format!("{namespace}/{name}"))
            .or_else(|| map.get(name))?;
        serde_json::from_value(found.clone()).ok()
    }

    /// The first address of a Gateway's status.
    pub(crate) fn gateway_address(&self, namespace: &str, name: &str) -> Option<String> {
        self.status("Gateway", namespace, name)?
            .addresses
            .into_iter()
            .map(|a| a.value)
            .find(|v| !v.is_empty())
    }

    /// What went wrong in standalone (or reading the API server) that a failure message
    /// should mention.
    pub(crate) fn problems(&self) -> Vec<String> {
        let Some(o) = &self.observed else {
            return self.problems.clone();
        };
        o.load_errors
            .iter()
            .map(ToString::to_string)
            .chain(o.listener_errors.iter().cloned())
            .chain(o.rejected.iter().cloned())
            .collect()
    }

    /// Whether standalone runs on what the API server holds now: `Err` says what
    /// differs.
    pub(crate) fn synced(&self, cluster: &Cluster) -> Result<(), String> {
        let Some(observed) = &self.observed else {
            // Not standalone: the local-cluster target settles on statuses instead.
            return Ok(());
        };
        let inputs = &observed.inputs;
        let mut loaded = Loaded::default();
        loaded.add(&inputs.gateway_classes);
        loaded.add(&inputs.gateways);
        loaded.add(&inputs.listener_sets);
        loaded.add(&inputs.http_routes);
        loaded.add(&inputs.grpc_routes);
        loaded.add(&inputs.tls_routes);
        loaded.add(&inputs.tcp_routes);
        loaded.add(&inputs.udp_routes);
        loaded.add(&inputs.reference_grants);
        loaded.add(&inputs.services);
        loaded.add(&inputs.endpoint_slices);
        loaded.add(&inputs.namespaces);
        loaded.add(&inputs.secrets);
        let Loaded { kinds, mut seen } = loaded;
        let failed: BTreeSet<std::path::PathBuf> = observed
            .load_errors
            .iter()
            .map(|e| e.path().to_path_buf())
            .collect();

        let mut missing = Vec::new();
        for (key, object) in cluster.all() {
            if !kinds.contains(&key.kind) || failed.contains(&cluster.path_of(key)) {
                continue;
            }
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !seen.remove(&(key.clone(), rv.to_owned())) {
                missing.push(format!("{key} at resourceVersion {rv}"));
            }
        }
        let stale: Vec<String> = seen
            .into_iter()
            .map(|(k, rv)| format!("{k} at resourceVersion {rv}"))
            .collect();
        if missing.is_empty() && stale.is_empty() {
            return Ok(());
        }
        let mut out = format!(
            "standalone has not loaded the latest objects (provider generation {})",
            observed.generation
        );
        if !missing.is_empty() {
            out.push_str(&format!("; not yet: {}", missing.join(", ")));
        }
        if !stale.is_empty() {
            out.push_str(&format!("; still: {}", stale.join(", ")));
        }
        Err(out)
    }
}

/// What standalone's provider loaded: the kinds it reads (every field of its inputs)
/// and each object with its resourceVersion.
#[derive(Default)]
struct Loaded {
    kinds: BTreeSet<String>,
    seen: BTreeSet<(Key, String)>,
}

impl Loaded {
    fn add<K: Resource<DynamicType = ()>>(&mut self, objects: &[K]) {
        let kind = K::kind(&()).into_owned();
        for object in objects {
            let meta = object.meta();
            // Namespaces the provider made up for objects whose namespace no file
            // declares have no resourceVersion: nobody applied them.
            if let (Some(name), Some(rv)) = (&meta.name, &meta.resource_version) {
                let namespace = meta.namespace.as_deref().unwrap_or_default();
                self.seen
                    .insert((Key::new(&kind, namespace, name), rv.clone()));
            }
        }
        self.kinds.insert(kind);
    }
}

/// The key of a kind's map in the serialized statuses: `gateways`, `httpRoutes`,
/// `gatewayClasses`, `grpcRoutes`, `listenerSets`, `backendTlsPolicies`... That is the
/// Rust field a translator author writes for the kind (`http_routes`,
/// `backend_tls_policies`) as serde's `rename_all = "camelCase"` spells it.
pub(crate) fn map_name(kind: &str) -> String {
    // CamelCase with acronyms -> snake_case: a word starts at an upper-case letter that
    // follows a lower-case one, or that ends an acronym (is followed by a lower-case one).
    let chars: Vec<char> = kind.chars().collect();
    let mut snake = String::with_capacity(kind.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev_lower = chars[i - 1].is_ascii_lowercase();
            let ends_acronym = chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev_lower || ends_acronym {
                snake.push('_');
            }
        }
        snake.push(c.to_ascii_lowercase());
    }
    let consonant_y =
        snake.ends_with('y') && !snake[..snake.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    let plural = if consonant_y {
        format!("{}ies", &snake[..snake.len() - 1])
    } else if snake.ends_with('s') {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    };
    let mut words = plural.split('_');
    let mut out = words.next().unwrap_or_default().to_owned();
    for word in words {
        let mut cs = word.chars();
        if let Some(first) = cs.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_map_names_follow_serde_camel_case() {
        assert_eq!(map_name("Gateway"), "gateways");
        assert_eq!(map_name("GatewayClass"), "gatewayClasses");
        assert_eq!(map_name("HTTPRoute"), "httpRoutes");
        assert_eq!(map_name("GRPCRoute"), "grpcRoutes");
        assert_eq!(map_name("TLSRoute"), "tlsRoutes");
        assert_eq!(map_name("UDPRoute"), "udpRoutes");
        assert_eq!(map_name("ListenerSet"), "listenerSets");
        assert_eq!(map_name("BackendTLSPolicy"), "backendTlsPolicies");
    }
}
