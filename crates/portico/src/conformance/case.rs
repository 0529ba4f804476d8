//! The case file format of `../shared/CASES.md`, as types. Every struct denies unknown
//! fields and every field has its exact type, so a case with a typo or a wrong type is
//! rejected with the reason instead of being half run.
//!
//! ```text
//! Case
//! ├── name, source, description, features, feature_names, level, provisional  (about)
//! ├── manifests[], generated_objects[]                                         (set-up)
//! ├── gateways[] {namespace, name, address_required?}
//! ├── namespaces_ready[], conditions[], listener_status[], route_parents[],
//! │   gateway_zero_routes[]                                                    (statuses)
//! ├── requests[] {gateway, listener_port?, request, expect}                    (traffic)
//! │     request/expect by protocol: http | grpc | tls-tcp | tcp | udp
//! └── steps[] {action: patch | delete | apply, namespaces_ready?, conditions?,
//!              requests?, checks?}                                             (phases)
//! ```
//!
//! Requests are decoded in two stages: the protocol picks the request and expectation
//! types, then those are decoded strictly; [`Case::parse`] names the failing item.
//!
//! The model holds every field of the format, the informative ones (`source`, `notes`)
//! and those of protocols the runner cannot send yet included: a case is validated
//! whole even where it is not run.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// The time bound of a case that sets none.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// A field that must be present but may be `null` (`reason: null`, `backend: null`):
/// serde would take a missing `Option` field for `None`; a field with `deserialize_with`
/// and no default is required.
fn required_nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) description: String,
    pub(crate) features: Vec<String>,
    pub(crate) feature_names: Vec<String>,
    pub(crate) level: Level,
    pub(crate) provisional: bool,
    pub(crate) manifests: Vec<String>,
    pub(crate) gateways: Vec<GatewayUse>,
    #[serde(default)]
    pub(crate) generated_objects: Vec<GeneratedObject>,
    #[serde(default)]
    pub(crate) namespaces_ready: Vec<String>,
    #[serde(default)]
    pub(crate) conditions: Vec<ConditionCheck>,
    #[serde(default)]
    pub(crate) listener_status: Vec<ListenerStatusCheck>,
    #[serde(default)]
    pub(crate) route_parents: Vec<ObjectId>,
    #[serde(default)]
    pub(crate) gateway_zero_routes: Vec<NsName>,
    #[serde(default, deserialize_with = "requests")]
    pub(crate) requests: Vec<RequestCase>,
    #[serde(default)]
    pub(crate) steps: Vec<Step>,
    pub(crate) timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(crate) notes: Option<Notes>,
}

/// Free text, ignored: a list of lines or one string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Notes {
    Lines(Vec<String>),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Core,
    Extended,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NsName {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl std::fmt::Display for NsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayUse {
    pub(crate) namespace: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) address_required: bool,
}

/// A namespaced object of any kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectId {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

// ---- generated objects ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum GeneratedKind {
    Secret,
    ConfigMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum GeneratedType {
    #[serde(rename = "self-signed TLS")]
    SelfSignedTls,
    #[serde(rename = "CA")]
    Ca,
    #[serde(rename = "CA-signed TLS")]
    CaSignedTls,
    #[serde(rename = "CA-signed client TLS")]
    CaSignedClientTls,
}

/// One object the runner makes at run time (certificates cannot be written in a
/// manifest). Which optional fields are needed depends on `type`; see
/// [`GeneratedObject::check`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeneratedObject {
    pub(crate) kind: GeneratedKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_: GeneratedType,
    pub(crate) hosts: Option<Vec<String>>,
    pub(crate) signed_by: Option<NsName>,
    pub(crate) key: Option<String>,
}

impl GeneratedObject {
    /// The combinations CASES.md allows: each type has its kind and its fields.
    pub(crate) fn check(&self) -> Result<(), String> {
        let (kind, hosts, signed, key) = match self.type_ {
            GeneratedType::SelfSignedTls => (GeneratedKind::Secret, true, false, false),
            GeneratedType::Ca => (GeneratedKind::ConfigMap, false, false, true),
            GeneratedType::CaSignedTls => (GeneratedKind::Secret, true, true, false),
            GeneratedType::CaSignedClientTls => (GeneratedKind::Secret, false, true, false),
        };
        let name = format!("{}/{}", self.namespace, self.name);
        if self.kind != kind {
            return Err(format!(
                "{name}: type {:?} is a {kind:?}, not a {:?}",
                self.type_, self.kind
            ));
        }
        for (field, wanted, present) in [
            ("hosts", hosts, self.hosts.is_some()),
            ("signed_by", signed, self.signed_by.is_some()),
            ("key", key, self.key.is_some()),
        ] {
            if wanted && !present {
                return Err(format!("{name}: missing field `{field}` for its type"));
            }
            if !wanted && present {
                return Err(format!(
                    "{name}: field `{field}` is not allowed for its type"
                ));
            }
        }
        if self.hosts.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("{name}: hosts must not be empty"));
        }
        Ok(())
    }
}

// ---- statuses ------------------------------------------------------------------------

/// `{kind, namespace, name, type, status, reason}`, plus `parent`/`parent_namespace`/
/// `section` for routes or `listener: '*'` for Gateways.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionCheck {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_: String,
    pub(crate) status: String,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) reason: Option<String>,
    pub(crate) parent: Option<String>,
    pub(crate) parent_namespace: Option<String>,
    pub(crate) section: Option<String>,
    pub(crate) listener: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerStatusCheck {
    pub(crate) gateway: NsName,
    pub(crate) exact_listener_count: bool,
    pub(crate) listeners: Vec<ExpectedListener>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectedListener {
    pub(crate) name: String,
    pub(crate) supported_kinds: Vec<String>,
    pub(crate) attached_routes: i64,
    pub(crate) conditions: Vec<ExpectedCondition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectedCondition {
    #[serde(rename = "type")]
    pub(crate) type_: String,
    pub(crate) status: String,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) reason: Option<String>,
}

// ---- requests ------------------------------------------------------------------------

/// One request and what must come of it.
#[derive(Debug, Clone)]
pub(crate) struct RequestCase {
    pub(crate) gateway: NsName,
    pub(crate) listener_port: Option<u16>,
    pub(crate) exchange: Exchange,
}

/// The request and its expectation, by protocol.
#[derive(Debug, Clone)]
pub(crate) enum Exchange {
    Http(Box<HttpRequest>, Box<HttpExpect>),
    Grpc(GrpcRequest, GrpcExpect),
    TlsTcp(TlsTcpRequest, StreamExpect),
    Tcp(TcpRequest, StreamExpect),
    Udp(UdpRequest, UdpExpect),
}

impl Exchange {
    /// The protocol as case files spell it.
    pub(crate) fn protocol(&self) -> &'static str {
        match self {
            Exchange::Http(..) => "http",
            Exchange::Grpc(..) => "grpc",
            Exchange::TlsTcp(..) => "tls-tcp",
            Exchange::Tcp(..) => "tcp",
            Exchange::Udp(..) => "udp",
        }
    }
}

/// The item as written, before the protocol picks the types of `request` and `expect`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequestCase {
    gateway: NsName,
    listener_port: Option<u16>,
    request: serde_json::Value,
    expect: serde_json::Value,
}

fn requests<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RequestCase>, D::Error> {
    let raw = Vec::<RawRequestCase>::deserialize(deserializer)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.decode()
                .map_err(|e| serde::de::Error::custom(format!("requests[{i}]: {e}")))
        })
        .collect()
}

fn strict<T: DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))
}

impl RawRequestCase {
    fn decode(self) -> Result<RequestCase, String> {
        let protocol = match self.request.get("protocol") {
            None => "http".to_owned(),
            Some(serde_json::Value::String(p)) => p.clone(),
            Some(other) => return Err(format!("request.protocol: not a string: {other}")),
        };
        let (request, expect) = (self.request, self.expect);
        let exchange = match protocol.as_str() {
            "http" => Exchange::Http(
                Box::new(strict("request", request)?),
                Box::new(strict("expect", expect)?),
            ),
            "grpc" => Exchange::Grpc(strict("request", request)?, strict("expect", expect)?),
            "tls-tcp" => Exchange::TlsTcp(strict("request", request)?, strict("expect", expect)?),
            "tcp" => Exchange::Tcp(strict("request", request)?, strict("expect", expect)?),
            "udp" => Exchange::Udp(strict("request", request)?, strict("expect", expect)?),
            other => {
                return Err(format!(
                    "request.protocol: {other:?} is not one of http, grpc, tls-tcp, tcp, udp"
                ));
            }
        };
        Ok(RequestCase {
            gateway: self.gateway,
            listener_port: self.listener_port,
            exchange,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpRequest {
    /// Only `http` here (the field picked this type).
    pub(crate) protocol: Option<String>,
    pub(crate) method: String,
    /// The Host header; empty: the Gateway's address.
    pub(crate) host: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) unfollow_redirect: bool,
    #[serde(default)]
    pub(crate) scheme: Scheme,
    pub(crate) tls: Option<ClientTls>,
    #[serde(default)]
    pub(crate) backend_sets_response_headers: BTreeMap<String, String>,
    pub(crate) add_request_id_query_param: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientTls {
    pub(crate) server_name: String,
    pub(crate) trust: Trust,
}

/// What the client trusts: a Secret's `tls.crt` or a ConfigMap key.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTrust")]
pub(crate) enum Trust {
    Secret(NsName),
    Configmap(ConfigMapKey),
}

/// `{secret: ...}` or `{configmap: ...}`. The YAML library reads externally tagged
/// enums from `!tags`; case files write one-key mappings, so those are read as a
/// struct with exactly one field set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    secret: Option<NsName>,
    configmap: Option<ConfigMapKey>,
}

impl TryFrom<RawTrust> for Trust {
    type Error = String;

    fn try_from(raw: RawTrust) -> Result<Self, String> {
        match (raw.secret, raw.configmap) {
            (Some(s), None) => Ok(Trust::Secret(s)),
            (None, Some(c)) => Ok(Trust::Configmap(c)),
            _ => Err("trust must be exactly one of {secret: ...} or {configmap: ...}".to_owned()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigMapKey {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) key: String,
}

/// The pod that answered: its namespace, and the Service it stands behind (`None`: any).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendRef {
    pub(crate) namespace: String,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) service: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpExpect {
    pub(crate) status: u16,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) backend: Option<BackendRef>,
    pub(crate) path_at_backend: Option<String>,
    pub(crate) method_at_backend: Option<String>,
    pub(crate) host_at_backend: Option<String>,
    #[serde(default)]
    pub(crate) request_headers_at_backend: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) absent_request_headers_at_backend: Vec<String>,
    #[serde(default)]
    pub(crate) response_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) absent_response_headers: Vec<String>,
    pub(crate) redirect_location: Option<RedirectLocation>,
    pub(crate) weighted: Option<Weighted>,
    pub(crate) mirrored_to: Option<Vec<MirrorTarget>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedirectLocation {
    pub(crate) scheme: String,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) host: Option<String>,
    /// A quoted port (`'8080'`) or `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) port: Option<String>,
    pub(crate) path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Weighted {
    pub(crate) requests: u32,
    pub(crate) concurrency: u32,
    pub(crate) tolerance: f64,
    pub(crate) max_attempts: u32,
    pub(crate) expected_fractions: BTreeMap<String, f64>,
    pub(crate) entropy_header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MirrorTarget {
    pub(crate) namespace: String,
    pub(crate) service: String,
    pub(crate) path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrpcRequest {
    pub(crate) protocol: String,
    pub(crate) transport: String,
    pub(crate) service: String,
    pub(crate) method: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) host: Option<String>,
    pub(crate) tls: Option<ClientTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrpcExpect {
    pub(crate) grpc_code: String,
    #[serde(deserialize_with = "required_nullable")]
    pub(crate) backend: Option<BackendRef>,
    pub(crate) fully_qualified_method_at_backend: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsTcpRequest {
    pub(crate) protocol: String,
    pub(crate) sni: String,
    pub(crate) trust: Trust,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpRequest {
    pub(crate) protocol: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamExpect {
    pub(crate) backend: BackendRef,
    pub(crate) backend_is_tls: bool,
    pub(crate) tls_server_name_at_backend: Option<String>,
    pub(crate) welcome: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UdpRequest {
    pub(crate) protocol: String,
    pub(crate) payload: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UdpExpect {
    pub(crate) backend: BackendRef,
    pub(crate) reply: String,
}

// ---- steps ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    pub(crate) action: Action,
    #[serde(default)]
    pub(crate) namespaces_ready: Vec<String>,
    #[serde(default)]
    pub(crate) conditions: Vec<ConditionCheck>,
    #[serde(default, deserialize_with = "requests")]
    pub(crate) requests: Vec<RequestCase>,
    #[serde(default)]
    pub(crate) checks: Vec<StepCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAction")]
pub(crate) enum Action {
    Patch(Patch),
    Delete(ObjectId),
    Apply(Vec<String>),
}

/// `{patch: ...}`, `{delete: ...}` or `{apply: [...]}` (see [`RawTrust`] for why not an
/// enum).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    patch: Option<Patch>,
    delete: Option<ObjectId>,
    apply: Option<Vec<String>>,
}

impl TryFrom<RawAction> for Action {
    type Error = String;

    fn try_from(raw: RawAction) -> Result<Self, String> {
        match (raw.patch, raw.delete, raw.apply) {
            (Some(p), None, None) => Ok(Action::Patch(p)),
            (None, Some(d), None) => Ok(Action::Delete(d)),
            (None, None, Some(a)) if !a.is_empty() => Ok(Action::Apply(a)),
            (None, None, Some(_)) => Err("apply: must list at least one manifest".to_owned()),
            _ => Err(
                "action must be exactly one of {patch: ...}, {delete: ...}, {apply: [...]}"
                    .to_owned(),
            ),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Patch {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `field.path: value`, in the order written.
    #[serde(default)]
    pub(crate) set: serde_yaml_ng::Mapping,
    #[serde(default)]
    pub(crate) append: serde_yaml_ng::Mapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepCheck {
    GenerationChanged,
    ObservedGenerationCurrent,
}

// ---- reading -------------------------------------------------------------------------

impl Case {
    /// Decodes a case file and checks what the types cannot say. `file_stem` is the file
    /// name without `.yaml`, which must equal `name`.
    pub(crate) fn parse(text: &str, file_stem: &str) -> Result<Self, String> {
        let case: Case = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if case.name != file_stem {
            return Err(format!(
                "name {:?} does not match the file name {file_stem:?}",
                case.name
            ));
        }
        let stripped: Vec<&str> = case
            .features
            .iter()
            .map(|f| f.strip_prefix("Support").unwrap_or(f))
            .collect();
        if stripped != case.feature_names {
            return Err(format!(
                "feature_names must equal features without `Support`: {stripped:?}"
            ));
        }
        if case.manifests.is_empty() {
            return Err("manifests: must not be empty".to_owned());
        }
        if case.gateways.is_empty() {
            return Err("gateways: must not be empty".to_owned());
        }
        for g in &case.generated_objects {
            g.check().map_err(|e| format!("generated_objects: {e}"))?;
        }
        for c in case
            .conditions
            .iter()
            .chain(case.steps.iter().flat_map(|s| &s.conditions))
        {
            c.check()?;
        }
        for (i, step) in case.steps.iter().enumerate() {
            if !step.checks.is_empty() && !matches!(step.action, Action::Patch(_)) {
                return Err(format!(
                    "steps[{i}].checks: checks apply to the patched object; the action is not a patch"
                ));
            }
            if let Action::Patch(p) = &step.action
                && p.set.is_empty()
                && p.append.is_empty()
            {
                return Err(format!(
                    "steps[{i}].action.patch: needs set: or append: with at least one field path"
                ));
            }
        }
        let asserts = !case.conditions.is_empty()
            || !case.listener_status.is_empty()
            || !case.route_parents.is_empty()
            || !case.gateway_zero_routes.is_empty()
            || !case.requests.is_empty()
            || !case.steps.is_empty();
        if !asserts {
            return Err("the case asserts nothing".to_owned());
        }
        Ok(case)
    }

    pub(crate) fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }
}

/// The route kinds conditions may name.
pub(crate) const ROUTE_KINDS: &[&str] =
    &["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

impl ConditionCheck {
    fn check(&self) -> Result<(), String> {
        let name = format!("conditions: {} {}/{}", self.kind, self.namespace, self.name);
        let route = ROUTE_KINDS.contains(&self.kind.as_str());
        if route && (self.parent.is_none() || self.parent_namespace.is_none()) {
            return Err(format!(
                "{name}: a route condition needs parent and parent_namespace"
            ));
        }
        if !route && self.kind != "Gateway" {
            return Err(format!("{name}: kind must be Gateway or a route kind"));
        }
        if !route
            && (self.parent.is_some() || self.parent_namespace.is_some() || self.section.is_some())
        {
            return Err(format!("{name}: parent fields are for route conditions"));
        }
        if route && self.listener.is_some() {
            return Err(format!("{name}: listener is for Gateway conditions"));
        }
        if self.listener.as_deref().is_some_and(|l| l != "*") {
            return Err(format!("{name}: listener must be '*'"));
        }
        let wildcard = self.type_ == "*" || self.status == "*";
        if wildcard && !(self.type_ == "*" && self.status == "*" && self.reason.is_none()) {
            return Err(format!(
                "{name}: type '*' and status '*' go together, with reason null"
            ));
        }
        if !wildcard && !["True", "False", "Unknown"].contains(&self.status.as_str()) {
            return Err(format!(
                "{name}: status {:?} is not 'True', 'False' or 'Unknown'",
                self.status
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MINIMAL: &str = r#"
name: HTTPRouteSimpleSameNamespace
source: conformance/tests/httproute-simple-same-namespace.go
description: A single HTTPRoute in the gateway-conformance-infra namespace attaches to a Gateway in the same namespace
features: [SupportGateway, SupportHTTPRoute]
feature_names: [Gateway, HTTPRoute]
level: core
provisional: false
manifests: [conformance/tests/httproute-simple-same-namespace.yaml]
gateways: [{namespace: gateway-conformance-infra, name: same-namespace}]
conditions:
- {kind: HTTPRoute, namespace: gateway-conformance-infra, name: gateway-conformance-infra-test,
   parent: same-namespace, parent_namespace: gateway-conformance-infra, type: Accepted, status: 'True', reason: null}
requests:
- gateway: {namespace: gateway-conformance-infra, name: same-namespace}
  request: {method: GET, host: '', path: /}
  expect: {status: 200, backend: {namespace: gateway-conformance-infra, service: infra-backend-v1},
           path_at_backend: /, method_at_backend: GET}
steps:
- action:
    patch:
      kind: HTTPRoute
      namespace: gateway-conformance-infra
      name: gateway-conformance-infra-test
      set:
        spec.rules[0].backendRefs[0].name: infra-backend-v2
  checks: [generation_changed]
"#;

    #[test]
    fn a_valid_case_parses() {
        let case = Case::parse(MINIMAL, "HTTPRouteSimpleSameNamespace").unwrap();
        assert_eq!(case.level, Level::Core);
        assert_eq!(case.conditions[0].reason, None);
        assert_eq!(case.timeout(), std::time::Duration::from_secs(60));
        let Exchange::Http(request, expect) = &case.requests[0].exchange else {
            panic!("not http");
        };
        assert_eq!(request.scheme, Scheme::Http);
        assert_eq!(
            expect.backend.as_ref().unwrap().service.as_deref(),
            Some("infra-backend-v1")
        );
        assert!(matches!(case.steps[0].action, Action::Patch(_)));
        assert_eq!(case.steps[0].checks, [StepCheck::GenerationChanged]);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_rejected_with_the_reason() {
        let unknown = MINIMAL.replace("provisional: false", "provisional: false\nextra: 1");
        let err = Case::parse(&unknown, "HTTPRouteSimpleSameNamespace").unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");

        let nested = MINIMAL.replace("path_at_backend: /,", "path_at_backend: /, colour: red,");
        let err = Case::parse(&nested, "HTTPRouteSimpleSameNamespace").unwrap_err();
        assert!(
            err.contains("requests[0]: expect: unknown field `colour`"),
            "{err}"
        );

        let typed = MINIMAL.replace("status: 200", "status: ok");
        let err = Case::parse(&typed, "HTTPRouteSimpleSameNamespace").unwrap_err();
        assert!(err.contains("invalid type"), "{err}");

        let boolean = MINIMAL.replace("status: 'True'", "status: true");
        assert!(Case::parse(&boolean, "HTTPRouteSimpleSameNamespace").is_err());
    }

    #[test]
    fn required_nullable_fields_must_be_present() {
        let missing = MINIMAL.replace(", reason: null}", "}");
        let err = Case::parse(&missing, "HTTPRouteSimpleSameNamespace").unwrap_err();
        assert!(err.contains("missing field `reason`"), "{err}");
    }

    #[test]
    fn the_name_must_match_the_file() {
        let err = Case::parse(MINIMAL, "Other").unwrap_err();
        assert!(err.contains("does not match the file name"), "{err}");
    }

    #[test]
    fn other_protocols_decode_into_their_types() {
        let grpc = MINIMAL.replace(
            "request: {method: GET, host: '', path: /}\n  expect: {status: 200, backend: {namespace: gateway-conformance-infra, service: infra-backend-v1},\n           path_at_backend: /, method_at_backend: GET}",
            "request: {protocol: grpc, transport: h2c, service: a.B, method: Echo}\n  expect: {grpc_code: OK, backend: {namespace: n, service: s}, fully_qualified_method_at_backend: /a.B/Echo}",
        );
        let case = Case::parse(&grpc, "HTTPRouteSimpleSameNamespace").unwrap();
        assert_eq!(case.requests[0].exchange.protocol(), "grpc");
    }

    #[test]
    fn generated_objects_need_the_fields_of_their_type() {
        let g = |yaml: &str| {
            serde_yaml_ng::from_str::<GeneratedObject>(yaml)
                .unwrap()
                .check()
        };
        assert!(
            g("{kind: Secret, namespace: n, name: c, type: self-signed TLS, hosts: ['*']}").is_ok()
        );
        assert!(g("{kind: ConfigMap, namespace: n, name: c, type: CA, key: ca.crt}").is_ok());
        let err = g("{kind: Secret, namespace: n, name: c, type: CA-signed TLS, hosts: [a]}")
            .unwrap_err();
        assert!(err.contains("signed_by"), "{err}");
        let err = g("{kind: Secret, namespace: n, name: c, type: CA, key: k}").unwrap_err();
        assert!(err.contains("ConfigMap"), "{err}");
    }
}
